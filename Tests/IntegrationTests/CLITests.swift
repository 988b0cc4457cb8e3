import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Imports two versions of `data` into `store`: v1 from `dir/v1`, v2 from `dir/v2` (one file changed, one added,
/// one removed).
@discardableResult
private func addTwoVersions(_ dir: String, store: String) throws -> String {
    try makeDataset(dir + "/v1", seed: 10)
    try makeDataset(dir + "/v2", seed: 10)
    try writeFile(dir + "/v2/README.txt", Array("dataset, second edition\n".utf8))
    try writeFile(dir + "/v2/shards/0003.csv", textBytes(50_000, seed: 99))
    #expect(unlink(dir + "/v2/empty") == 0)
    #expect(try assetfsOK(["import", "data", dir + "/v1", "-m", "first", "--meta", "git=abc123"], store: store).stdout == "data v1\n")
    #expect(try assetfsOK(["import", "data", dir + "/v2", "-m", "second"], store: store).stdout == "data v2\n")
    return store
}

@Suite("assetfs CLI")
struct CLITests {
    @Test("the CLI binary exists")
    func binaryExists() {
        #expect(FileManager.default.isExecutableFile(atPath: assetfsBinary),
                "missing \(assetfsBinary): run `swift build` before the integration tests")
    }

    @Test("init creates a store and refuses a non-empty foreign directory or an existing store")
    func initRules() throws {
        try withTemporaryDirectory("init") { dir in
            try writeFile(dir + "/foreign/thesis.tex", Array("precious".utf8))
            let refused = try assetfs(["init", "--store", dir + "/foreign"], store: nil)
            #expect([1, 2].contains(refused.status) && !refused.killedBySignal, "\(refused.describe(["init"]))")
            #expect(refused.stderr.contains("not empty"), "\(refused.stderr)")
            #expect(refused.stderr.contains(dir + "/foreign"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/foreign") == ["thesis.tex"])

            let created = try assetfs(["init"], store: dir + "/new")
            #expect(created.status == 0, "\(created.describe(["init"]))")
            #expect(FileManager.default.fileExists(atPath: dir + "/new/assetfs-store.json"))
            let again = try assetfs(["init"], store: dir + "/new")
            #expect([1, 2].contains(again.status) && again.stderr.contains("already"), "\(again.describe(["init"]))")

            let badChunks = try assetfs(["init", "--store", dir + "/chunky", "--avg-chunk", "1000"], store: nil)
            #expect(badChunks.status == 2)
            #expect(!FileManager.default.fileExists(atPath: dir + "/chunky/assetfs-store.json"))
        }
    }

    @Test("import prints ASSET vN and versions --json lists the versions", arguments: StoreBackend.allCases)
    func importAndVersions(backend: StoreBackend) throws {
        try withStore(backend, "versions") { dir, store in
            try addTwoVersions(dir, store: store)
            let listed = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(listed.map { $0["version"] as? Int } == [1, 2])
            #expect(listed.map { $0["parent"] as? Int } == [nil, 1])
            #expect(listed.map { $0["files"] as? Int } == [6, 6])
            let v1Bytes = regularFiles(under: dir + "/v1").reduce(0) { $0 + ((try? readWhole($1).count) ?? 0) }
            #expect(listed[0]["logicalBytes"] as? Int == v1Bytes)
            #expect(listed.map { $0["message"] as? String } == ["first", "second"])
            #expect((listed[0]["meta"] as? [String: String]) == ["git": "abc123"])
            let roots = listed.compactMap { $0["root"] as? String }
            #expect(roots.count == 2 && roots[0] != roots[1] && roots.allSatisfy { ContentHash(hex: $0) != nil })
            #expect(listed.allSatisfy { $0["asset"] as? String == "data" })

            // The same tree again makes v3 with the same root as v2.
            #expect(try assetfsOK(["import", "data", dir + "/v2"], store: store).stdout == "data v3\n")
            let three = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(three.last?["root"] as? String == roots[1])
            let assets = try #require(try json(try assetfsOK(["assets", "--json"], store: store)) as? [[String: Any]])
            #expect(assets.count == 1 && assets[0]["latest"] as? Int == 3 && assets[0]["versions"] as? Int == 3)
        }
    }

    @Test("ls lists a version's directories and cat writes a file's exact bytes", arguments: StoreBackend.allCases)
    func lsAndCat(backend: StoreBackend) throws {
        try withStore(backend, "lscat") { dir, store in
            try addTwoVersions(dir, store: store)
            let top = try assetfsOK(["ls", "data@v1"], store: store).stdout.split(separator: "\n").map(String.init)
            #expect(Set(top) == ["README.txt", "big.bin", "empty", "first-shard -> shards/0001.csv", "shards/", "tools/"])
            let shards = try assetfsOK(["ls", "data@v2:shards"], store: store).stdout.split(separator: "\n").map(String.init)
            #expect(shards == ["0001.csv", "0002.csv", "0003.csv"])

            let all = try #require(try json(try assetfsOK(["ls", "-r", "--json", "data@v1"], store: store)) as? [[String: Any]])
            let byPath = Dictionary(uniqueKeysWithValues: all.compactMap { e in (e["path"] as? String).map { ($0, e) } })
            #expect(Set(byPath.keys) == Set(try treeSignature(dir + "/v1").keys))
            #expect(byPath["shards/0001.csv"]?["size"] as? Int == 200_000)
            #expect(byPath["shards/0001.csv"]?["mode"] as? String == "640")
            #expect(byPath["tools"]?["type"] as? String == "directory")
            #expect(byPath["first-shard"]?["target"] as? String == "shards/0001.csv")

            for (ref, file) in [("data@v1:big.bin", "/v1/big.bin"), ("data@v2:shards/0003.csv", "/v2/shards/0003.csv"),
                                ("data:README.txt", "/v2/README.txt"), ("data@v1:README.txt", "/v1/README.txt"), ("data@v1:empty", "/v1/empty")] {
                let out = try assetfsOK(["cat", ref], store: store)
                #expect([UInt8](out.stdoutData) == (try readWhole(dir + file)), "cat \(ref)")
            }
            let missing = try assetfs(["cat", "data@v1:nope.txt"], store: store)
            #expect(missing.status == 1 && missing.stderr.contains("nope.txt"), "\(missing.describe(["cat"]))")
            let noVersion = try assetfs(["cat", "data@v7:big.bin"], store: store)
            #expect(noVersion.status == 1 && noVersion.stderr.contains("v7"), "\(noVersion.describe(["cat"]))")
            let directory = try assetfs(["cat", "data@v1:shards"], store: store)
            #expect(directory.status != 0 && !directory.killedBySignal && directory.stdoutData.isEmpty)
        }
    }

    @Test("diff --json reports added, removed and modified paths", arguments: StoreBackend.allCases)
    func diffJSON(backend: StoreBackend) throws {
        try withStore(backend, "diff") { dir, store in
            try addTwoVersions(dir, store: store)
            let changes = try #require(try json(try assetfsOK(["diff", "--json", "data@v1", "data@v2"], store: store)) as? [[String: Any]])
            let summary = Set(changes.compactMap { c in (c["kind"] as? String).flatMap { k in (c["path"] as? String).map { "\(k) \($0)" } } })
            #expect(summary == ["modified README.txt", "added shards/0003.csv", "removed empty"])
            let readme = try #require(changes.first { $0["path"] as? String == "README.txt" })
            #expect(readme["oldSize"] as? Int == "dataset 10\n".utf8.count && readme["newSize"] as? Int == "dataset, second edition\n".utf8.count)
            let same = try #require(try json(try assetfsOK(["diff", "--json", "data@v2", "data@latest"], store: store)) as? [Any])
            #expect(same.isEmpty)
        }
    }

    @Test("tag and untag move a name, and log --json records every action", arguments: StoreBackend.allCases)
    func tagsAndLog(backend: StoreBackend) throws {
        try withStore(backend, "tags") { dir, store in
            try addTwoVersions(dir, store: store)
            try assetfsOK(["tag", "data", "v1", "prod"], store: store)
            let shown = try #require(try json(try assetfsOK(["show", "data@prod", "--json"], store: store)) as? [String: Any])
            #expect(shown["version"] as? Int == 1)
            #expect([UInt8](try assetfsOK(["cat", "data@prod:README.txt"], store: store).stdoutData) == (try readWhole(dir + "/v1/README.txt")))

            try assetfsOK(["tag", "data", "v2", "prod"], store: store)
            #expect((try json(try assetfsOK(["show", "data@prod", "--json"], store: store)) as? [String: Any])?["version"] as? Int == 2)
            let versions = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(versions.map { $0["tags"] as? [String] } == [[], ["prod"]])

            // A tagged version cannot be deleted.
            let refused = try assetfs(["delete", "data@v2"], store: store)
            #expect(refused.status == 1 && refused.stderr.contains("prod"), "\(refused.describe(["delete"]))")

            try assetfsOK(["untag", "data", "prod"], store: store)
            let gone = try assetfs(["show", "data@prod"], store: store)
            #expect(gone.status == 1 && gone.stderr.contains("prod"))
            let again = try assetfs(["untag", "data", "prod"], store: store)
            #expect(again.status == 1)
            let noVersion = try assetfs(["tag", "data", "v9", "prod"], store: store)
            #expect(noVersion.status == 1 && noVersion.stderr.contains("v9"))

            let log = try #require(try json(try assetfsOK(["log", "--json", "data"], store: store)) as? [[String: Any]])
            let rows = log.map { e in
                [e["action"], e["subject"], e["from"], e["to"]].map { ($0 as? String) ?? "-" }.joined(separator: " ")
            }
            #expect(rows == [
                "create-version v1 - v1",
                "create-version v2 v1 v2",
                "tag prod - v1",
                "tag prod v1 v2",
                "untag prod v2 -",
            ])
            #expect(log.allSatisfy { ($0["user"] as? String)?.isEmpty == false && $0["at"] is String })
            let everything = try #require(try json(try assetfsOK(["log", "--json"], store: store)) as? [Any])
            #expect(everything.count == rows.count)
        }
    }

    @Test("export reproduces the source: bytes, modes, ns mtimes and symlinks", arguments: StoreBackend.allCases)
    func exportMatchesSource(backend: StoreBackend) throws {
        try withStore(backend, "export") { dir, store in
            try addTwoVersions(dir, store: store)
            for n in [1, 2] {
                let out = try assetfsOK(["export", "data@v\(n)", dir + "/out\(n)"], store: store)
                #expect(out.stdout.contains("exported 6 files"))
                #expect(signatureDifferences(try treeSignature(dir + "/v\(n)"), try treeSignature(dir + "/out\(n)")) == [])
            }
            let busy = try assetfs(["export", "data@v1", dir + "/out1"], store: store)
            #expect(busy.status == 1 && busy.stderr.contains("not empty"), "\(busy.describe(["export"]))")
            try assetfsOK(["export", "data@v2:shards", dir + "/shards-only"], store: store)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/shards-only").sorted() == ["0001.csv", "0002.csv", "0003.csv"])
        }
    }

    @Test("verify exits 0 on a good store and non-zero after a byte is flipped in a pack", arguments: StoreBackend.allCases)
    func verifyDetectsFlip(backend: StoreBackend) throws {
        try withStore(backend, "verify") { dir, store in
            try addTwoVersions(dir, store: store)
            let good = try assetfsOK(["verify"], store: store)
            #expect(good.stdout.contains("no damage"))
            let goodJSON = try #require(try json(try assetfsOK(["verify", "--json"], store: store)) as? [String: Any])
            #expect((goodJSON["damagedChunks"] as? [Any])?.isEmpty == true)

            let largest = try #require(try packFiles(store).max { $0.size < $1.size })
            if backend == .shared {
                try SharedStoreObjects.flipByte(store, path: largest.path, at: largest.size / 2)
            } else {
                try flipByte(in: largest.path, at: UInt64(largest.size / 2))
            }
            let bad = try assetfs(["verify"], store: store)
            #expect(bad.status != 0 && !bad.killedBySignal, "\(bad.describe(["verify"]))")
            #expect(bad.stdout.contains("BROKEN data@v1:big.bin") && bad.stdout.contains("BROKEN data@v2:big.bin"), "\(bad.stdout)")
            #expect(bad.stdout.contains(largest.path))
            let badJSON = try assetfs(["verify", "--json"], store: store)
            #expect(badJSON.status != 0)
            let report = try #require(try json(badJSON) as? [String: Any])
            #expect((report["damagedChunks"] as? [Any])?.count == 1)

            // The damaged file is never served; an intact one still is. (A shared store's host may hold a verified
            // copy from before the damage in its disk cache, which is right to serve: this host starts without one.)
            if backend == .shared { try? FileManager.default.removeItem(atPath: dir + "/host-cache") }
            let cat = try assetfs(["cat", "data@v1:big.bin"], store: store)
            #expect(cat.status == 1)
            #expect(cat.stdoutData.count < 3_000_000)
            #expect(try assetfs(["cat", "data@v1:README.txt"], store: store).status == 0)
        }
    }

    @Test("delete + gc reclaim space and keep the other versions intact", arguments: StoreBackend.allCases)
    func deleteAndGC(backend: StoreBackend) throws {
        try withStore(backend, "gc") { dir, store in
            try writeFile(dir + "/a/big.bin", randomBytes(8_000_000, seed: 1))
            try writeFile(dir + "/a/keep.txt", Array("kept".utf8))
            try writeFile(dir + "/b/other.bin", randomBytes(3_000_000, seed: 2))
            try writeFile(dir + "/b/keep.txt", Array("kept".utf8))
            try assetfsOK(["import", "data", dir + "/a"], store: store)
            try assetfsOK(["import", "data", dir + "/b"], store: store)
            let before = try packFiles(store).reduce(0) { $0 + $1.size }

            let deleted = try assetfsOK(["delete", "data@v1"], store: store)
            #expect(deleted.stdout.contains("deleted data@v1"))
            #expect(try packFiles(store).reduce(0) { $0 + $1.size } == before, "delete alone must not touch packs")
            try assetfsOK(["gc", "--grace-period", "0"], store: store)
            let after = try packFiles(store).reduce(0) { $0 + $1.size }
            #expect(after + 7_900_000 < before, "gc reclaimed only \(before - after) bytes")

            let listed = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(listed.map { $0["version"] as? Int } == [2])
            try assetfsOK(["export", "data@v2", dir + "/out"], store: store)
            #expect(signatureDifferences(try treeSignature(dir + "/b"), try treeSignature(dir + "/out")) == [])
            try assetfsOK(["verify"], store: store)
            let gone = try assetfs(["cat", "data@v1:keep.txt"], store: store)
            #expect(gone.status == 1 && gone.stderr.contains("v1"))
            #expect(try assetfs(["delete", "data@v1"], store: store).status == 1)
            #expect(try assetfs(["delete", "data@latest"], store: store).status == 2)
        }
    }

    @Test("gc run again after delete + gc succeeds and changes nothing", arguments: StoreBackend.allCases)
    func gcTwice(backend: StoreBackend) throws {
        try withStore(backend, "gctwice") { dir, store in
            try writeFile(dir + "/a/big.bin", randomBytes(4_000_000, seed: 5))
            try writeFile(dir + "/a/keep.txt", Array("kept".utf8))
            try writeFile(dir + "/b/keep.txt", Array("kept".utf8))
            try assetfsOK(["import", "data", dir + "/a"], store: store)
            try assetfsOK(["import", "data", dir + "/b"], store: store)
            try assetfsOK(["delete", "data@v1"], store: store)
            try assetfsOK(["gc", "--grace-period", "0"], store: store)
            let packs = try packFiles(store).map(\.path).sorted()
            let again = try assetfs(["gc", "--grace-period", "0"], store: store)
            #expect(again.status == 0, "\(again.describe(["gc"]))")
            #expect(try packFiles(store).map(\.path).sorted() == packs)
            try assetfsOK(["verify"], store: store)
            #expect([UInt8](try assetfsOK(["cat", "data@v2:keep.txt"], store: store).stdoutData) == Array("kept".utf8))
        }
    }

    @Test("a missing store is a failure (exit 1) whose message names the path")
    func missingStore() throws {
        try withTemporaryDirectory("nostore") { dir in
            let path = dir + "/no/such/store"
            for args in [["versions", "data", "--store", path], ["import", "data", dir, "--store", path], ["verify", "--store", path]] {
                let result = try assetfs(args, store: nil)
                #expect(result.status == 1, "\(result.describe(args))")
                #expect(result.stderr.contains(path), "\(result.describe(args))")
            }
            let viaEnvironment = try assetfs(["assets"], store: path)
            #expect(viaEnvironment.status == 1 && viaEnvironment.stderr.contains(path))
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    @Test("two concurrent imports into the same asset both succeed with distinct versions", arguments: StoreBackend.allCases)
    func concurrentImports(backend: StoreBackend) throws {
        try withStore(backend, "concurrent") { dir, store in
            for i in 0..<2 {
                try writeFile(dir + "/src\(i)/own.bin", randomBytes(6_000_000, seed: 40 + UInt64(i)))
                try writeFile(dir + "/src\(i)/shared.bin", randomBytes(2_000_000, seed: 50))
            }
            // On a shared store the two imports run as two hosts (each its own host directory and disk cache).
            let processes = try (0..<2).map { i in
                try CLIProcess(["import", "data", dir + "/src\(i)"], store: store,
                               environment: backend == .shared ? SharedStoreHandle.hostEnvironment(dir, host: "host\(i)") : [:])
            }
            let results = processes.map { $0.wait() }
            var numbers: [Int: Int] = [:]
            for (i, r) in results.enumerated() {
                #expect(r.status == 0 && !r.killedBySignal, "\(r.describe(processes[i].args))")
                let line = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(line.hasPrefix("data v"))
                numbers[i] = Int(line.dropFirst("data v".count))
            }
            #expect(Set(numbers.values) == [1, 2])
            for (i, n) in numbers {
                try assetfsOK(["export", "data@v\(n)", dir + "/out\(i)"], store: store)
                #expect(signatureDifferences(try treeSignature(dir + "/src\(i)"), try treeSignature(dir + "/out\(i)")) == [])
            }
            try assetfsOK(["verify"], store: store)
        }
    }
}
