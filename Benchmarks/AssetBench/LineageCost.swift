import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `AssetBench lineage`: what recording lineage costs a read, measured as on/off pairs in alternating order,
/// round after round, on the store a `read` run left behind (its version 3 and its export). The full read
/// benchmark measures each target once in a fixed order, and its rows moved by more than 5% between runs
/// for mounts lineage cannot touch (page-cache reads of an `-o ro` mount): a ratio from interleaved rounds,
/// taken as the median, is the figure to trust for a 0.95x bound.
enum LineageCost {
    static func main(_ options: Options) -> Int32 {
        Watchdog.shared.start()
        do {
            print(try run(options))
            MountGuard.shared.releaseAll()
            return 0
        } catch {
            progress("AssetBench lineage failed: \(error)")
            MountGuard.shared.releaseAll()
            return 1
        }
    }

    struct Figures {
        var coldModel: [Double] = [], coldShards: [Double] = [], randomCold: [Double] = [], randomWarm: [Double] = []
        var warmSmall: [Double] = []
    }

    static func run(_ options: Options) throws -> String {
        let work = FileIO.absolute(options.workGiven ? options.work : "/tmp/assetfs-readbench")
        let exportRoot = work + "/export/v3"
        guard FileManager.default.fileExists(atPath: work + "/store"), FileManager.default.fileExists(atPath: exportRoot) else {
            throw BenchError("\(work) holds no store and export of a read run: run `AssetBench read` first (same --work)")
        }
        guard let assetfs = FileIO.executable(FileIO.absolute(options.assetfs)) else { throw BenchError("no assetfs binary at \(options.assetfs)") }
        let runner = CommandRunner(logDirectory: work + "/logs", environment: [:])
        MountGuard.shared.setSweepPrefix(work + "/mnt/")
        let files = try FileIO.regularFiles(under: exportRoot).map {
            TreeFile(relative: String($0.dropFirst(exportRoot.count + 1)), size: try FileIO.signature($0).size)
        }
        let large = files.filter { $0.size >= ReadBench.largeFileBytes }
        let small = files.filter { $0.size < ReadBench.largeFileBytes }
        let model = files.filter { $0.relative == "model/model.bin" }
        let shards = files.filter { $0.relative.hasPrefix("shards/") }
        let plan = ReadMeasure.plan(files: large, count: options.randomReads, seed: 0x7261_6E64_7265_6164)
        func target(_ name: String, _ extra: [String]) throws -> AssetfsMountTarget {
            try FileIO.makeDirectory(work + "/mnt/" + name)
            return AssetfsMountTarget(name: name, binary: assetfs, store: work + "/store", mountpoint: work + "/mnt/" + name,
                                      cacheSize: options.cacheSize, extra: extra, runner: runner)
        }
        let pairs: [(label: String, on: AssetfsMountTarget, off: AssetfsMountTarget)] = [
            ("default", try target("lc-on", []), try target("lc-off", ["--no-lineage"])),
            ("`-o ro`", try target("lc-ro-on", ["-o", "ro"]), try target("lc-ro-off", ["-o", "ro", "--no-lineage"])),
        ]
        var figures: [String: Figures] = [:]
        let rounds = options.rounds
        for round in 0..<rounds {
            for pair in pairs {
                for t in round % 2 == 0 ? [pair.on, pair.off] : [pair.off, pair.on] {
                    var f = figures[t.name] ?? Figures()
                    try Watchdog.shared.guarded(300, "\(t.name) round \(round)") {
                        _ = try t.start()
                        try ReadMeasure.dropCaches()
                        f.coldModel.append(try ReadMeasure.sequential(root: t.root, files: model))
                        f.coldShards.append(try ReadMeasure.sequential(root: t.root, files: shards))
                        try t.stop()
                        _ = try t.start()
                        try ReadMeasure.dropCaches()
                        let random = try ReadMeasure.random(root: t.root, files: large, plan: plan, warmPasses: 3)
                        f.randomCold.append(random.coldSeconds)
                        f.randomWarm.append(random.warmSeconds)
                        _ = try ReadMeasure.sequential(root: t.root, files: small)  // fills the page cache
                        f.warmSmall.append(try (0..<3).map { _ in try ReadMeasure.sequential(root: t.root, files: small) }.min()!)
                        try t.stop()
                    }
                    figures[t.name] = f
                }
            }
            progress("lineage cost: round \(round + 1) of \(rounds) done")
        }

        func median(_ v: [Double]) -> Double {
            let s = v.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        let modelMB = Double(model.reduce(0) { $0 + $1.size }) / 1e6
        let shardMB = Double(shards.reduce(0) { $0 + $1.size }) / 1e6
        let rows: [(String, (Figures) -> [Double], Bool)] = [
            ("cold sequential, model file (MB/s)", { $0.coldModel.map { modelMB / $0 } }, true),
            ("cold sequential, CSV shards (MB/s)", { $0.coldShards.map { shardMB / $0 } }, true),
            ("warm small files (< 1 MiB, files/s)", { $0.warmSmall.map { Double(small.count) / $0 } }, true),
            ("random 4 KiB cold (IOPS)", { $0.randomCold.map { Double(plan.count) / $0 } }, true),
            ("random 4 KiB warm (IOPS)", { $0.randomWarm.map { Double(plan.count) / $0 } }, true),
        ]
        var t = MarkdownTable(["measure (median of \(rounds) interleaved rounds)", "mount", "lineage on", "--no-lineage", "on / off", ">= 0.95x"])
        for pair in pairs {
            guard let on = figures[pair.on.name], let off = figures[pair.off.name] else { continue }
            for (what, values, judged) in rows {
                let a = median(values(on)), b = median(values(off))
                let ratio = a / b
                t.add([what, pair.label, fixed(a, 0), fixed(b, 0), fixed(ratio, 2) + "x", judged ? (ratio >= 0.95 ? "PASS" : "MISS") : "-"])
            }
        }
        var lines = ["## Lineage on vs `--no-lineage` (`AssetBench lineage --rounds \(rounds)`)", "",
                     "\(files.count) files of version 3; \(small.count) files < 1 MiB; \(plan.count) random 4 KiB reads over \(large.count) files >= 1 MiB. "
                     + "Each round measures every mount once, each pair in alternating order, each measure in a fresh mount after dropping caches "
                     + "(warm small files: best of 3 passes after one filling pass). \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores.", "",
                     t.render(), ""]
        for pair in pairs {
            for name in [pair.on.name, pair.off.name] {
                guard let f = figures[name] else { continue }
                lines.append("\(name): model s " + f.coldModel.map { fixed($0, 3) }.joined(separator: ", ")
                             + "; random cold s " + f.randomCold.map { fixed($0, 3) }.joined(separator: ", ")
                             + "; warm small s " + f.warmSmall.map { fixed($0, 3) }.joined(separator: ", "))
            }
        }
        return lines.joined(separator: "\n")
    }
}
