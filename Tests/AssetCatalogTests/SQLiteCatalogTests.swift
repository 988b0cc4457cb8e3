import AssetTestSupport
import AssetCatalog
import AssetStore
import Dispatch
import Foundation
import Testing

/// A tree with no entries, distinct per `seed` (the catalog deduplicates trees by hash).
private func emptyTree(_ w: CatalogWriter, seed: Int = 0) throws -> (id: Int64, hash: ContentHash) {
    let hash = ContentHash.of(Array("empty tree \(seed)".utf8))
    return (try w.insertTree(hash: hash, entries: [], fileCount: 0, totalSize: 0), hash)
}

private func newVersion(_ tree: Int64, parent: Int? = nil, message: String = "", meta: [MetaItem] = [], tag: String? = nil,
                        files: Int = 0, bytes: UInt64 = 0) -> NewVersion {
    NewVersion(rootTreeID: tree, parent: parent, author: "tester", message: message, fileCount: files, logicalBytes: bytes,
               newBytes: bytes / 2, meta: meta, tag: tag)
}

private func withCatalog<T>(_ body: (SQLiteCatalog, String) throws -> T) throws -> T {
    try withTemporaryDirectory("catalog") { dir in
        let path = dir + "/catalog.sqlite"
        return try body(try SQLiteCatalog(path: path), path)
    }
}

@discardableResult
private func create(_ catalog: Catalog, _ asset: String, seed: Int = 0, tag: String? = nil, message: String = "") throws -> Int {
    try catalog.write { w in
        let tree = try emptyTree(w, seed: seed)
        let parent = try w.latestVersionNumber(asset: asset)
        return try w.createVersion(asset: asset, newVersion(tree.id, parent: parent, message: message, tag: tag), user: "alice")
    }
}

private struct Injected: Error {}

@Suite("SQLiteCatalog")
struct SQLiteCatalogTests {
    @Test("opening the same catalog twice applies each migration once")
    func migrationsApplyOnce() throws {
        try withTemporaryDirectory("migrations") { dir in
            let path = dir + "/catalog.sqlite"
            do {
                let catalog = try SQLiteCatalog(path: path)
                try create(catalog, "data")
            }
            let first = try sqlite3CLI(path, "SELECT name || '|' || applied_ns FROM schema_migrations ORDER BY name")
            #expect(first.status == 0, "\(first.stderr)")
            let rows = first.stdout.split(separator: "\n")
            #expect(!rows.isEmpty)
            #expect(rows.contains { $0.hasPrefix("0001-initial|") })
            #expect(Set(rows.map { $0.split(separator: "|")[0] }).count == rows.count)

            let reopened = try SQLiteCatalog(path: path)
            let alsoOpen = try SQLiteCatalog(path: path)
            let second = try sqlite3CLI(path, "SELECT name || '|' || applied_ns FROM schema_migrations ORDER BY name")
            #expect(second.stdout == first.stdout, "migrations were re-applied or re-recorded")
            #expect(try reopened.versions(of: "data").map(\.number) == [1])
            #expect(try alsoOpen.versions(of: "data").map(\.number) == [1])
            #expect(try create(reopened, "data", seed: 1) == 2)
            #expect(try alsoOpen.versions(of: "data").map(\.number) == [1, 2])

            let mode = try sqlite3CLI(path, "PRAGMA journal_mode")
            #expect(mode.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "wal")
            let tables = try sqlite3CLI(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
            for table in ["packs", "chunks", "files", "file_chunks", "trees", "entries", "assets", "versions", "tags", "audit", "stat_cache"] {
                #expect(tables.stdout.split(separator: "\n").contains(Substring(table)), "missing table \(table)")
            }
        }
    }

    @Test("a catalog written by a newer assetfs (unknown migration) is refused")
    func refusesNewerCatalog() throws {
        try withTemporaryDirectory("newer") { dir in
            let path = dir + "/catalog.sqlite"
            do { _ = try SQLiteCatalog(path: path) }
            let insert = try sqlite3CLI(path, "INSERT INTO schema_migrations(name, applied_ns) VALUES('9999-from-the-future', 1)")
            #expect(insert.status == 0, "\(insert.stderr)")
            let error = #expect(throws: CatalogError.self) { _ = try SQLiteCatalog(path: path) }
            #expect(error?.message.contains("9999-from-the-future") == true)
        }
    }

    @Test("versions are numbered per asset from 1, never reused, with parent, meta and root hash")
    func versionNumbering() throws {
        try withCatalog { catalog, _ in
            let meta = [MetaItem(key: "git", value: "4f2a1c"), MetaItem(key: "a", value: "x=y"), MetaItem(key: "git", value: "second")]
            let (n1, hash1) = try catalog.write { w -> (Int, ContentHash) in
                let tree = try emptyTree(w, seed: 1)
                return (try w.createVersion(asset: "data", newVersion(tree.id, message: "first cut", meta: meta, files: 3, bytes: 1000), user: "alice"), tree.hash)
            }
            #expect(n1 == 1)
            #expect(try create(catalog, "data", seed: 2) == 2)
            #expect(try create(catalog, "data", seed: 3) == 3)
            #expect(try create(catalog, "other", seed: 1) == 1)

            let v1 = try #require(try catalog.version(of: "data", number: 1))
            #expect(v1.asset == "data" && v1.message == "first cut" && v1.author == "tester")
            #expect(v1.meta == meta)
            #expect(v1.rootHash == hash1)
            #expect(v1.fileCount == 3 && v1.logicalBytes == 1000 && v1.newBytes == 500)
            #expect(v1.parent == nil)
            #expect(try catalog.version(of: "data", number: 3)?.parent == 2)
            #expect(try catalog.version(of: "other", number: 1)?.rootHash == hash1, "identical trees share their row and hash")

            try catalog.deleteVersion(asset: "data", number: 3, user: "bob")
            #expect(try create(catalog, "data", seed: 4) == 4, "a deleted version's number was reused")
            // A failed batch rolls back everything, including the number it drew.
            #expect(throws: Injected.self) {
                try catalog.write { w in
                    let tree = try emptyTree(w, seed: 5)
                    _ = try w.createVersion(asset: "data", newVersion(tree.id), user: "alice")
                    throw Injected()
                }
            }
            #expect(try catalog.versions(of: "data").map(\.number) == [1, 2, 4])
            #expect(try create(catalog, "data", seed: 6) == 5)
            #expect(try catalog.write { try $0.latestVersionNumber(asset: "data") } == 5)
            #expect(try catalog.write { try $0.latestVersionNumber(asset: "nothing") } == nil)

            let assets = try catalog.assets()
            #expect(assets.map(\.name) == ["data", "other"])
            #expect(assets.map(\.versionCount) == [4, 1])
            #expect(assets.map(\.latest) == [5, 1])

            #expect(try catalog.resolve(Ref(asset: "data", selector: .latest)).number == 5)
            #expect(try catalog.resolve(Ref(asset: "data", selector: .number(2))).number == 2)
            let missing = #expect(throws: CatalogError.self) { try catalog.resolve(Ref(asset: "data", selector: .number(3))) }
            #expect(missing?.code == .notFound)
            #expect(throws: CatalogError.self) { try catalog.resolve(Ref(asset: "nope", selector: .latest)) }
            #expect(throws: CatalogError.self) { try catalog.deleteVersion(asset: "data", number: 3, user: "bob") }
        }
    }

    @Test("tags: set, move, remove, each with one audit row")
    func tagsAndAudit() throws {
        try withCatalog { catalog, _ in
            try create(catalog, "data", seed: 1)
            try create(catalog, "data", seed: 2)
            try create(catalog, "data", seed: 3, tag: "candidate")

            #expect(try catalog.setTag(asset: "data", name: "prod", version: 1, user: "alice") == nil)
            #expect(try catalog.resolve(Ref(asset: "data", selector: .tag("prod"))).number == 1)
            #expect(try catalog.setTag(asset: "data", name: "prod", version: 2, user: "bob") == 1)
            #expect(try catalog.resolve(Ref(asset: "data", selector: .tag("prod"))).number == 2)
            #expect(try catalog.setTag(asset: "data", name: "prod", version: 2, user: "bob") == 2)  // unchanged: no audit row
            #expect(try catalog.versions(of: "data").map(\.tags) == [[], ["prod"], ["candidate"]])
            #expect(try catalog.tags(of: "data").map(\.name) == ["candidate", "prod"])

            // A tagged version cannot be deleted.
            let conflict = #expect(throws: CatalogError.self) { try catalog.deleteVersion(asset: "data", number: 2, user: "eve") }
            #expect(conflict?.code == .conflict)
            #expect(try catalog.version(of: "data", number: 2) != nil)

            #expect(try catalog.removeTag(asset: "data", name: "prod", user: "carol") == 2)
            #expect(throws: CatalogError.self) { try catalog.resolve(Ref(asset: "data", selector: .tag("prod"))) }
            #expect(throws: CatalogError.self) { try catalog.removeTag(asset: "data", name: "prod", user: "carol") }
            #expect(throws: CatalogError.self) { try catalog.setTag(asset: "data", name: "prod", version: 9, user: "alice") }
            #expect(throws: CatalogError.self) { try catalog.setTag(asset: "nope", name: "prod", version: 1, user: "alice") }
            try catalog.deleteVersion(asset: "data", number: 2, user: "dave")

            let log = try catalog.audit(asset: "data")
            let summary = log.map { "\($0.action) \($0.subject) \($0.from ?? "-") \($0.to ?? "-") \($0.user)" }
            #expect(summary == [
                "create-version v1 - v1 alice",
                "create-version v2 v1 v2 alice",
                "create-version v3 v2 v3 alice",
                "tag candidate - v3 alice",
                "tag prod - v1 alice",
                "tag prod v1 v2 bob",
                "untag prod v2 - carol",
                "delete-version v2 v2 - dave",
            ])
            #expect(log.map(\.id) == log.map(\.id).sorted())
            #expect(zip(log, log.dropFirst()).allSatisfy { $0.atNs <= $1.atNs })
            #expect(try catalog.audit(asset: nil).count == log.count)
            #expect(try catalog.audit(asset: "other").isEmpty)
        }
    }

    @Test("the audit log is append-only, even for a second connection")
    func auditIsAppendOnly() throws {
        try withCatalog { catalog, path in
            try create(catalog, "data", seed: 1)
            _ = try catalog.setTag(asset: "data", name: "prod", version: 1, user: "alice")
            let before = try catalog.audit(asset: nil)
            #expect(before.count == 2)

            for sql in ["DELETE FROM audit", "DELETE FROM audit WHERE action = 'tag'", "UPDATE audit SET user = 'mallory'",
                        "UPDATE audit SET to_value = 'v9' WHERE action = 'tag'"] {
                let result = try sqlite3CLI(path, sql)
                #expect(result.status != 0, "\(sql) succeeded on the audit table")
                #expect(result.stderr.contains("append-only"), "\(sql): \(result.stderr)")
            }
            let after = try catalog.audit(asset: nil)
            #expect(after.map(\.user) == before.map(\.user))
            #expect(after.map(\.to) == before.map(\.to))
            let count = try sqlite3CLI(path, "SELECT COUNT(*) FROM audit")
            #expect(count.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(before.count)")
            // Appending still works.
            _ = try catalog.removeTag(asset: "data", name: "prod", user: "x")
            #expect(try catalog.audit(asset: nil).count == before.count + 1)
        }
    }

    @Test("the stat cache is read one directory at a time: direct children only, raw-byte names, rows of vanished files left out")
    func statCacheByDirectory() throws {
        try withCatalog { catalog, _ in
            let pack = ContentHash.of([1])
            let chunk = ChunkLocation(id: ContentHash.of([10]), pack: pack, offset: 16, length: 10, rawLength: 10, codec: .raw, tableHash: ContentHash.of([11]))
            let paths: [[UInt8]] = ["a", "dir/b", "dir/sub/c", "dir0", "dir.x/d", "dirt/e"].map { Array($0.utf8) } + [[0xFF, 0x41], Array("dir/".utf8) + [0xFE]]
            try catalog.write { w in
                try w.recordPack(pack, size: 100, chunks: [chunk])
                var rows: [(path: [UInt8], entry: StatCacheEntry)] = []
                for (i, path) in paths.enumerated() {
                    let file = try w.insertFile(hash: ContentHash.of([UInt8(i)]), size: 10, chunks: [(0, chunk.id)])
                    rows.append((path, StatCacheEntry(size: UInt64(i), mtimeNs: Int64(i), ctimeNs: 0, inode: 7, fileID: file)))
                }
                // A row whose file row is gone (as after gc) must not be offered for reuse.
                rows.append((Array("dir/gone".utf8), StatCacheEntry(size: 1, mtimeNs: 1, ctimeNs: 1, inode: 1, fileID: 999_999)))
                try w.replaceStatCache(asset: "data", entries: rows)
            }
            func names(_ dir: String) throws -> Set<[UInt8]> {
                Set(try catalog.statCache(asset: "data", directory: Array(dir.utf8)).keys)
            }
            #expect(try names("") == Set([Array("a".utf8), Array("dir0".utf8), [0xFF, 0x41]]))
            #expect(try names("dir") == Set([Array("b".utf8), [0xFE]]))
            #expect(try names("dir/sub") == Set([Array("c".utf8)]))
            #expect(try names("dir.x") == Set([Array("d".utf8)]))
            #expect(try names("nothing").isEmpty)
            #expect(try catalog.statCache(asset: "other", directory: []).isEmpty)
            let b = try #require(try catalog.statCache(asset: "data", directory: Array("dir".utf8))[Array("b".utf8)])
            #expect(b.entry.size == 1 && b.entry.mtimeNs == 1 && b.entry.inode == 7)
            #expect(b.hash == ContentHash.of([1]))
        }
    }

    @Test("trees, files and the chunk index round-trip, with raw-byte names")
    func treesFilesChunks() throws {
        try withCatalog { catalog, _ in
            let pack = ContentHash.of([1])
            let c1 = ChunkLocation(id: ContentHash.of([10]), pack: pack, offset: 16, length: 100, rawLength: 150, codec: .zstd, tableHash: ContentHash.of([11]))
            let c2 = ChunkLocation(id: ContentHash.of([20]), pack: pack, offset: 116, length: 200, rawLength: 200, codec: .raw, tableHash: ContentHash.of([21]))
            let fileHash = ContentHash.of([99])
            let names: [[UInt8]] = [Array("b.txt".utf8), [0xFF, 0xFE, 0x41], Array("a".utf8), Array("Z".utf8)]
            let (fileID, treeID, again) = try catalog.write { w -> (Int64, Int64, Int64) in
                try w.recordPack(pack, size: 1000, chunks: [c1, c2])
                #expect(try w.chunkExists(c1.id))
                #expect(try !w.chunkExists(ContentHash.of([12])))
                let file = try w.insertFile(hash: fileHash, size: 350, chunks: [(0, c1.id), (150, c2.id)])
                #expect(try w.insertFile(hash: fileHash, size: 350, chunks: [(0, c1.id), (150, c2.id)]) == file)
                #expect(try w.fileID(hash: fileHash) == file)
                let entries = names.enumerated().map { i, name in
                    TreeEntry(name: name, kind: i == 3 ? .symlink : .file, mode: 0o640 + UInt32(i), uid: 1000, gid: 100 + UInt32(i),
                              size: i == 3 ? 3 : 350, mtimeNs: -1_500_000_000 + Int64(i),
                              target: i == 3 ? [0x2F, 0x78, 0xFF] : nil, fileID: i == 3 ? nil : file)
                }
                let hash = ContentHash.of([42])
                let tree = try w.insertTree(hash: hash, entries: entries, fileCount: 3, totalSize: 1050)
                return (file, tree, try w.insertTree(hash: hash, entries: entries, fileCount: 3, totalSize: 1050))
            }
            #expect(again == treeID, "identical trees must be stored once")
            let info = try catalog.tree(treeID)
            #expect(info.entryCount == 4 && info.fileCount == 3 && info.totalSize == 1050)

            let entries = try catalog.entries(of: treeID)
            #expect(entries.map(\.name) == names.sorted { $0.lexicographicallyPrecedes($1) })
            let odd = try #require(try catalog.entry(in: treeID, named: [0xFF, 0xFE, 0x41]))
            #expect(odd.fileID == fileID && odd.mode == 0o641 && odd.gid == 101 && odd.mtimeNs == -1_499_999_999)
            let link = try #require(try catalog.entry(in: treeID, named: Array("Z".utf8)))
            #expect(link.kind == .symlink && link.target == [0x2F, 0x78, 0xFF] && link.fileID == nil)
            #expect(try catalog.entry(in: treeID, named: Array("missing".utf8)) == nil)

            let file = try catalog.file(fileID)
            #expect(file.hash == fileHash && file.size == 350 && file.chunkCount == 2)
            let chunks = try catalog.fileChunks(fileID)
            #expect(chunks.map(\.offset) == [0, 150])
            #expect(chunks.map(\.location) == [c1, c2])
            #expect(try catalog.chunkLocation(c2.id) == c2)
            #expect(try catalog.chunkLocation(ContentHash.of([77])) == nil)

            // A file naming an unindexed chunk is refused, and the whole batch with it.
            #expect(throws: CatalogError.self) {
                try catalog.write { w in
                    _ = try w.insertFile(hash: ContentHash.of([55]), size: 1, chunks: [(0, ContentHash.of([56]))])
                }
            }
            #expect(try catalog.write { try $0.fileID(hash: ContentHash.of([55])) } == nil)

            let stats = try catalog.statistics()
            #expect(stats.chunks == 2 && stats.chunkRawBytes == 350 && stats.chunkStoredBytes == 300)
            #expect(stats.packs == 1 && stats.packBytes == 1000 && stats.uniqueFileBytes == 350)
        }
    }

    @Test("deleteUnreachable drops the rows of deleted versions only")
    func deleteUnreachable() throws {
        try withCatalog { catalog, _ in
            let pack = ContentHash.of([1])
            let shared = ChunkLocation(id: ContentHash.of([10]), pack: pack, offset: 16, length: 10, rawLength: 10, codec: .raw, tableHash: ContentHash.of([1, 1]))
            let only1 = ChunkLocation(id: ContentHash.of([20]), pack: pack, offset: 26, length: 10, rawLength: 10, codec: .raw, tableHash: ContentHash.of([2, 2]))
            func version(_ fileChunks: [ChunkLocation], seed: UInt8) throws {
                try catalog.write { w in
                    let fileHash = ContentHash.of([seed, 0])
                    let file = try w.insertFile(hash: fileHash, size: UInt64(10 * fileChunks.count),
                                                chunks: fileChunks.enumerated().map { (UInt64($0.offset * 10), $0.element.id) })
                    let entry = TreeEntry(name: [seed], kind: .file, mode: 0o644, uid: 0, gid: 0, size: 20, mtimeNs: 0, fileID: file)
                    let tree = try w.insertTree(hash: ContentHash.of([seed, 1]), entries: [entry], fileCount: 1, totalSize: 20)
                    _ = try w.createVersion(asset: "data", newVersion(tree), user: "alice")
                }
            }
            try catalog.write { try $0.recordPack(pack, size: 1000, chunks: [shared, only1]) }
            try version([shared, only1], seed: 1)
            try version([shared], seed: 2)
            #expect(try catalog.deleteUnreachable() == 0)
            #expect(try catalog.allChunks().count == 2)

            try catalog.deleteVersion(asset: "data", number: 1, user: "alice")
            #expect(try catalog.deleteUnreachable() == 1)
            #expect(try catalog.allChunks().map(\.id) == [shared.id])
            #expect(try catalog.allFiles().map(\.hash) == [ContentHash.of([2, 0])])
            // One live record of 10 bytes, its 88-byte footer entry, and the 32 bytes of header and trailer.
            #expect(try catalog.liveBytesPerPack()[pack] == 10 + 88 + 32)
            #expect(throws: CatalogError.self) { try catalog.forgetPacks([pack]) }

            try catalog.deleteVersion(asset: "data", number: 2, user: "alice")
            #expect(try catalog.deleteUnreachable() == 1)
            #expect(try catalog.liveBytesPerPack()[pack] == 0)
            try catalog.forgetPacks([pack])
            #expect(try catalog.packs().isEmpty)
        }
    }

    @Test("concurrent writers on two connections get distinct, gap-free version numbers")
    func concurrentWriters() throws {
        try withTemporaryDirectory("concurrent") { dir in
            let path = dir + "/catalog.sqlite"
            let catalogs = [try SQLiteCatalog(path: path), try SQLiteCatalog(path: path)]
            let perWriter = 15
            let numbers = Mutexed<[Int]>([])
            let failures = Mutexed<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                for i in 0..<perWriter {
                    do {
                        let n = try create(catalogs[worker % 2], "data", seed: worker * 1000 + i)
                        numbers.withLock { $0.append(n) }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
            #expect(failures.withLock { $0 } == [])
            #expect(numbers.withLock { $0.sorted() } == Array(1...(4 * perWriter)))
            #expect(try catalogs[0].versions(of: "data").count == 4 * perWriter)
        }
    }
}

/// A value shared between threads under a lock.
final class Mutexed<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
