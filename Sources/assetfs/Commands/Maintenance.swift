import ArgumentParser
import AssetCatalog
import AssetRepository
import Foundation

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-hash every chunk and file; name what any damage breaks.", discussion: "Example: assetfs verify data@prod")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Only this version (default: the whole store).") var ref: String?

    func run() throws {
        let repo = try store.open()
        let show = store.showProgress
        let target = try ref.map { try parseRef($0) }
        let report = try Verifier(repo: repo).verify(target) { done, total in
            if show { ProgressBar.count(done, of: total, label: "verifying chunks") }
        }
        if show { ProgressBar.finish() }
        if output.json {
            try printJSON(report)
        } else {
            for d in report.damagedChunks { print("DAMAGED chunk \(d.chunk) in \(d.pack): \(d.problem)") }
            for f in report.damagedFiles { print("DAMAGED \(f)") }
            for a in report.affected { print("BROKEN \(a.version):\(a.path)") }
            if !store.quiet || !report.ok {
                print("checked \(report.chunksChecked) chunks (\(Format.bytes(report.bytesChecked))) and \(report.filesChecked) files: "
                      + (report.ok ? "no damage" : "\(report.damagedChunks.count) damaged chunks, \(report.affected.count) broken paths"))
            }
        }
        if !report.ok {
            printError("assetfs: error: the store is damaged: restore the named packs from a copy of the store, or `assetfs delete` the broken versions and run `assetfs gc`")
            throw ExitCode.failure
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Logical size, stored size, dedup ratio, chunks and packs; or what a running mount is doing (--mount).",
        discussion: """
            Examples: assetfs stats --json
                      assetfs stats --mount /assets    (caches, object store, catalog, FUSE requests since the mount started)
            """)
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Option(help: "A mountpoint on this host: print its daemon's figures (the same as its --metrics endpoint) instead of the store's.")
    var mount: String?

    struct StatsJSON: Encodable {
        let assets: Int
        let versions: Int
        let logicalBytes: UInt64
        let storedBytes: UInt64
        let dedupRatio: Double
        let chunks: Int
        let chunkRawBytes: UInt64
        let packs: Int
        /// The store's format version (Documentation/Format.md): 1 or 2.
        let format: Int
    }

    func run() throws {
        if let mount { return try MountStats.print(mountpoint: absolute(mount), json: output.json) }
        let repo = try store.open()
        let s = try repo.catalog.statistics()
        let format = repo.config.version
        let ratio = s.packBytes > 0 ? Double(s.logicalBytes) / Double(s.packBytes) : 0
        if output.json {
            try printJSON(StatsJSON(assets: s.assets, versions: s.versions, logicalBytes: s.logicalBytes, storedBytes: s.packBytes,
                                    dedupRatio: ratio, chunks: s.chunks, chunkRawBytes: s.chunkRawBytes, packs: s.packs,
                                    format: format))
            return
        }
        print("""
            assets:          \(s.assets)
            versions:        \(s.versions)
            logical bytes:   \(Format.bytes(s.logicalBytes)) (all versions added up)
            unique content:  \(Format.bytes(s.chunkRawBytes)) in \(s.chunks) chunks
            stored bytes:    \(Format.bytes(s.packBytes)) in \(s.packs) packs
            ratio:           \(String(format: "%.2f", ratio))x (logical / stored)
            format:          \(format) (\(format == 1 ? "chunk ids hash the chunk's bytes" : "chunk ids hash the chunk's block hashes"))
            """)
    }
}

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "Reclaim the space of deleted versions and crashed imports.", discussion: "Example: assetfs gc")
    @OptionGroup var store: StoreOptions
    @Option(help: "Keep packs that left the catalog (and unrecorded packs) this long before deleting them, e.g. 0, 90s, 10m, 1h (default 0 for a local store, 15m for a shared one).")
    var gracePeriod: String?

    func validate() throws {
        if let gracePeriod, parseDuration(gracePeriod) == nil {
            throw ValidationError("invalid --grace-period '\(gracePeriod)': use a number of seconds or one with s, m or h, e.g. 10m")
        }
    }

    func run() throws {
        let repo = try store.open()
        var gc = GarbageCollector(repo: repo)
        gc.gracePeriod = gracePeriod.flatMap(parseDuration) ?? repo.defaultGracePeriod
        let quiet = store.quiet
        gc.waiting = { holders in
            if !quiet { printError("gc: waiting for \(holders.map(\.summary).joined(separator: ", ")) to finish") }
        }
        let r = try gc.run()
        if !store.quiet {
            var line = "gc: removed \(r.chunkRowsRemoved) chunks, deleted \(r.packsDeleted) packs, rewrote \(r.packsRewritten), removed \(r.orphanPacksDeleted) orphan packs; \(Format.bytes(r.bytesBefore)) -> \(Format.bytes(r.bytesAfter))"
            if r.packsWaiting > 0 {
                line += "; \(r.packsWaiting) packs (\(Format.bytes(r.bytesWaiting))) wait for their grace period and go in a later gc"
            }
            print(line)
        }
    }
}

/// "90", "90s", "10m", "1h" -> seconds.
func parseDuration(_ text: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
    var digits = Substring(text)
    var multiplier = 1.0
    if let last = digits.last, let unit = units[last] {
        multiplier = unit
        digits = digits.dropLast()
    }
    guard let value = Double(digits), value >= 0, value.isFinite else { return nil }
    return value * multiplier
}
