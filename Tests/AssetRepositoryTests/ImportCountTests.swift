import AssetTestSupport
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// With a progress callback the importer counts the tree first (what the CLI does at a terminal), then walks it:
/// the walk must see every entry the count saw, and a tree that changes in between must be said out loud.
@Suite("Import with progress")
struct ImportCountTests {
    @Test("an import with progress reports stores the same tree as one without")
    func progressDoesNotChangeWhatIsStored() throws {
        try withRepository("progress-import") { repo, dir in
            let source = dir + "/src"
            try makeDir(source)
            try buildVariedTree(source)
            let expected = try snapshot(source)
            let seen = Counter()
            var options = ImportOptions(asset: "data", source: source)
            options.progress = { p in seen.record(p) }
            let result = try Importer(repo: repo, options: options).run()
            #expect(result.warnings.isEmpty, "\(result.warnings)")
            #expect(result.version.fileCount == 8 && result.filesRead == 8)
            #expect(seen.last?.filesTotal == 8 && seen.last?.bytesTotal == result.version.logicalBytes, "\(String(describing: seen.last))")
            try export(repo, "data", 1, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])

            let plain = try importTree(repo, "data", source, rehash: true)
            #expect(plain.version.rootHash == result.version.rootHash)
        }
    }

    @Test("a file added after the count but before the walk reaches it is imported, with a warning naming both counts")
    func treeChangingAfterTheCountIsReported() throws {
        try withRepository("progress-changed") { repo, dir in
            let source = dir + "/src"
            try makeDir(source)
            try makeDir(source + "/z-later")
            try writeFile(source + "/a-first.bin", randomBytes(200_000, seed: 3))
            try writeFile(source + "/z-later/old.txt", Array("old\n".utf8))
            let added = Counter()
            var options = ImportOptions(asset: "data", source: source)
            // Names are walked in order: the first report comes while a-first.bin is read, before z-later is listed.
            options.progress = { _ in
                if added.once() { try? writeFile(source + "/z-later/new.txt", Array("new\n".utf8)) }
            }
            let result = try Importer(repo: repo, options: options).run()
            #expect(result.version.fileCount == 3)
            #expect(result.warnings.count == 1, "\(result.warnings)")
            let warning = result.warnings.first ?? ""
            #expect(warning.contains("held 2 files") && warning.contains("but 3 were imported") && warning.contains(source), "\(warning)")
        }
    }
}

/// Progress reports seen by a callback (which must be Sendable).
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var reports: [ImportProgress] = []  // Protected by `lock`.
    private var fired = false  // Protected by `lock`.

    func record(_ p: ImportProgress) { lock.withLock { reports.append(p) } }
    var last: ImportProgress? { lock.withLock { reports.last } }

    /// True the first time only.
    func once() -> Bool { lock.withLock { defer { fired = true }; return !fired } }
}
