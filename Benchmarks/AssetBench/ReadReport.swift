/// The read benchmark's markdown: every figure per target, then the targets judged from those figures only.
struct ReadReport {
    static let order = ["native", "assetfs", "assetfs-ro", "assetfs-nometrics", "assetfs-nolineage", "assetfs-ro-nolineage",
                        "assetfs-ro-opens", "assetfs-old", "assetfs-old-ro", "borg", "restic"]
    /// The targets measured in this run, in `order`.
    var order: [String] { Self.order.filter { results[$0] != nil } }

    let layout: DataSetLayout
    let version: Int
    let files: Int
    let bytes: Int
    let largeFiles: Int
    let largeBytes: Int
    let modelBytes: Int
    let shardCount: Int
    let shardBytes: Int
    let randomReads: Int
    let tools: [String]
    let cacheSize: String?
    let machine: String
    let loadBefore: String
    let loadAfter: String
    let exportSeconds: Double
    /// Path and modification time of the assetfs binary (others rebuild it while they work).
    let assetfsBinary: String
    let results: [String: TargetResult]
    /// `assetfs mount --background` seconds with only the data set's versions in the store.
    let startFew: [Double]
    let storeVersions: Int
    let startCold: Double
    let startWarm: [Double]

    func render() -> String {
        var out = ["## assetfs read path (version \(version))", ""]
        out.append("Data set (scale \(fixed(layout.scale, 2))): \(layout.summary).")
        out.append("")
        out.append("Version \(version): \(files) files, \(megabytes(bytes)) MB; \(randomReads) random 4 KiB preads over the "
            + "\(largeFiles) files of at least 1 MiB (\(megabytes(largeBytes)) MB), page-aligned, same offsets for every target.")
        out.append("")
        out.append("Machine: \(machine), load average \(loadBefore) before and \(loadAfter) after. Tools: "
            + tools.joined(separator: ", ") + ". assetfs mount "
            + (cacheSize.map { "--cache-size \($0)" } ?? "with its default --cache-size (each binary its own)") + ".")
        out.append("")
        out.append("native = `assetfs export bench@v\(version)` on the local ext4 disk (the export took "
            + "\(fixed(exportSeconds, 2)) s, \(fixed(Double(bytes) / 1e6 / exportSeconds, 0)) MB/s); borg = `borg mount -f "
            + "REPO::v\(version)`; restic = `restic mount`, tree under ids/<snapshot>/; assetfs = `assetfs mount --background`, "
            + "tree under bench/v\(version); assetfs -o ro = the same, versions only (no workspaces; the kernel opens files "
            + "without asking the daemon). Cold = after `sync; echo 3 > /proc/sys/vm/drop_caches` (the daemons' own "
            + "memory caches are not dropped, so each target's cold random pass and tree walks run in a fresh mount). "
            + "Sequential: every file in path order, 1 MiB read() calls. Cold sequential is the best of "
            + "\(ReadBench.coldRounds) passes, each in a fresh mount; warm figures are the best of "
            + "\(ReadBench.warmPasses) passes. The model-file and shard rows read those files alone, each in a fresh mount "
            + "after dropping caches, best of \(ReadBench.coldRounds). assetfs-old = the `--baseline` binary on a store it "
            + "imported itself, same data. MB = 10^6 bytes. assetfs binary: \(assetfsBinary).")
        out += ["", "### Figures", "", figureTable(), "", "### Targets", "", targetTable()]
        return out.joined(separator: "\n")
    }

    private func column(_ body: (TargetResult) -> String) -> [String] {
        order.map { results[$0].map(body) ?? "n/a" }
    }

    private func figureTable() -> String {
        var t = MarkdownTable(["measure"] + order.map(Self.heading))
        t.add(["cold sequential MB/s"] + column { fixed(mbps($0.coldSequential), 0) })
        t.add(["cold sequential MB/s, model file (\(modelBytes >> 20) MiB)"] + column { fixed(modelMBps($0), 0) })
        t.add(["cold sequential MB/s, \(shardCount) CSV shards (\(megabytes(shardBytes)) MB)"] + column { fixed(shardMBps($0), 0) })
        t.add(["warm sequential MB/s, model file"] + column { fixed(Double(modelBytes) / 1e6 / $0.modelWarm, 0) })
        t.add(["warm sequential MB/s"] + column { fixed(mbps($0.warmSequential), 0) })
        t.add(["warm sequential MB/s, files >= 1 MiB only"] + column { fixed(Double(largeBytes) / 1e6 / $0.warmLargeSequential, 0) })
        t.add(["warm small files (< 1 MiB) per s"] + column { fixed(smallPerSecond($0), 0) })
        t.add(["random 4 KiB cold IOPS"] + column { $0.random.map { fixed(iops($0.coldSeconds), 0) } ?? "n/a" })
        t.add(["random 4 KiB warm IOPS"] + column { $0.random.map { fixed(iops($0.warmSeconds), 0) } ?? "n/a" })
        t.add(["`ls -lR` s (first walk after mount)"] + column { fixed($0.lsSeconds, 3) })
        t.add(["`find` s (first walk after mount)"] + column { fixed($0.findSeconds, 3) })
        t.add(["mount until the tree answers, s (both mounts)"] + column {
            $0.ready.isEmpty ? "-" : $0.ready.map { fixed($0, 3) }.joined(separator: " / ")
        })
        t.add(["read_ahead_kb of the mount"] + column { $0.readAheadKiB.map(String.init) ?? "-" })
        t.add(["daemon peak RSS MiB (VmHWM after all reads)"] + column { r in
            r.peakKiB.map { fixed(Double($0) / 1024, 1) } ?? "-"
        })
        t.add(["content = native (random bytes, find entries)"] + column { contentMatches($0) ? "yes" : "NO" })
        return t.render()
    }

    private func targetTable() -> String {
        var t = MarkdownTable(["target", "mount", "measured", "result"], numeric: [2])
        let n = results["native"], b = results["borg"]
        // Every per-mount target for the default mount (workspaces served) and the versions-only one (-o ro).
        for (key, mount) in [("assetfs", "default"), ("assetfs-ro", "`-o ro`")] {
            guard let a = results[key] else { continue }
            let cold = ratio(mbps(a.coldSequential), b.map { mbps($0.coldSequential) })
            t.add(["cold sequential >= 2x borg mount", mount, times(cold), verdict(cold.map { $0 >= 2 })])
            let coldNative = ratio(mbps(a.coldSequential), n.map { mbps($0.coldSequential) })
            t.add(["cold sequential >= 0.5x native", mount, times(coldNative), verdict(coldNative.map { $0 >= 0.5 })])
            let warm = ratio(mbps(a.warmSequential), n.map { mbps($0.warmSequential) })
            t.add(["warm sequential >= 0.8x native", mount, times(warm), verdict(warm.map { $0 >= 0.8 })])
            let random = ratio(a.random.map { iops($0.coldSeconds) }, b?.random.map { iops($0.coldSeconds) })
            t.add(["random 4 KiB cold IOPS >= 10x borg mount", mount, times(random), verdict(random.map { $0 >= 10 })])
            let ls = ratio(a.lsSeconds, n?.lsSeconds)
            t.add(["`ls -lR` time <= 3x native", mount, times(ls), verdict(ls.map { $0 <= 3 })])
            let model = ratio(modelMBps(a), n.map(modelMBps))
            t.add(["cold sequential, model file >= 0.7x native", mount, times(model), verdict(model.map { $0 >= 0.7 })])
            let shards = ratio(shardMBps(a), n.map(shardMBps))
            t.add(["cold sequential, CSV shards >= 0.65x native", mount, times(shards), verdict(shards.map { $0 >= 0.65 })])
            let peak = a.peakKiB.map { Double($0) / 1024 }, borgPeak = b?.peakKiB.map { Double($0) / 1024 }
            t.add(["daemon peak RSS <= borg mount's (\(borgPeak.map { fixed($0, 1) } ?? "?") MiB)", mount,
                   peak.map { fixed($0, 1) + " MiB" } ?? "n/a", verdict(peak.flatMap { p in borgPeak.map { p <= $0 } })])
            t.add(["content = native", mount, contentMatches(a) ? "same" : "DIFFERENT", verdict(contentMatches(a))])
        }
        // Metrics cost: the default mount (metrics counted) against the same mount with `--metrics off`.
        if let on = results["assetfs"], let off = results["assetfs-nometrics"] {
            for (what, seconds) in [("cold", { (r: TargetResult) in r.coldSequential }), ("warm", { (r: TargetResult) in r.warmSequential })] {
                let x = ratio(mbps(seconds(on)), mbps(seconds(off)))
                t.add(["metrics on vs `--metrics off`, \(what) sequential >= 0.97x", "default", times(x), verdict(x.map { $0 >= 0.97 })])
            }
        }
        // Lineage's cost, same run (issue 17): recording on vs `--no-lineage`, at least 0.95x; and what
        // `--lineage-opens` costs an `-o ro` mount (no target: it is the price of seeing every open).
        for (key, otherKey, mount, bound) in [("assetfs", "assetfs-nolineage", "default", 0.95), ("assetfs-ro", "assetfs-ro-nolineage", "`-o ro`", 0.95),
                                              ("assetfs-ro-opens", "assetfs-ro", "`-o ro --lineage-opens` / `-o ro`", 0.0)] {
            guard let a = results[key], let o = results[otherKey] else { continue }
            let rows: [(String, (TargetResult) -> Double?)] = [
                ("cold sequential", { mbps($0.coldSequential) }),
                ("warm small files", { smallPerSecond($0) }),
                ("random 4 KiB cold", { $0.random.map { iops($0.coldSeconds) } }),
                ("random 4 KiB warm", { $0.random.map { iops($0.warmSeconds) } }),
            ]
            addRatios(&t, rows, a, o, mount: mount, bound: bound > 0 ? bound : nil) {
                bound > 0 ? "lineage on / off, \($0) >= \(fixed(bound, 2))x" : "lineage opens visible, \($0)"
            }
        }
        // The new binary against the old one (`--baseline`), same run: no read row more than 5% slower.
        for (key, oldKey, mount) in [("assetfs", "assetfs-old", "default"), ("assetfs-ro", "assetfs-old-ro", "`-o ro`")] {
            guard let a = results[key], let o = results[oldKey] else { continue }
            let rows: [(String, (TargetResult) -> Double?)] = [
                ("cold sequential", { mbps($0.coldSequential) }),
                ("cold model file", { modelMBps($0) }),
                ("cold CSV shards", { shardMBps($0) }),
                ("warm sequential", { mbps($0.warmSequential) }),
                ("warm model file", { Double(modelBytes) / 1e6 / $0.modelWarm }),
                ("random 4 KiB cold", { $0.random.map { iops($0.coldSeconds) } }),
                ("random 4 KiB warm", { $0.random.map { iops($0.warmSeconds) } }),
                ("`ls -lR` (speed)", { 1 / $0.lsSeconds }),
                ("`find` (speed)", { 1 / $0.findSeconds }),
            ]
            addRatios(&t, rows, a, o, mount: mount, bound: 0.95) { "new / old binary, \($0) >= 0.95x" }
            let peaks = ratio(a.peakKiB.map(Double.init), o.peakKiB.map(Double.init))
            t.add(["new / old binary, daemon peak RSS", mount, times(peaks), "-"])
        }
        let warmMedian = median(startWarm)
        t.add(["mount start <= 100 ms, \(storeVersions) versions (median of \(startWarm.count) warm)", "default",
               ms(warmMedian), verdict(warmMedian.map { $0 <= 0.1 })])
        t.add(["mount start <= 100 ms, \(storeVersions) versions, caches dropped", "default", ms(startCold),
               verdict(startCold <= 0.1)])
        var lines = [t.render(), ""]
        lines.append("Cold sequential passes, s: " + order.compactMap { name in
            results[name].map { "\(Self.heading(name)) " + $0.coldPasses.map { fixed($0, 3) }.joined(separator: ", ") }
        }.joined(separator: "; ") + ".")
        lines.append("")
        lines.append("Cold model file / CSV shards passes, s: " + order.compactMap { name in
            results[name].map { "\(Self.heading(name)) " + $0.modelCold.map { fixed($0, 3) }.joined(separator: ", ") + " / "
                + $0.shardsCold.map { fixed($0, 3) }.joined(separator: ", ") }
        }.joined(separator: "; ") + ".")
        lines.append("")
        lines.append("Mount start = spawning `assetfs mount --background` until it returns (it polls for readiness every "
            + "5 ms). With the data set's \(DataSetLayout.versions) versions only: "
            + startFew.map { fixed($0 * 1000, 1) }.joined(separator: ", ") + " ms; with \(storeVersions) versions: "
            + "caches dropped \(fixed(startCold * 1000, 1)) ms, warm " + startWarm.map { fixed($0 * 1000, 1) }.joined(separator: ", ")
            + " ms.")
        return lines.joined(separator: "\n")
    }

    private func contentMatches(_ r: TargetResult) -> Bool {
        guard let native = results["native"] else { return false }
        return r.random?.checksum == native.random?.checksum && r.findLines == native.findLines
    }

    private static func heading(_ name: String) -> String {
        switch name {
        case "native": "native (ext4 export)"
        case "assetfs": "assetfs mount"
        case "assetfs-ro": "assetfs mount -o ro"
        case "assetfs-nometrics": "assetfs mount --metrics off"
        case "assetfs-nolineage": "assetfs mount --no-lineage"
        case "assetfs-ro-nolineage": "assetfs mount -o ro --no-lineage"
        case "assetfs-ro-opens": "assetfs mount -o ro --lineage-opens"
        case "assetfs-old": "old assetfs mount"
        case "assetfs-old-ro": "old assetfs mount -o ro"
        case "borg": "borg mount"
        case "restic": "restic mount"
        default: name
        }
    }

    private func ratio(_ x: Double?, _ y: Double?) -> Double? {
        guard let x, let y, y > 0, x.isFinite, y.isFinite else { return nil }
        return x / y
    }

    /// One row per figure: `a`'s over `o`'s, judged against `bound` when there is one.
    private func addRatios(_ t: inout MarkdownTable, _ rows: [(String, (TargetResult) -> Double?)], _ a: TargetResult, _ o: TargetResult,
                           mount: String, bound: Double?, label: (String) -> String) {
        for (what, figure) in rows {
            let x = ratio(figure(a), figure(o))
            t.add([label(what), mount, times(x), bound.map { b in verdict(x.map { $0 >= b }) } ?? "-"])
        }
    }

    private func smallPerSecond(_ r: TargetResult) -> Double { r.warmSmallSequential > 0 ? Double(r.smallFiles) / r.warmSmallSequential : .nan }
    private func mbps(_ seconds: Double) -> Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : .nan }
    private func modelMBps(_ r: TargetResult) -> Double { r.modelCold.min().map { Double(modelBytes) / 1e6 / $0 } ?? .nan }
    private func shardMBps(_ r: TargetResult) -> Double { r.shardsCold.min().map { Double(shardBytes) / 1e6 / $0 } ?? .nan }
    private func iops(_ seconds: Double) -> Double { seconds > 0 ? Double(randomReads) / seconds : .nan }
    private func times(_ x: Double?) -> String { x.map { fixed($0, 2) + "x" } ?? "n/a" }
    private func ms(_ seconds: Double?) -> String { seconds.map { fixed($0 * 1000, 1) + " ms" } ?? "n/a" }
    private func verdict(_ ok: Bool?) -> String { ok.map { $0 ? "PASS" : "MISS" } ?? "n/a" }

    private func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
