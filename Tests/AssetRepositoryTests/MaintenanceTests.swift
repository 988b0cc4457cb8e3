import AssetTestSupport
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func version(_ repo: Repository, _ asset: String, _ number: Int) throws -> VersionInfo {
    try repo.catalog.resolve(Ref(asset: asset, selector: .number(number)))
}

private func changeSet(_ changes: [Differ.Change]) -> Set<String> {
    Set(changes.map { "\($0.kind.rawValue) \($0.path)" })
}

@Suite("Diff, verify, delete and gc")
struct MaintenanceTests {
    @Test("diff reports added, removed and modified paths, and nothing else")
    func diff() throws {
        try withRepository("diff") { repo, dir in
            let src = dir + "/src"
            try makeDir(src)
            for name in ["keep.txt", "mod.txt", "gone.txt", "mode.txt"] { try writeFile(src + "/" + name, Array("\(name)\n".utf8)) }
            try makeDir(src + "/dir")
            try writeFile(src + "/dir/x.txt", Array("x".utf8))
            try makeDir(src + "/olddir")
            try writeFile(src + "/olddir/y.txt", Array("y".utf8))
            try writeFile(src + "/olddir/y2.txt", Array("y2".utf8))
            try makeSymlink("keep.txt", at: bytes(src + "/link"))
            try importTree(repo, "d", src)

            try writeFile(src + "/mod.txt", Array("modified, and longer\n".utf8))
            #expect(unlink(src + "/gone.txt") == 0)
            #expect(chmod(src + "/mode.txt", 0o600) == 0)
            try writeFile(src + "/new.txt", Array("new".utf8))
            #expect(unlink(src + "/olddir/y.txt") == 0 && unlink(src + "/olddir/y2.txt") == 0 && rmdir(src + "/olddir") == 0)
            try makeDir(src + "/newdir")
            try writeFile(src + "/newdir/z.txt", Array("z".utf8))
            #expect(unlink(src + "/link") == 0)
            try makeSymlink("mod.txt", at: bytes(src + "/link"))
            try importTree(repo, "d", src)

            let v1 = try version(repo, "d", 1), v2 = try version(repo, "d", 2)
            let changes = try Differ(catalog: repo.catalog).diff(v1, v2)
            #expect(changeSet(changes) == [
                "modified mod.txt", "modified mode.txt", "modified link", "removed gone.txt", "removed olddir/",
                "removed olddir/y.txt", "removed olddir/y2.txt", "added new.txt", "added newdir/", "added newdir/z.txt",
            ])
            #expect(changes.count == 10)
            let mod = try #require(changes.first { $0.path == "mod.txt" })
            #expect(mod.oldSize == 8 && mod.newSize == 21)
            #expect(changes.first { $0.path == "new.txt" }?.newSize == 3)
            #expect(changes.first { $0.path == "gone.txt" }?.oldSize == 9)

            // Reversed, added and removed swap; a version against itself has no changes.
            let back = try Differ(catalog: repo.catalog).diff(v2, v1)
            #expect(changeSet(back) == [
                "modified mod.txt", "modified mode.txt", "modified link", "added gone.txt", "added olddir/",
                "added olddir/y.txt", "added olddir/y2.txt", "removed new.txt", "removed newdir/", "removed newdir/z.txt",
            ])
            #expect(try Differ(catalog: repo.catalog).diff(v2, v2).isEmpty)
        }
    }

    @Test("diff does not hide a change to an empty directory")
    func diffSeesEmptyDirectory() throws {
        try withRepository("diffdir") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/a.txt", Array("a".utf8))
            try importTree(repo, "d", dir + "/src")
            try makeDir(dir + "/src/empty-new-dir")
            try importTree(repo, "d", dir + "/src")
            let v1 = try version(repo, "d", 1), v2 = try version(repo, "d", 2)
            #expect(v1.rootHash != v2.rootHash)
            let changes = try Differ(catalog: repo.catalog).diff(v1, v2)
            #expect(changes.contains { $0.path.hasPrefix("empty-new-dir") && $0.kind == .added },
                    "the versions differ (different roots) but diff reports \(changes.count) changes")
        }
    }

    @Test("delete + gc reclaims pack space; the remaining versions still export byte for byte and verify")
    func deleteAndGC() throws {
        try withRepository("gc") { repo, dir in
            // v1 = {a 12 MB, b 4 MB}; v2 = {b, c 2 MB}; v3 = {c, d 1 MB}
            let a = randomBytes(12_000_000, seed: 1), b = randomBytes(4_000_000, seed: 2)
            let c = randomBytes(2_000_000, seed: 3), d = randomBytes(1_000_000, seed: 4)
            let layouts: [[(String, [UInt8])]] = [[("a.bin", a), ("b.bin", b)], [("b.bin", b), ("c.bin", c)], [("c.bin", c), ("d.bin", d)]]
            var expected: [[[UInt8]: Node]] = []
            for (i, files) in layouts.enumerated() {
                let src = dir + "/src\(i + 1)"
                try makeDir(src)
                for (name, content) in files { try writeFile(src + "/" + name, content) }
                expected.append(try snapshot(src))
                #expect(try importTree(repo, "data", src).version.number == i + 1)
            }
            let before = try repo.catalog.statistics()
            let diskBefore = packFiles(repo).reduce(0) { $0 + $1.size }
            #expect(UInt64(diskBefore) == before.packBytes)

            // Nothing deleted: gc changes nothing.
            let idle = try GarbageCollector(repo: repo).run()
            #expect(idle.packsDeleted == 0 && idle.packsRewritten == 0 && idle.chunkRowsRemoved == 0)
            #expect(idle.bytesAfter == idle.bytesBefore)

            try repo.catalog.deleteVersion(asset: "data", number: 1, user: "tester")
            let first = try GarbageCollector(repo: repo).run()
            #expect(first.chunkRowsRemoved > 0)
            #expect(first.bytesAfter + 11_000_000 < first.bytesBefore, "gc reclaimed only \(first.bytesBefore - first.bytesAfter) bytes")
            let diskAfter = packFiles(repo)
            #expect(diskAfter.reduce(0) { $0 + $1.size } == Int64(first.bytesAfter))
            let afterStats = try repo.catalog.statistics()
            #expect(afterStats.packBytes == first.bytesAfter)
            #expect(afterStats.versions == 2)
            // Every pack on disk is known to the catalog and vice versa.
            #expect(Set(diskAfter.map { $0.path }) == Set(try repo.catalog.packs().map { repo.storage.describe($0.id) }))

            for n in [2, 3] {
                try export(repo, "data", n, to: dir + "/out\(n)-a")
                #expect(differences(expected[n - 1], try snapshot(dir + "/out\(n)-a")) == [])
            }
            #expect(throws: (any Error).self) { try export(repo, "data", 1, to: dir + "/out1") }
            #expect(try Verifier(repo: repo).verify(nil).ok)

            // Delete v2 too: b is no longer needed, c still is.
            try repo.catalog.deleteVersion(asset: "data", number: 2, user: "tester")
            let second = try GarbageCollector(repo: repo).run()
            #expect(second.bytesAfter + 3_900_000 < second.bytesBefore)
            try export(repo, "data", 3, to: dir + "/out3-b")
            #expect(differences(expected[2], try snapshot(dir + "/out3-b")) == [])
            let report = try Verifier(repo: repo).verify(nil)
            #expect(report.ok)
            #expect(report.bytesChecked == UInt64(c.count + d.count))
        }
    }

    @Test("a tagged version cannot be deleted, and gc keeps it")
    func taggedVersionIsKept() throws {
        try withRepository("tagged") { repo, dir in
            try makeDir(dir + "/src")
            let content = randomBytes(700_000, seed: 31)
            try writeFile(dir + "/src/f", content)
            try importTree(repo, "t", dir + "/src", tag: "prod")
            try writeFile(dir + "/src/f", randomBytes(700_000, seed: 32))
            try importTree(repo, "t", dir + "/src")
            #expect(throws: CatalogError.self) { try repo.catalog.deleteVersion(asset: "t", number: 1, user: "x") }
            _ = try GarbageCollector(repo: repo).run()
            try export(repo, "t", 1, to: dir + "/out")
            #expect(try readWhole(dir + "/out/f") == content)
        }
    }

    @Test("gc succeeds on a store whose packs hold only small files, and keeps them")
    func gcWithSmallFiles() throws {
        try withRepository("smallgc") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/flag", [1])
            try writeFile(dir + "/src/config.json", Array("{\"lr\": 0.1}\n".utf8))
            try importTree(repo, "tiny", dir + "/src")
            let expected = try snapshot(dir + "/src")
            let packsBefore = packFiles(repo)
            #expect(throws: Never.self, "gc failed on a store where nothing was deleted") { _ = try GarbageCollector(repo: repo).run() }
            #expect(packFiles(repo).reduce(0) { $0 + $1.size } <= packsBefore.reduce(0) { $0 + $1.size })
            try export(repo, "tiny", 1, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])
            #expect(try Verifier(repo: repo).verify(nil).ok)
        }
    }

    @Test("gc removes orphan packs and staging files of a crashed import")
    func gcRemovesOrphans() throws {
        try withRepository("orphans") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/f", randomBytes(300_000, seed: 5))
            try importTree(repo, "o", dir + "/src")
            // An import that died after sealing a pack but before recording it, and one that died while staging.
            let writer = PackWriter(storage: repo.storage)
            let chunk = randomBytes(50_000, seed: 6)
            try writer.append(chunk.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of($0), compressor: ZstdCompressor()) })
            let orphan = try writer.seal()
            try writeFile(repo.root + "/tmp/pack-crashed", randomBytes(1000, seed: 7))
            #expect(packFiles(repo).count == 2)

            let result = try GarbageCollector(repo: repo).run()
            #expect(result.orphanPacksDeleted == 1)
            #expect(result.stagingFilesRemoved == 1)
            #expect(try repo.storage.size(of: orphan.pack) == nil)
            #expect(packFiles(repo).count == 1)
            #expect(try Verifier(repo: repo).verify(nil).ok)
        }
    }

    @Test("verify detects a byte flipped inside a pack file and names the affected versions and paths")
    func verifyDetectsDamage() throws {
        try withRepository("verify") { repo, dir in
            try makeDir(dir + "/src")
            try makeDir(dir + "/src/shards")
            try writeFile(dir + "/src/shards/big.bin", randomBytes(6_000_000, seed: 11))
            try writeFile(dir + "/src/small.txt", Array("small\n".utf8))
            try importTree(repo, "data", dir + "/src")
            try importTree(repo, "data", dir + "/src", rehash: true)  // v2 shares every chunk
            try makeDir(dir + "/other")
            try writeFile(dir + "/other/unrelated.bin", randomBytes(500_000, seed: 12))
            try importTree(repo, "other", dir + "/other")

            let clean = try Verifier(repo: repo).verify(nil)
            #expect(clean.ok && clean.damagedChunks.isEmpty && clean.affected.isEmpty)
            #expect(clean.filesChecked == 3)

            // Find the packs on disk and damage the largest one in the middle.
            let packs = packFiles(repo).sorted { $0.size > $1.size }
            #expect(packs.count == 2)
            let target = try #require(packs.first)
            try flipByte(in: target.path, at: UInt64(target.size / 2))

            let report = try Verifier(repo: repo).verify(nil)
            #expect(!report.ok)
            #expect(report.damagedChunks.count == 1)
            #expect(report.damagedChunks.first?.pack == target.path)
            let affected = Set(report.affected.map { "\($0.version):\($0.path)" })
            #expect(affected == ["data@v1:shards/big.bin", "data@v2:shards/big.bin"])

            // Verifying one version names only it; the undamaged asset verifies clean.
            let one = try Verifier(repo: repo).verify(Ref(asset: "data", selector: .number(2)))
            #expect(!one.ok && Set(one.affected.map(\.version)) == ["data@v2"])
            #expect(try Verifier(repo: repo).verify(Ref(asset: "other", selector: .latest)).ok)

            // Reading the damaged file fails rather than returning wrong bytes; the intact file still exports.
            #expect(throws: (any Error).self) { try export(repo, "data", 1, to: dir + "/out") }
            try export(repo, "data", 1, to: dir + "/small", path: ["small.txt"])
            #expect(try readWhole(dir + "/small/small.txt") == Array("small\n".utf8))
        }
    }

    @Test("verify notices a missing pack")
    func verifyMissingPack() throws {
        try withRepository("missing") { repo, dir in
            try makeDir(dir + "/src")
            try writeFile(dir + "/src/f.bin", randomBytes(400_000, seed: 21))
            try importTree(repo, "m", dir + "/src")
            let pack = try #require(packFiles(repo).first)
            #expect(unlink(pack.path) == 0)
            let report = try Verifier(repo: repo).verify(nil)
            #expect(!report.ok)
            #expect(report.affected.map(\.path) == ["f.bin"])
        }
    }
}
