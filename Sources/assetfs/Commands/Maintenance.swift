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
    static let configuration = CommandConfiguration(abstract: "Logical size, stored size, dedup ratio, chunks and packs.", discussion: "Example: assetfs stats --json")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag

    struct StatsJSON: Encodable {
        let assets: Int
        let versions: Int
        let logicalBytes: UInt64
        let storedBytes: UInt64
        let dedupRatio: Double
        let chunks: Int
        let chunkRawBytes: UInt64
        let packs: Int
    }

    func run() throws {
        let s = try store.open().catalog.statistics()
        let ratio = s.packBytes > 0 ? Double(s.logicalBytes) / Double(s.packBytes) : 0
        if output.json {
            try printJSON(StatsJSON(assets: s.assets, versions: s.versions, logicalBytes: s.logicalBytes, storedBytes: s.packBytes,
                                    dedupRatio: ratio, chunks: s.chunks, chunkRawBytes: s.chunkRawBytes, packs: s.packs))
            return
        }
        print("""
            assets:          \(s.assets)
            versions:        \(s.versions)
            logical bytes:   \(Format.bytes(s.logicalBytes)) (all versions added up)
            unique content:  \(Format.bytes(s.chunkRawBytes)) in \(s.chunks) chunks
            stored bytes:    \(Format.bytes(s.packBytes)) in \(s.packs) packs
            ratio:           \(String(format: "%.2f", ratio))x (logical / stored)
            """)
    }
}

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "Reclaim the space of deleted versions and crashed imports.", discussion: "Example: assetfs gc")
    @OptionGroup var store: StoreOptions

    func run() throws {
        let r = try GarbageCollector(repo: try store.open()).run()
        if !store.quiet {
            print("gc: removed \(r.chunkRowsRemoved) chunks, deleted \(r.packsDeleted) packs, rewrote \(r.packsRewritten), removed \(r.orphanPacksDeleted) orphan packs; \(Format.bytes(r.bytesBefore)) -> \(Format.bytes(r.bytesAfter))")
        }
    }
}
