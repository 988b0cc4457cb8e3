#if canImport(Glibc)
import Glibc
#endif

/// The first import of a tree against a plain copy of it: `cp -a SRC DST` followed by `sync` (what the import's
/// durability costs a copy too), and each assetfs binary's import of the same tree into a new store, also
/// followed by `sync` (the import fsyncs what it writes, so that sync finds little left to do). Rounds
/// alternate the tools, so a busy moment of this shared machine falls on all of them alike; the best of
/// `rounds` is kept for each. The source was just written, so every tool reads it from the page cache.
struct FirstImport {
    static let rounds = 3
    static let copy = "cp -a + sync"
    /// Seconds per round, by tool ("cp -a + sync", "assetfs", "assetfs-old").
    var seconds: [String: [Double]] = [:]
    var bytes = 0

    func best(_ tool: String) -> Double? { seconds[tool]?.min() }

    static func measure(source: String, work: String, importers: [any Importer], runner: CommandRunner) throws -> FirstImport {
        var result = FirstImport()
        result.bytes = try FileIO.regularFiles(under: source).reduce(0) { try $0 + FileIO.signature($1).size }
        let assetfs = importers.compactMap { $0 as? AssetfsImporter }
        for round in 1...rounds {
            try FileIO.removeIfPresent(work)
            try FileIO.makeDirectory(work)
            let copy = try runner.run("/bin/sh", ["-c", "cp -a \"$0\" \"$1\" && sync", source, work + "/copy"],
                                      label: "first-copy-\(round)").seconds
            result.seconds[Self.copy, default: []].append(copy)
            try FileIO.removeIfPresent(work + "/copy")
            var line = "first import, round \(round): cp -a + sync \(fixed(copy, 2)) s"
            for importer in assetfs {
                let fresh = AssetfsImporter(binary: importer.binary, repository: work + "/" + importer.name, name: importer.name)
                try fresh.create(runner)
                sync()
                let (_, seconds) = try timed { () throws in
                    _ = try fresh.importVersion(1, source: source, runner)
                    sync()
                }
                result.seconds[importer.name, default: []].append(seconds)
                try FileIO.removeIfPresent(fresh.repository)
                line += ", \(importer.name) \(fixed(seconds, 2)) s"
            }
            progress(line)
        }
        try FileIO.removeIfPresent(work)
        return result
    }
}
