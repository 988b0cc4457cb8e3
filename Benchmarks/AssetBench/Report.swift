/// Measurements of one version across all importers.
struct VersionRecord {
    let version: Int
    let logicalBytes: Int
    /// Cumulative size of one plain copy per version so far.
    let plainCopiesBytes: Int
    var seconds: [String: Double] = [:]
    /// Sum of st_size under each repository after this version.
    var repositoryBytes: [String: Int] = [:]

    func megabytesPerSecond(_ tool: String) -> Double? {
        seconds[tool].map { Double(logicalBytes) / 1e6 / $0 }
    }
}

/// Turns the measurements into the markdown report; targets are judged only from measured numbers.
struct Report {
    let layout: DataSetLayout
    let machine: String
    let tools: [String]
    let micro: MicroResult
    let study: [ChunkStudyRow]
    let records: [VersionRecord]
    let firstImport: FirstImport?

    func render() -> String {
        var out = ["## assetfs benchmark", ""]
        out.append("Data set (scale \(fixed(layout.scale, 2))): \(layout.summary).")
        out.append("")
        out.append("Machine: \(machine). Tools: \(tools.isEmpty ? "none run" : tools.joined(separator: ", ")). "
            + "MB = 10^6 bytes; times are wall clock; MB/s is the version's logical size over the time.")
        out += ["", "### CPU throughput (single thread, in memory)", "", microTable(), ""]
        out += ["### Chunk sizes (all \(DataSetLayout.versions) versions chunked in process)", "", studyTable(), ""]
        out.append("Logical = every version counted in full; unique = bytes of distinct chunks; chunker MB/s is "
            + "over the new or changed files only (unchanged files are skipped by size, mtime and inode).")
        out += ["", "### Import, version by version", "", importTable(), ""]
        out += ["### Sizes after each version (MB, sum of st_size of the files under each directory)", "",
                sizeTable(), ""]
        if let firstImport {
            out += ["### First import against a plain copy (v1, best of \(FirstImport.rounds) alternating rounds)", "",
                    firstImportTable(firstImport), ""]
        }
        out += ["### Targets", "", targetTable()]
        return out.joined(separator: "\n")
    }

    private func microTable() -> String {
        var t = MarkdownTable(["measure", "MB/s"])
        let sample = "\(megabytes(micro.sampleBytes)) MB of generated data"
        t.add(["chunker 256K/1M/4M, \(sample)", fixed(micro.chunkerMBps, 0)])
        t.add(["SHA-256 of 1 MiB buffers", fixed(micro.sha256MBps, 0)])
        t.add(["chunker + SHA-256 of each chunk", fixed(micro.pipelineMBps, 0)])
        return t.render()
    }

    private func studyTable() -> String {
        var t = MarkdownTable(["min / avg / max", "chunker MB/s", "chunks cut", "mean chunk KiB",
                               "mean chunk KiB (files > max)", "unique chunks", "logical MB", "unique MB",
                               "unique / logical", "dedup ratio"])
        for row in study {
            let p = row.parameters
            t.add(["\(kib(p.minSize)) / \(kib(p.averageSize)) / \(kib(p.maxSize))",
                   fixed(row.chunkerMBps, 0), String(row.chunksCut), fixed(row.meanChunkBytes / 1024, 0),
                   fixed(row.meanLargeFileChunkBytes / 1024, 0),
                   String(row.unique.count), megabytes(row.logicalBytes), megabytes(row.uniqueBytes),
                   fixed(100 * Double(row.uniqueBytes) / Double(max(row.logicalBytes, 1)), 1) + "%",
                   fixed(row.dedupRatio, 2) + "x"])
        }
        return t.render()
    }

    private var hasBaseline: Bool { records.contains { $0.seconds["assetfs-old"] != nil } }

    private func importTable() -> String {
        let old = hasBaseline ? ["assetfs-old s", "new/old time"] : []
        var t = MarkdownTable(["version", "MB", "assetfs s", "assetfs MB/s"] + old + ["borg s", "borg MB/s", "restic s",
                               "restic MB/s", "assetfs/borg throughput"])
        for r in records {
            let oldCells = hasBaseline
                ? [cell(r.seconds["assetfs-old"], 2),
                   cell(r.seconds["assetfs"].flatMap { a in r.seconds["assetfs-old"].map { a / $0 } }, 2).replacingNA(suffix: "x")]
                : []
            t.add(["v\(r.version)", megabytes(r.logicalBytes),
                   cell(r.seconds["assetfs"], 2), cell(r.megabytesPerSecond("assetfs"), 0)] + oldCells + [
                   cell(r.seconds["borg"], 2), cell(r.megabytesPerSecond("borg"), 0),
                   cell(r.seconds["restic"], 2), cell(r.megabytesPerSecond("restic"), 0),
                   cell(speedup(r), 2).replacingNA(suffix: "x")])
        }
        return t.render()
    }

    private func firstImportTable(_ f: FirstImport) -> String {
        var t = MarkdownTable(["tool", "rounds, s", "best s", "MB/s", "time / cp -a + sync"])
        let copy = f.best(FirstImport.copy)
        for tool in [FirstImport.copy, "assetfs", "assetfs-old"] {
            guard let runs = f.seconds[tool], let best = f.best(tool) else { continue }
            t.add([tool, runs.map { fixed($0, 2) }.joined(separator: ", "), fixed(best, 2),
                   fixed(Double(f.bytes) / 1e6 / best, 0), cell(copy.map { best / $0 }, 2).replacingNA(suffix: "x")])
        }
        return t.render()
    }

    private func sizeTable() -> String {
        var t = MarkdownTable(["version", "logical", "plain copies", "assetfs store", "borg repo", "restic repo"])
        for r in records {
            t.add(["v\(r.version)", megabytes(r.logicalBytes), megabytes(r.plainCopiesBytes),
                   r.repositoryBytes["assetfs"].map(megabytes) ?? "n/a",
                   r.repositoryBytes["borg"].map(megabytes) ?? "n/a",
                   r.repositoryBytes["restic"].map(megabytes) ?? "n/a"])
        }
        return t.render()
    }

    private func targetTable() -> String {
        var t = MarkdownTable(["target", "measured", "result"], numeric: [1])
        if let first = records.first {
            let s = speedup(first)
            t.add(["v1 import throughput >= 2x borg", cell(s, 2).replacingNA(suffix: "x"), verdict(s.map { $0 >= 2 })])
        }
        for r in records.dropFirst() {
            let ratio = speedup(r).map { 1 / $0 }
            t.add(["v\(r.version) import time <= 0.5x borg", cell(ratio, 2).replacingNA(suffix: "x"),
                   verdict(ratio.map { $0 <= 0.5 })])
        }
        if let f = firstImport, let copy = f.best(FirstImport.copy) {
            let ratio = f.best("assetfs").map { $0 / copy }
            t.add(["v1 import time <= 1.1x `cp -a` + `sync`", cell(ratio, 2).replacingNA(suffix: "x"), verdict(ratio.map { $0 <= 1.1 })])
        }
        for r in records where r.seconds["assetfs-old"] != nil {
            let ratio = r.seconds["assetfs"].flatMap { a in r.seconds["assetfs-old"].map { a / $0 } }
            t.add(["v\(r.version) import no slower than the old binary (<= 1.05x)", cell(ratio, 2).replacingNA(suffix: "x"),
                   verdict(ratio.map { $0 <= 1.05 })])
        }
        if let last = records.last {
            let a = last.repositoryBytes["assetfs"], r = last.repositoryBytes["restic"]
            let measured = "\(a.map(megabytes) ?? "n/a") MB vs \(r.map(megabytes) ?? "n/a") MB"
            let ok: Bool? = if let a, let r { a <= r } else { nil }
            t.add(["assetfs store <= restic repo after v\(last.version)", measured, verdict(ok)])
        }
        return t.render()
    }

    /// assetfs throughput over borg's on the same bytes, i.e. borg seconds / assetfs seconds.
    private func speedup(_ r: VersionRecord) -> Double? {
        guard let a = r.seconds["assetfs"], let b = r.seconds["borg"], a > 0 else { return nil }
        return b / a
    }

    private func verdict(_ ok: Bool?) -> String { ok.map { $0 ? "PASS" : "MISS" } ?? "n/a" }
    private func kib(_ bytes: Int) -> String { bytes >= 1 << 20 ? "\(bytes >> 20)M" : "\(bytes >> 10)K" }
}

private extension String {
    func replacingNA(suffix: String) -> String { self == "n/a" ? self : self + suffix }
}
