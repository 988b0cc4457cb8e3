import AssetTestSupport
import AssetCatalog
import AssetStore
import Dispatch
import Foundation
import Testing

/// Counts the runs of a write closure (the closure itself must stay free of other side effects).
private final class Runs: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0  // Protected by `lock`.
    func next() -> Int { lock.withLock { count += 1; return count } }
}

/// Version numbers handed out to concurrent writers.
private final class Numbers: @unchecked Sendable {
    private let lock = NSLock()
    private var all: [Int] = []  // Protected by `lock`.
    func add(_ n: Int) { lock.withLock { all.append(n) } }
    var sorted: [Int] { lock.withLock { all.sorted() } }
}

/// The rules of CatalogWriter that let writers on many hosts share one catalog: upserts by hash, version
/// numbers allocated in the creating transaction, and write closures that may run more than once.
@Suite("Catalog transaction rules")
struct TransactionRulesTests {
    @Test("a write that fails as transient is run again; the rows and the version number of the failed run are gone")
    func transientWriteIsRunAgain() throws {
        try withTemporaryDirectory("rerun") { dir in
            let catalog = try SQLiteCatalog(path: dir + "/catalog.sqlite")
            let pack = ContentHash.of(Array("pack".utf8))
            let chunk = ContentHash.of(Array("chunk".utf8))
            let file = ContentHash.of(Array("file".utf8))
            let tree = ContentHash.of(Array("tree".utf8))
            let runs = Runs()
            let (fileID, number) = try catalog.write { w -> (Int64, Int) in
                let run = runs.next()
                try w.recordPack(pack, size: 100, chunks: [ChunkLocation(id: chunk, pack: pack, offset: 16, length: 10, rawLength: 5,
                                                                         codec: .raw, tableHash: chunk)])
                let fileID = try w.insertFile(hash: file, size: 5, chunks: [(0, chunk)])
                let treeID = try w.insertTree(hash: tree, entries: [TreeEntry(name: Array("f".utf8), kind: .file, mode: 0o644, uid: 0, gid: 0,
                                                                            size: 5, mtimeNs: 0, fileID: fileID)],
                                              fileCount: 1, totalSize: 5)
                let number = try w.createVersion(asset: "data", NewVersion(rootTreeID: treeID, parent: nil, author: "t", message: "m",
                                                                           fileCount: 1, logicalBytes: 5, newBytes: 5, meta: [], tag: nil),
                                                 user: "t")
                if run == 1 { throw CatalogError(.transient, "injected serialization failure") }
                return (fileID, number)
            }
            #expect(number == 1, "the failed run's number was rolled back with it")
            #expect(try catalog.allFiles().map(\.id) == [fileID])
            #expect(try catalog.versions(of: "data").map(\.number) == [1])
            #expect(try catalog.fileChunks(fileID).count == 1)
            #expect(try catalog.audit(asset: "data").filter { $0.action == "create-version" }.count == 1)
        }
    }

    @Test("a write that fails otherwise runs once; upserts by hash return the first row; numbers never repeat")
    func upsertsAndNumbers() throws {
        try withTemporaryDirectory("upserts") { dir in
            let catalog = try SQLiteCatalog(path: dir + "/catalog.sqlite")
            let runs = Runs()
            #expect(throws: CatalogError.self) {
                try catalog.write { _ in
                    _ = runs.next()
                    throw CatalogError(.conflict, "not transient")
                }
            }
            #expect(runs.next() == 2, "a non-transient failure was retried")

            let tree = ContentHash.of(Array("t".utf8))
            let first = try catalog.write { w in try w.insertTree(hash: tree, entries: [], fileCount: 0, totalSize: 0) }
            let again = try catalog.write { w in try w.insertTree(hash: tree, entries: [], fileCount: 0, totalSize: 0) }
            #expect(first == again)

            // Two connections (as two processes would have) creating versions at once: distinct, gapless numbers.
            let other = try SQLiteCatalog(path: dir + "/catalog.sqlite")
            let seen = Numbers()
            DispatchQueue.concurrentPerform(iterations: 20) { i in
                let c = i % 2 == 0 ? catalog : other
                let n = try? c.write { w in
                    try w.createVersion(asset: "data", NewVersion(rootTreeID: first, parent: nil, author: "t", message: "\(i)",
                                                                  fileCount: 0, logicalBytes: 0, newBytes: 0, meta: [], tag: nil),
                                        user: "t")
                }
                if let n { seen.add(n) }
            }
            #expect(seen.sorted == Array(1...20))
        }
    }
}
