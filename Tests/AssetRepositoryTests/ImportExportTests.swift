import AssetTestSupport
import AssetCatalog
import AssetRepository
import AssetStore
import Dispatch
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Builds a varied tree under `root` (which must exist): nested directories, modes, owners, ns mtimes, symlinks.
func buildVariedTree(_ root: String, seed: UInt64 = 1) throws {
    try makeDir(root + "/sub", mode: 0o750)
    try makeDir(root + "/sub/deeper")
    try makeDir(root + "/empty-dir", mode: 0o700)
    try writeFile(root + "/big.bin", randomBytes(3_000_000, seed: seed))
    try writeFile(root + "/notes.txt", textBytes(10_000, seed: seed + 1), mode: 0o600)
    try writeFile(root + "/run.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
    try writeFile(root + "/setuid-tool", Array("x".utf8), mode: 0o4750)
    try writeFile(root + "/sub/data.csv", textBytes(300_000, seed: seed + 2), mode: 0o640)
    try writeFile(root + "/sub/deeper/one", [0x31])
    try writeFile(root + "/sub/deeper/empty", [])
    try writeFile(root + "/owned", Array("owned by someone else\n".utf8))
    guard chown(root + "/owned", 1234, 4321) == 0 else { throw TestFailure("chown failed") }
    try makeSymlink("sub/data.csv", at: bytes(root + "/rel-link"))
    try makeSymlink("/nonexistent/dangling", at: bytes(root + "/dangling"))
    try makeSymlink("deeper", at: bytes(root + "/sub/dir-link"))
    // Distinct nanosecond mtimes, leaves first, directories last.
    let paths = ["big.bin", "notes.txt", "run.sh", "setuid-tool", "sub/data.csv", "sub/deeper/one", "sub/deeper/empty", "owned",
                 "rel-link", "dangling", "sub/dir-link", "sub/deeper", "sub", "empty-dir"]
    for (i, p) in paths.enumerated() {
        try setMtime(root + "/" + p, seconds: 1_700_000_000 + i * 3_600, nanoseconds: 123_456_789 + i)
    }
}

@Suite("Import and export")
struct ImportExportTests {
    @Test("import then export reproduces every byte, mode, owner, ns mtime and symlink target")
    func roundTrip() throws {
        try withRepository("roundtrip") { repo, dir in
            let source = dir + "/src"
            try makeDir(source)
            try buildVariedTree(source)
            let expected = try snapshot(source)

            let result = try importTree(repo, "data", source, message: "first", meta: [MetaItem(key: "k", value: "v")])
            #expect(result.version.number == 1)
            #expect(result.warnings.isEmpty)
            #expect(result.filesRead == 8 && result.filesReused == 0)
            #expect(result.version.fileCount == 8)
            let regular = expected.values.filter { $0.kind == "file" }
            #expect(result.version.logicalBytes == UInt64(regular.reduce(0) { $0 + $1.size }))
            #expect(result.version.message == "first" && result.version.meta == [MetaItem(key: "k", value: "v")])

            let destination = dir + "/out"
            let exported = try export(repo, "data", 1, to: destination)
            #expect(exported.files == 8 && exported.symlinks == 3 && exported.directories == 3)
            #expect(differences(expected, try snapshot(destination)) == [])

            // The catalog's file hashes are the SHA-256 of the source files (what sha256sum prints).
            try VersionTree(catalog: repo.catalog, version: result.version).walk { path, entry in
                guard entry.kind == .file else { return }
                let fileID = try #require(entry.fileID)
                #expect(try repo.catalog.file(fileID).hash == expected[path]?.content)
            }
        }
    }

    @Test("non-UTF-8 and 255-byte names round-trip byte for byte")
    func oddNames() throws {
        try withRepository("names") { repo, dir in
            let source = bytes(dir + "/src")
            try makeDir(source)
            let latin1: [UInt8] = [0x63, 0x61, 0x66, 0xE9, 0x2E, 0x74, 0x78, 0x74]  // "café.txt" in Latin-1
            let invalid: [UInt8] = [0xFF, 0xFE, 0x41, 0x80]
            let longName = bytes(String(repeating: "n", count: 251) + ".bin")
            #expect(longName.count == 255)
            let oddDir: [UInt8] = [0x64, 0xC3, 0x28, 0xFF]  // broken UTF-8 sequence
            try writeFile(join(source, latin1), Array("latin-1 name".utf8))
            try writeFile(join(source, invalid), randomBytes(5000, seed: 4))
            try writeFile(join(source, longName), Array("long".utf8))
            try makeDir(join(source, oddDir))
            try writeFile(join(join(source, oddDir), invalid), Array("nested".utf8))
            try writeFile(join(join(source, oddDir), longName), Array("nested long".utf8))
            try makeSymlink(String(decoding: latin1, as: UTF8.self), at: join(source, bytes("link")))
            let expected = try snapshot(String(decoding: source, as: UTF8.self))
            #expect(expected.count == 7)

            let result = try importTree(repo, "names", dir + "/src")
            let root = try repo.catalog.entries(of: result.version.rootTreeID)
            #expect(Set(root.map(\.name)) == Set([latin1, invalid, longName, oddDir, bytes("link")]))
            #expect(try repo.catalog.entry(in: result.version.rootTreeID, named: invalid)?.size == 5000)

            try export(repo, "names", 1, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])
        }
    }

    @Test("an empty file and an empty directory")
    func emptyThings() throws {
        try withRepository("empty") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/empty", [])
            try makeDir(dir + "/src/nothing")
            let expected = try snapshot(dir + "/src")
            let result = try importTree(repo, "e", dir + "/src")
            #expect(result.version.fileCount == 1 && result.version.logicalBytes == 0)
            let entry = try #require(try repo.catalog.entry(in: result.version.rootTreeID, named: bytes("empty")))
            let file = try repo.catalog.file(try #require(entry.fileID))
            #expect(file.size == 0 && file.hash == ContentHash.of([UInt8]()))
            try export(repo, "e", 1, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])
            #expect(try Verifier(repo: repo).verify(nil).ok)
        }
    }

    @Test("an empty source directory imports as an empty version")
    func emptySource() throws {
        try withRepository("emptysrc") { repo, dir in
            try makeDir(dir + "/src")
            let result = try importTree(repo, "nothing", dir + "/src")
            #expect(result.version.fileCount == 0)
            #expect(try repo.catalog.entries(of: result.version.rootTreeID).isEmpty)
            try export(repo, "nothing", 1, to: dir + "/out")
            #expect(try snapshot(dir + "/out").isEmpty)
        }
    }

    @Test("a 50 MB sparse file imports and exports with identical content, stored small")
    func sparseFile() throws {
        try withRepository("sparse") { repo, dir in
            try makeDir(dir + "/src")
            let path = dir + "/src/sparse.img"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            #expect(ftruncate(fd, 50_000_000) == 0)
            for (offset, text) in [(0, "head"), (25_000_000, "middle"), (49_999_990, "tail")] {
                let b = Array(text.utf8)
                #expect(pwrite(fd, b, b.count, off_t(offset)) == b.count)
            }
            close(fd)
            let expected = try snapshot(dir + "/src")

            let result = try importTree(repo, "disk", dir + "/src")
            #expect(result.version.logicalBytes == 50_000_000)
            let stats = try repo.catalog.statistics()
            #expect(stats.chunkRawBytes < 20_000_000, "zero runs should deduplicate: \(stats.chunkRawBytes) unique bytes")
            #expect(stats.packBytes < 5_000_000, "zero runs should compress: \(stats.packBytes) pack bytes")

            try export(repo, "disk", 1, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])
        }
    }

    @Test("a symlink to /etc/shadow is stored as a link and never followed")
    func symlinkNeverFollowed() throws {
        try withRepository("shadow") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/real.txt", Array("just a file\n".utf8))
            try makeSymlink("/etc/shadow", at: bytes(dir + "/src/shadow"))
            try makeSymlink("/etc", at: bytes(dir + "/src/etc"))
            let result = try importTree(repo, "links", dir + "/src")
            #expect(result.version.fileCount == 1)
            #expect(result.version.logicalBytes == 12)
            let link = try #require(try repo.catalog.entry(in: result.version.rootTreeID, named: bytes("shadow")))
            #expect(link.kind == .symlink && link.target == bytes("/etc/shadow") && link.fileID == nil)
            #expect(link.size == UInt64("/etc/shadow".utf8.count))
            let etc = try #require(try repo.catalog.entry(in: result.version.rootTreeID, named: bytes("etc")))
            #expect(etc.kind == .symlink && etc.subtreeID == nil)
            #expect(try repo.catalog.statistics().uniqueFileBytes == 12)
            if let shadow = FileManager.default.contents(atPath: "/etc/shadow") {
                let shadowHash = ContentHash.of([UInt8](shadow))
                #expect(try !repo.catalog.allFiles().contains { $0.hash == shadowHash })
            }

            try export(repo, "links", 1, to: dir + "/out")
            let st = try lstatPath(bytes(dir + "/out/shadow"))
            #expect(st.st_mode & S_IFMT == S_IFLNK)
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(dir + "/out/shadow", &buffer, buffer.count)
            #expect(n > 0 && String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "/etc/shadow")
        }
    }

    @Test("a fifo is skipped with a warning that names it")
    func fifoSkipped() throws {
        try withRepository("fifo") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/a.txt", Array("a".utf8))
            #expect(mkfifo(dir + "/src/my-pipe", 0o644) == 0)
            let result = try importTree(repo, "f", dir + "/src")
            #expect(result.warnings.count == 1)
            #expect(result.warnings.first?.contains("my-pipe") == true)
            #expect(result.warnings.first?.contains("fifo") == true)
            #expect(try repo.catalog.entries(of: result.version.rootTreeID).map(\.name) == [bytes("a.txt")])
        }
    }

    @Test("identical files are stored once")
    func identicalFilesStoredOnce() throws {
        try withRepository("dedup") { repo, dir in
            try makeDir(dir + "/src")
            try makeDir(dir + "/src/copies")
            let small = randomBytes(1 << 20, seed: 8)
            let large = randomBytes(3 << 20, seed: 9)
            for i in 0..<8 { try writeFile(dir + "/src/copies/small-\(i).bin", small) }
            try writeFile(dir + "/src/large-a.bin", large)
            try writeFile(dir + "/src/copies/large-b.bin", large)
            let result = try importTree(repo, "d", dir + "/src")
            #expect(result.version.logicalBytes == UInt64(8 * small.count + 2 * large.count))
            let stats = try repo.catalog.statistics()
            #expect(stats.uniqueFileBytes == UInt64(small.count + large.count))
            #expect(stats.chunkRawBytes == UInt64(small.count + large.count))
            #expect(stats.packBytes < UInt64(small.count + large.count + 100_000))
            #expect(try repo.catalog.allFiles().count == 2)
            // A second asset with the same bytes adds nothing.
            let again = try importTree(repo, "d2", dir + "/src")
            #expect(again.version.newBytes == 0)
            #expect(try repo.catalog.statistics().packBytes == stats.packBytes)
        }
    }

    @Test("re-importing an unchanged tree reuses every file; --rehash re-reads; a changed file is seen despite a restored mtime")
    func reuseAndRehash() throws {
        try withRepository("reuse") { repo, dir in
            let source = dir + "/src"
            try makeDir(source)
            try buildVariedTree(source, seed: 40)
            let files = 8
            let first = try importTree(repo, "data", source)
            #expect(first.filesRead == files && first.filesReused == 0)

            let second = try importTree(repo, "data", source)
            #expect(second.version.number == 2 && second.version.parent == 1)
            #expect(second.filesReused == files && second.filesRead == 0)
            #expect(second.version.rootHash == first.version.rootHash)
            #expect(second.version.newBytes == 0)

            let third = try importTree(repo, "data", source, rehash: true)
            #expect(third.filesRead == files && third.filesReused == 0)
            #expect(third.version.rootHash == first.version.rootHash)

            // Same size, same mtime, different bytes: ctime changed, so the file is re-read.
            let before = try lstatPath(bytes(source + "/notes.txt"))
            var content = try readWhole(source + "/notes.txt")
            content[5] ^= 0xFF
            try writeFile(source + "/notes.txt", content, mode: 0o600)
            try setMtime(source + "/notes.txt", seconds: before.st_mtim.tv_sec, nanoseconds: before.st_mtim.tv_nsec)
            let fourth = try importTree(repo, "data", source)
            #expect(fourth.filesRead == 1 && fourth.filesReused == files - 1)
            #expect(fourth.version.rootHash != first.version.rootHash)
            let expected = try snapshot(source)
            try export(repo, "data", 4, to: dir + "/out4")
            #expect(differences(expected, try snapshot(dir + "/out4")) == [])
            // The older version still has the old bytes.
            try export(repo, "data", 1, to: dir + "/out1")
            #expect(try readWhole(dir + "/out1/notes.txt") != content)
        }
    }

    @Test("the Merkle root matches for identical trees in different assets, follows Format.md, and changes with one byte")
    func merkleRoot() throws {
        try withRepository("merkle") { repo, dir in
            for name in ["a", "b"] {
                try makeDir(dir + "/" + name)
                try buildVariedTree(dir + "/" + name, seed: 70)
            }
            let a = try importTree(repo, "asset-a", dir + "/a")
            let b = try importTree(repo, "asset-b", dir + "/b")
            #expect(a.version.rootHash == b.version.rootHash)
            #expect(try documentedTreeHash(repo.catalog, a.version.rootTreeID) == a.version.rootHash)

            // One byte changed, everything else (size, mtime, mode) identical.
            let path = dir + "/b/sub/data.csv"
            let st = try lstatPath(bytes(path))
            var content = try readWhole(path)
            content[content.count / 2] ^= 0x01
            try writeFile(path, content, mode: 0o640)
            try setMtime(path, seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
            try setMtime(dir + "/b/sub", seconds: 1_700_000_000 + 12 * 3_600, nanoseconds: 123_456_789 + 12)
            let changed = try importTree(repo, "asset-b", dir + "/b")
            #expect(changed.version.rootHash != a.version.rootHash)
            #expect(try documentedTreeHash(repo.catalog, changed.version.rootTreeID) == changed.version.rootHash)

            // Only the mtime of one file changed: the root changes too (attributes are part of the hash).
            try setMtime(dir + "/a/run.sh", seconds: 1_600_000_000, nanoseconds: 1)
            let touched = try importTree(repo, "asset-a", dir + "/a")
            #expect(touched.version.rootHash != a.version.rootHash)
        }
    }

    @Test("a pre-1970 mtime with a fractional second round-trips")
    func pre1970Mtime() throws {
        try withRepository("epoch") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/old.txt", Array("old".utf8))
            try setMtime(dir + "/src/old.txt", seconds: -2, nanoseconds: 250_000_000)  // 1969-12-31T23:59:58.25Z
            try writeFile(dir + "/src/older.txt", Array("older".utf8))
            try setMtime(dir + "/src/older.txt", seconds: -86_400, nanoseconds: 0)
            let expected = try snapshot(dir + "/src")
            #expect(expected[bytes("old.txt")]?.mtimeNs == -1_750_000_000)
            try importTree(repo, "old", dir + "/src")
            #expect(throws: Never.self) { try export(repo, "old", 1, to: dir + "/out") }
            #expect(differences(expected, (try? snapshot(dir + "/out")) ?? [:]) == [])
        }
    }

    @Test("export refuses a non-empty destination and never follows a symlink planted there")
    func exportSafety() throws {
        try withRepository("safety") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/x.txt", Array("from the store".utf8))
            try importTree(repo, "s", dir + "/src")

            try makeDir(dir + "/busy")
            try writeFile(dir + "/busy/keep", Array("mine".utf8))
            #expect(throws: RepositoryError.self) { try export(repo, "s", 1, to: dir + "/busy") }
            #expect(try readWhole(dir + "/busy/keep") == Array("mine".utf8))

            try writeFile(dir + "/victim", Array("do not touch".utf8))
            try makeDir(dir + "/trap")
            try makeSymlink(dir + "/victim", at: bytes(dir + "/trap/x.txt"))
            #expect(throws: RepositoryError.self) { try export(repo, "s", 1, to: dir + "/trap", path: ["x.txt"]) }
            #expect(try readWhole(dir + "/victim") == Array("do not touch".utf8))

            // A single file by path into an empty directory works.
            try export(repo, "s", 1, to: dir + "/single", path: ["x.txt"])
            #expect(try readWhole(dir + "/single/x.txt") == Array("from the store".utf8))
            #expect(throws: RepositoryError.self) { try export(repo, "s", 1, to: dir + "/nope", path: ["missing"]) }
        }
    }

    @Test("store creation and opening refuse what is not a store")
    func createAndOpen() throws {
        try withTemporaryDirectory("create") { dir in
            try makeDir(dir + "/foreign")
            try writeFile(dir + "/foreign/thesis.tex", Array("precious".utf8))
            let foreign = #expect(throws: RepositoryError.self) { _ = try Repository.create(at: dir + "/foreign") }
            #expect(foreign?.kind == .conflict)
            #expect(try rawNamesAt(dir + "/foreign") == [bytes("thesis.tex")])

            _ = try Repository.create(at: dir + "/nested/new/store")
            #expect(throws: RepositoryError.self) { _ = try Repository.create(at: dir + "/nested/new/store") }
            let reopened = try Repository.open(at: dir + "/nested/new/store")
            #expect(reopened.config.chunker == .default)

            let missing = #expect(throws: RepositoryError.self) { _ = try Repository.open(at: dir + "/absent") }
            #expect(missing?.kind == .notFound)
            #expect(missing?.message.contains(dir + "/absent") == true)

            try writeFile(dir + "/file", [])
            #expect(throws: RepositoryError.self) { _ = try Repository.create(at: dir + "/file") }
            #expect(throws: RepositoryError.self) {
                _ = try Repository.create(at: dir + "/bad", chunker: ChunkerParameters(minSize: 10, averageSize: 100, maxSize: 1000))
            }
        }
    }

    @Test("store files are private to their owner (0700 directories, 0600 files)")
    func storeIsPrivate() throws {
        try withRepository("private") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/a.bin", randomBytes(200_000, seed: 3))
            try importTree(repo, "p", dir + "/src")
            _ = try GarbageCollector(repo: repo).run()
            var checked = 0
            func visit(_ path: String) throws {
                let st = try lstatPath(bytes(path))
                #expect(st.st_mode & 0o077 == 0, "\(path) has mode \(String(st.st_mode & 0o7777, radix: 8))")
                checked += 1
                if st.st_mode & S_IFMT == S_IFDIR {
                    for name in try rawNamesAt(path) { try visit(path + "/" + String(decoding: name, as: UTF8.self)) }
                }
            }
            try visit(repo.root)
            #expect(checked >= 6)
        }
    }

    @Test("import refuses bad names and a missing source")
    func importUsageErrors() throws {
        try withRepository("usage") { repo, dir in
            try makeDir(dir + "/src")
            for name in ["a/b", "..", "", String(repeating: "x", count: 10_000)] {
                let error = #expect(throws: RepositoryError.self) { try importTree(repo, name, dir + "/src") }
                #expect(error?.kind == .usage)
            }
            for tag in ["latest", "v3", "workspaces"] {
                #expect(throws: RepositoryError.self) { try importTree(repo, "ok", dir + "/src", tag: tag) }
            }
            let missing = #expect(throws: RepositoryError.self) { try importTree(repo, "ok", dir + "/does-not-exist") }
            #expect(missing?.message.contains("does-not-exist") == true)
            #expect(try repo.catalog.assets().isEmpty)
        }
    }

    @Test("two imports into the same asset at once both succeed with distinct numbers")
    func concurrentImports() throws {
        try withRepository("parallel") { repo, dir in
            for i in 0..<2 {
                try makeDir(dir + "/src\(i)")
                try writeFile(dir + "/src\(i)/data.bin", randomBytes(2_500_000, seed: 500 + UInt64(i)))
                try writeFile(dir + "/src\(i)/shared.bin", randomBytes(1_000_000, seed: 600))
            }
            let outcomes = Locked<[Int: Result<Int, RepositoryTestError>]>([:])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                do {
                    let result = try importTree(repo, "data", dir + "/src\(i)")
                    outcomes.withLock { $0[i] = .success(result.version.number) }
                } catch {
                    outcomes.withLock { $0[i] = .failure(RepositoryTestError(description: "\(error)")) }
                }
            }
            let results = outcomes.withLock { $0 }
            let numbers = try (0..<2).map { try #require(results[$0]).get() }
            #expect(Set(numbers) == [1, 2])
            for i in 0..<2 {
                let expected = try snapshot(dir + "/src\(i)")
                try export(repo, "data", numbers[i], to: dir + "/out\(i)")
                #expect(differences(expected, try snapshot(dir + "/out\(i)")) == [])
            }
            #expect(try Verifier(repo: repo).verify(nil).ok)
        }
    }

    @Test("tags and metadata given at import are recorded")
    func importWithTagAndMeta() throws {
        try withRepository("tagmeta") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/a", [1, 2, 3])
            let meta = [MetaItem(key: "git", value: "4f2a1c"), MetaItem(key: "note", value: "a=b")]
            let result = try importTree(repo, "t", dir + "/src", tag: "prod", message: "hello", meta: meta)
            #expect(result.version.tags == ["prod"])
            #expect(result.version.meta == meta)
            #expect(try repo.catalog.resolve(Ref(asset: "t", selector: .tag("prod"))).number == result.version.number)
            #expect(try repo.catalog.audit(asset: "t").map(\.action) == ["create-version", "tag"])
        }
    }
}

struct RepositoryTestError: Error, CustomStringConvertible { let description: String }

final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

func rawNamesAt(_ path: String) throws -> [[UInt8]] {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("cannot open \(path)") }
    defer { close(fd) }
    return rawNames(fd)
}
