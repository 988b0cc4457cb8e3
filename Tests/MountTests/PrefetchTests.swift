import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func prefetchJSON(_ f: MountFixture, _ ref: String) throws -> [String: Any] {
    let r = try f.cliOK(["prefetch", ref, "--json"])
    guard let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
        throw TestFailure("prefetch --json printed no object: \(r)")
    }
    return object
}

@Suite("Prefetch and the disk cache of a shared store")
struct PrefetchTests {
    @Test("prefetch fills the disk cache: a fresh mount reads the whole version with the object store hung; a second prefetch fetches nothing; cache clear empties it")
    func prefetchThenReadOffline() throws {
        let f = try MountFixture("prefetch", settings: .sharedStore(dedicatedServers: true))
        defer { f.close() }
        let data = try StandardData.create(in: f)

        let first = try prefetchJSON(f, "data@v2")
        let chunks = try #require(first["chunks"] as? Int)
        #expect(chunks > 0 && first["chunksFetched"] as? Int == chunks && first["bytesCached"] as? Int == 0, "\(first)")
        #expect(first["files"] as? Int == data.v2.files.count, "\(first)")
        let again = try prefetchJSON(f, "data@v2")
        #expect(again["chunksFetched"] as? Int == 0 && again["chunksCached"] as? Int == chunks, "a second prefetch fetched again: \(again)")
        let shown = try JSONSerialization.jsonObject(with: try f.cliOK(["cache", "--json"]).stdout) as? [String: Any]
        #expect(shown?["chunks"] as? Int == chunks, "\(String(describing: shown))")

        // Nothing can come from the object store now: every byte must come from the disk cache.
        try f.mount()
        let servers = try #require(f.shared).servers
        try servers.s3.pause()
        defer { servers.s3.resume() }
        try f.io("read v2 with S3 hung", seconds: 60) { () throws in
            for (rel, file) in data.v2.files {
                #expect(sameBytes(try directRead(f.path("data/v2/" + rel), size: file.bytes.count), file.bytes), "data/v2/\(rel)")
            }
        }
        servers.s3.resume()

        let cleared = try f.cliOK(["cache", "clear"])
        #expect(cleared.out.contains("cleared \(chunks) chunks"), "\(cleared)")
        let empty = try JSONSerialization.jsonObject(with: try f.cliOK(["cache", "--json"]).stdout) as? [String: Any]
        #expect(empty?["chunks"] as? Int == 0, "\(String(describing: empty))")
        try f.io("read after cache clear") { () throws in
            let big = try #require(data.v2.files["big.bin"])
            #expect(sameBytes(try directRead(f.path("data/v2/big.bin"), size: big.bytes.count), big.bytes))
        }
    }

    @Test("a prefetch killed halfway leaves a cache that serves what it has; the next prefetch fetches only the rest; at a terminal it draws progress")
    func killedPrefetch() throws {
        let f = try MountFixture("prefetch-killed", settings: .sharedStore())
        defer { f.close() }
        for i in 0..<6 { try writeSourceFile(f.src, "part\(i).bin", randomBytes(8_000_000, seed: UInt64(90 + i)), mtime: 1_700_000_000) }
        try f.importVersion()
        let cache = try #require(f.shared?.environment["ASSETFS_DISK_CACHE"])

        let child = try f.start([Paths.assetfs, "prefetch", "data@v1", "--jobs", "1"])
        _ = poll(seconds: 30) { regularFiles(under: cache).count(where: { !$0.contains("/tmp-") }) >= 3 }
        child.signal(SIGKILL)
        _ = child.wait(timeout: 10)
        let kept = regularFiles(under: cache).count(where: { !$0.contains("/tmp-") })

        try f.mount()
        try f.io("read everything after the killed prefetch") { () throws in
            for i in 0..<6 {
                #expect(sameBytes(try directRead(f.path("data/v1/part\(i).bin"), size: 8_000_000), randomBytes(8_000_000, seed: UInt64(90 + i))))
            }
        }
        try f.unmount()
        let rest = try prefetchJSON(f, "data@v1")
        #expect((rest["chunksCached"] as? Int ?? 0) >= kept, "the entries the killed prefetch left were not used: \(rest), \(kept) kept")
        #expect(rest["chunksFetched"] as? Int == 0, "the mount's reads filled the cache, so nothing is left to fetch: \(rest)")

        // At a terminal: a progress line, then the summary.
        _ = try f.cliOK(["cache", "clear"])
        let session = try runInTerminal([Paths.assetfs, "prefetch", "data@v1"],
                                        environment: f.shared!.environment.merging(["ASSETFS_STORE": f.store]) { $1 })
        #expect(session.succeeded, "\(session)")
        #expect(session.transcript.contains("prefetching") && session.transcript.contains("prefetched data@v1: 6 files"), "\(session)")
    }

    @Test("two stores share one disk cache: `cache` shows each store's chunks, `cache clear --store` deletes one store's only, and a mount of the other still reads with S3 hung")
    func perStoreShare() throws {
        let f = try MountFixture("cache-per-store", settings: .sharedStore(dedicatedServers: true))
        defer { f.close() }
        let shared = try #require(f.shared)
        for i in 0..<3 { try writeSourceFile(f.src, "a\(i).bin", randomBytes(3_000_000, seed: UInt64(300 + i)), mtime: 1_700_000_000) }
        try f.importVersion()
        let first = try prefetchJSON(f, "data@v1")
        let firstChunks = try #require(first["chunks"] as? Int)

        // A second store on the same servers, used from the same host (same disk cache).
        let name = shared.servers.uniqueName()
        let other = "s3://\(shared.servers.s3.bucket)/\(name)"
        let otherCatalog = try shared.servers.newDatabase(name)
        let otherSrc = f.scratch + "/other-src"
        for i in 0..<2 { try writeSourceFile(otherSrc, "b\(i).bin", randomBytes(2_000_000, seed: UInt64(400 + i)), mtime: 1_700_000_000) }
        _ = try f.cliOK(["init", "--store", other, "--catalog", otherCatalog])
        _ = try f.cliOK(["import", "other", otherSrc, "-m", "other", "--store", other])
        let second = try JSONSerialization.jsonObject(with: try f.cliOK(["prefetch", "other@v1", "--json", "--store", other]).stdout) as? [String: Any]
        let secondChunks = try #require(second?["chunks"] as? Int)

        func shown(_ extra: [String]) throws -> (total: Int, stores: [String: Int]) {
            let object = try JSONSerialization.jsonObject(with: try f.cliOK(["cache", "--json"] + extra).stdout) as? [String: Any]
            let stores = (object?["stores"] as? [[String: Any]] ?? []).reduce(into: [String: Int]()) {
                $0[$1["store"] as? String ?? "?"] = $1["chunks"] as? Int
            }
            return (object?["chunks"] as? Int ?? -1, stores)
        }
        let both = try shown([])
        #expect(both.total == firstChunks + secondChunks && both.stores == [f.store: firstChunks], "\(both)")
        #expect(try shown(["--store", other]).stores == [other: secondChunks])
        let text = try f.cliOK(["cache", "--store", other])
        #expect(text.out.contains("store:       \(other): \(secondChunks) chunks"), "\(text)")

        let cleared = try f.cliOK(["cache", "clear", "--store", other])
        #expect(cleared.out.contains("cleared \(secondChunks) chunks") && cleared.out.contains(other), "\(cleared)")
        let after = try shown([])
        #expect(after.total == firstChunks && after.stores == [f.store: firstChunks], "\(after)")

        // The first store's chunks are all still there: its version reads with the object store hung.
        try f.mount()
        try shared.servers.s3.pause()
        defer { shared.servers.s3.resume() }
        try f.io("read v1 with S3 hung", seconds: 60) { () throws in
            for i in 0..<3 {
                #expect(sameBytes(try directRead(f.path("data/v1/a\(i).bin"), size: 3_000_000), randomBytes(3_000_000, seed: UInt64(300 + i))))
            }
        }
        shared.servers.s3.resume()
        let all = try f.cliOK(["cache", "clear", "--all"])
        #expect(all.out.contains("cleared \(firstChunks) chunks"), "\(all)")
        #expect(try shown([]).total == 0)
    }

    @Test("prefetch on a local store is a usage error that says why")
    func localStore() throws {
        let f = try MountFixture("prefetch-local")
        defer { f.close() }
        try writeSourceFile(f.src, "a.txt", Array("a\n".utf8), mtime: 1_700_000_000)
        try f.importVersion()
        let r = f.cli(["prefetch", "data"])
        #expect(r.exitCode == 2 && r.errLines.count == 1 && r.err.contains("local store"), "\(r)")
    }
}
