import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `Tests/Fixtures/`: a store written by the session-7 build (format 1), with the sha256sum listings of its two
/// versions taken from the source trees when it was made.
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// "HASH  ./path" lines -> path: hash.
private func sums(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2 else { continue }
        out[String(parts[1].trimmingCharacters(in: .whitespaces).dropFirst(2))] = String(parts[0])
    }
    return out
}

/// path: sha256 of every regular file under `root`.
private func hashes(under root: String) throws -> [String: String] {
    var out: [String: String] = [:]
    let walker = FileManager.default.enumerator(atPath: root)
    while let rel = walker?.nextObject() as? String {
        var st = stat()
        guard lstat(root + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
        out[rel] = ContentHash.of(try readAll(root + "/" + rel)).hex
    }
    return out
}

@Suite("Store formats")
struct StoreFormatTests {
    @Test("a store written in format 1 by an older build reads, verifies, takes new versions in format 1 and stays format 1")
    func formatOneStoreStaysReadableAndWritable() throws {
        try withTemporaryDirectory("format1") { dir in
            let store = dir + "/store"
            try FileManager.default.copyItem(atPath: fixtures + "/store-format1", toPath: store)
            // git keeps no empty directories: a store always has its scratch directory.
            try? FileManager.default.createDirectory(atPath: store + "/tmp", withIntermediateDirectories: true)
            #expect(try localStoreFormat(store) == 1)
            let expected = [
                1: sums(try String(contentsOfFile: fixtures + "/store-format1-v1.sha256", encoding: .utf8)),
                2: sums(try String(contentsOfFile: fixtures + "/store-format1-v2.sha256", encoding: .utf8)),
            ]
            #expect(expected[1]?.count == 3 && expected[2]?.count == 3 && expected[1] != expected[2])

            try assetfsOK(["verify"], store: store)
            let stats = try json(try assetfsOK(["stats", "--json"], store: store)) as? [String: Any]
            #expect(stats?["format"] as? Int == 1, "\(String(describing: stats))")
            #expect(try assetfsOK(["stats"], store: store).stdout.contains("format:          1 (chunk ids hash the chunk's bytes)"))
            for (ref, version) in [("data@v1", 1), ("data@gold", 1), ("data@v2", 2), ("data", 2)] {
                let out = dir + "/export-\(ref.replacingOccurrences(of: "@", with: "-"))"
                try assetfsOK(["export", ref, out], store: store)
                #expect(try hashes(under: out) == expected[version], "\(ref)")
                var target = [CChar](repeating: 0, count: 256)
                let n = readlink(out + "/link.csv", &target, 255)
                #expect(n == 9 && String(cString: Array(target[0..<9]) + [0]) == "table.csv", "\(ref): link.csv")
            }
            let cat = try assetfsOK(["cat", "data@v1:random.bin"], store: store)
            #expect(ContentHash.of(Array(cat.stdoutData)).hex == expected[1]?["random.bin"])

            // A third version with new bytes: written with format-1 chunk ids (verify proves every chunk against
            // its id as format 1 defines it, so chunks named the format-2 way would be reported damaged).
            let src = dir + "/export-data-v2"
            let before = try json(try assetfsOK(["stats", "--json"], store: store)) as? [String: Any]
            let packBytesBefore = try #require(before?["storedBytes"] as? Int)
            let added = randomBytes(300_000, seed: 77)
            try writeFile(src + "/added.bin", added)
            let table = try readAll(src + "/table.csv")
            try writeFile(src + "/table.csv", table + Array("9000,item00001,0.1234,cat\n".utf8))
            let imported = try assetfsOK(["import", "data", src, "-m", "format 1, third (newer build)"], store: store)
            #expect(imported.stdout.contains("data v3"), "\(imported.stdout)")
            #expect(try localStoreFormat(store) == 1, "a format-1 store must stay format 1")
            try assetfsOK(["verify"], store: store)
            let third = try hashes(under: src)
            let out3 = dir + "/export-v3"
            try assetfsOK(["export", "data@v3", out3], store: store)
            #expect(try hashes(under: out3) == third)
            #expect(third["added.bin"] == ContentHash.of(added).hex)
            let v1Files = try hashes(under: dir + "/export-data-v1")
            #expect(v1Files["random.bin"] == third["random.bin"])
            // Unchanged files share their chunks with v2 (format-1 ids still deduplicate against the old chunks):
            // the packs grew by about the new bytes (300 KB of random data, a changed tail of the CSV), not by
            // another copy of random.bin and table.csv as well.
            let after = try json(try assetfsOK(["stats", "--json"], store: store)) as? [String: Any]
            let stored = try #require(after?["storedBytes"] as? Int)
            #expect(stored - packBytesBefore < 300_000 + 150_000, "the third version added \(stored - packBytesBefore) bytes of packs")
        }
    }

    @Test("a new store is created in format 2, whose chunk ids are made from block hashes; verify, export and gc hold")
    func newStoresAreFormatTwo() throws {
        try withTemporaryDirectory("format2") { dir in
            let store = try initStore(dir)
            #expect(try localStoreFormat(store) == 2)
            let stats = try json(try assetfsOK(["stats", "--json"], store: store)) as? [String: Any]
            #expect(stats?["format"] as? Int == 2, "\(String(describing: stats))")
            let src = dir + "/src"
            let random = randomBytes(1_500_000, seed: 78)
            try writeFile(src + "/random.bin", random)
            try writeFile(src + "/text.csv", Array(String(repeating: "1,two,3.0,four\n", count: 40_000).utf8))
            try assetfsOK(["import", "data", src, "-m", "one"], store: store)
            try assetfsOK(["verify"], store: store)
            try assetfsOK(["export", "data@v1", dir + "/out"], store: store)
            #expect(try hashes(under: dir + "/out") == hashes(under: src))
            let cat = try assetfsOK(["cat", "data@v1:random.bin"], store: store)
            #expect(Array(cat.stdoutData) == random)

            // Damage one payload byte of the random file in its pack: verify names the damage and cat refuses.
            for pack in try packFiles(store) {
                guard var bytes = FileManager.default.contents(atPath: pack.path),
                      let found = bytes.range(of: Data(random[700_000..<700_064])) else { continue }
                bytes[found.lowerBound + 10] ^= 0x01
                try bytes.write(to: URL(fileURLWithPath: pack.path))
            }
            let verify = try assetfs(["verify"], store: store)
            #expect(verify.status == 1 && (verify.stdout.contains("random.bin") || verify.stderr.contains("random.bin")),
                    "\(verify.describe(["verify"]))")
            let damaged = try assetfs(["cat", "data@v1:random.bin"], store: store)
            #expect(damaged.status == 1, "\(damaged.describe(["cat"]))")
            #expect(damaged.stdoutData.count < random.count, "cat wrote the whole file although a chunk is damaged")
        }
    }

    @Test("a store of a format this build does not know is refused with the format named")
    func unknownFormatRefused() throws {
        try withTemporaryDirectory("format9") { dir in
            let store = try initStore(dir)
            let path = store + "/assetfs-store.json"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            try text.replacingOccurrences(of: "\"version\" : 2", with: "\"version\" : 9").write(toFile: path, atomically: true, encoding: .utf8)
            let r = try assetfs(["versions", "data"], store: store)
            #expect(r.status == 1 && r.stderr.contains("v9") && r.stderr.contains("v1 to v2"), "\(r.describe(["versions", "data"]))")
        }
    }
}
