import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A shared store whose servers this test alone uses, so it may stop and pause them.
private func faultFixture(_ name: String) throws -> MountFixture {
    try MountFixture(name, settings: .sharedStore(backstop: 150, dedicatedServers: true))
}

@Suite("Shared store faults: the object store or the catalog down, a damaged disk cache")
struct SharedStoreFaultTests {
    @Test("PostgreSQL stopped: the mount keeps serving what it has seen, the CLI fails with one line naming the catalog; both recover when it returns")
    func catalogDown() throws {
        let f = try faultFixture("catalog-down")
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()
        try f.io("read v2 while the catalog is up") { () throws in
            #expect(Set(try listDirectory(f.path("data"))).isSuperset(of: ["v1", "v2", "latest", "first"]))
            for (rel, file) in data.v2.files {
                #expect(sameBytes(try readAll(f.path("data/v2/" + rel)), file.bytes), "data/v2/\(rel)")
            }
        }
        let servers = try #require(f.shared).servers
        servers.postgres.stop()

        try f.io("read v2 while the catalog is down", seconds: 60) { () throws in
            #expect(Set(try listDirectory(f.path("data"))).isSuperset(of: ["v1", "v2", "latest", "first"]))
            #expect(try readLink(f.path("data/latest")) == "v2")
            for (rel, file) in data.v2.files {
                #expect(sameBytes(try directRead(f.path("data/v2/" + rel), size: file.bytes.count).prefix(file.bytes.count), file.bytes),
                        "data/v2/\(rel) with the catalog down")
            }
        }
        let cli = f.cli(["versions", "data"])
        #expect(cli.exitCode == 1, "\(cli)")
        #expect(cli.errLines.count == 1 && cli.err.contains("127.0.0.1:\(servers.postgres.port)"), "one line naming the catalog: \(cli)")

        try servers.postgres.restart()
        try writeSourceFile(f.src, "after-outage.txt", Array("back\n".utf8), mtime: 1_700_002_000)
        let v3 = try f.importVersion("data", message: "after the outage")
        let appeared = try f.io("waiting for v3") {
            try poll(seconds: 10) { try listDirectory(f.path("data")).contains("v\(v3)") }
        }
        #expect(appeared != nil, "the mount did not show v\(v3) after the catalog came back")
    }

    @Test("S3 hung mid-read: a read that misses the disk cache answers EIO within --io-timeout, cached files still read, and reads recover without a remount")
    func objectStoreDown() throws {
        let f = try faultFixture("s3-down")
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount(options: [])  // the default timeout is 30 s; this test remounts with 4 s below
        try f.unmount()
        let r = f.cli(["mount", f.mnt, "--background", "--io-timeout", "4"], timeout: 45)
        #expect(r.succeeded, "\(r)")
        let big = try #require(data.v1.files["big.bin"])
        try f.io("read big.bin while S3 answers") { () throws in
            #expect(sameBytes(try directRead(f.path("data/v1/big.bin"), size: big.bytes.count).prefix(big.bytes.count), big.bytes))
        }
        // A file in a pack of its own: v1's other files may sit in the pack ranges fetched for big.bin, which the
        // mount may still hold (and may serve: they are verified like any other bytes).
        let other = randomBytes(3 << 20, seed: 0x07_4845_5221)
        try writeSourceFile(f.src, "other.bin", other, mtime: 1_700_003_000)
        let late = try f.importVersion("data", message: "a file in a new pack")
        let otherPath = f.path("data/v\(late)/other.bin")
        let servers = try #require(f.shared).servers
        try servers.s3.pause()
        defer { servers.s3.resume() }

        let started = Date()
        var failure: Int32 = 0
        f.io("read other.bin while S3 hangs", seconds: 40) {
            do {
                _ = try directRead(otherPath, size: other.count)
            } catch let error as SysError {
                failure = error.code
            } catch {}
        }
        let waited = Date().timeIntervalSince(started)
        #expect(failure == EIO, "a read that needs the hung server must fail with EIO (got errno \(failure))")
        let log = (try? String(contentsOfFile: try #require(f.shared?.environment["ASSETFS_HOST_DIR"]) + "/logs/mount.log", encoding: .utf8)) ?? ""
        #expect(log.contains("answering EIO") && log.contains("s3://"), "the mount's log names the failed read's object: \(log.suffix(2000))")
        #expect(waited < 12, "EIO came after \(waited) s; --io-timeout is 4 s")
        try f.io("cached big.bin while S3 hangs") { () throws in
            #expect(sameBytes(try directRead(f.path("data/v1/big.bin"), size: big.bytes.count).prefix(big.bytes.count), big.bytes))
        }

        servers.s3.resume()
        let recovered = try f.io("other.bin after S3 returns", seconds: 30) {
            try poll(seconds: 20) {
                (try? directRead(otherPath, size: other.count)).map { sameBytes($0.prefix(other.count), other) } ?? false
            }
        }
        #expect(recovered != nil, "reads did not recover after the server resumed")
    }

    @Test("the disk cache damaged or deleted while mounted: chunks are fetched again and verified, never served wrong")
    func damagedDiskCache() throws {
        let f = try MountFixture("disk-cache", settings: .sharedStore())
        defer { f.close() }
        let data = try StandardData.create(in: f)
        let cache = try #require(f.shared?.environment["ASSETFS_DISK_CACHE"])
        try f.mount()
        let big = try #require(data.v1.files["big.bin"])
        try f.io("first read") { () throws in
            #expect(sameBytes(try readAll(f.path("data/v1/big.bin")), big.bytes))
        }
        let entries = regularFiles(under: cache).filter { !$0.contains("/tmp-") }
        #expect(!entries.isEmpty, "the read left nothing in the disk cache \(cache)")
        // A new daemon (empty memory cache) over a disk cache whose every entry has one byte flipped.
        try f.unmount()
        var damaged: [String: [UInt8]] = [:]
        for path in entries {
            var bytes = try readAll(path)
            bytes[bytes.count / 2] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            damaged[path] = bytes
        }
        try f.mount()
        try f.io("read over a damaged cache") { () throws in
            #expect(sameBytes(try directRead(f.path("data/v1/big.bin"), size: big.bytes.count).prefix(big.bytes.count), big.bytes))
        }
        for (path, bytes) in damaged {
            let now = FileManager.default.contents(atPath: path).map { [UInt8]($0) }
            #expect(now != bytes, "the damaged cache entry \(path) is still there: it was not detected and replaced")
        }
        let verify = f.cli(["verify"])
        #expect(verify.succeeded, "the store itself is intact: \(verify)")

        // The whole cache directory removed under the running mount: reads fetch from the store.
        try FileManager.default.removeItem(atPath: cache)
        try f.io("read with the cache gone") { () throws in
            let other = try #require(data.v1.files["other.bin"])
            #expect(sameBytes(try directRead(f.path("data/v1/other.bin"), size: other.bytes.count).prefix(other.bytes.count), other.bytes))
        }
    }

    @Test("an import killed with SIGKILL mid-upload leaves no version; its pack objects wait out gc's grace period, then go")
    func killedImport() throws {
        try withTemporaryDirectory("killed-import") { dir in
            let shared = try SharedStoreHandle(directory: dir)
            defer { shared.close() }
            let initResult = try runWith([Paths.assetfs, "init", "--store", shared.url, "--catalog", shared.catalog], environment: shared.environment)
            #expect(initResult.succeeded, "\(initResult)")
            // 96 MB of incompressible data: three 32 MiB packs, uploaded one after another.
            for i in 0..<4 { try writeSourceFile(dir + "/src", "part\(i).bin", randomBytes(24_000_000, seed: UInt64(70 + i)), mtime: 1_700_000_000) }
            let child = try ChildProcess.spawn([Paths.assetfs, "import", "data", dir + "/src", "--store", shared.url], scratch: dir,
                                               environment: shared.environment)
            let uploaded = poll(seconds: 60) { ((try? SharedStoreObjects.packs(shared.url)) ?? []).count >= 1 }
            child.signal(SIGKILL)
            _ = child.wait(timeout: 10)
            #expect(uploaded != nil, "no pack was uploaded within 60 s")
            // An upload the server had received in full when the client died may still land: wait until the
            // listing holds still (what a grace period is for; this test then uses none).
            var orphans = try SharedStoreObjects.packs(shared.url)
            for _ in 0..<10 {
                usleep(1_000_000)
                let again = try SharedStoreObjects.packs(shared.url)
                if again.map(\.path).sorted() == orphans.map(\.path).sorted() { break }
                orphans = again
            }
            #expect(!orphans.isEmpty)

            let versions = try runWith([Paths.assetfs, "versions", "data", "--store", shared.url], environment: shared.environment)
            #expect(versions.exitCode == 1, "a killed import must leave no asset or version: \(versions)")
            // The default grace period (15 min on a shared store) keeps the young orphans; none is deleted.
            let keep = try runWith([Paths.assetfs, "gc", "--store", shared.url], environment: shared.environment)
            #expect(keep.succeeded && keep.out.contains("wait for their grace period"), "\(keep)")
            #expect(Set(try SharedStoreObjects.packs(shared.url).map(\.path)).isSuperset(of: orphans.map(\.path)))
            // Past the grace period (here: none), gc deletes them.
            let collect = try runWith([Paths.assetfs, "gc", "--grace-period", "0", "--store", shared.url], environment: shared.environment)
            #expect(collect.succeeded, "\(collect)")
            let left = try SharedStoreObjects.packs(shared.url)
            #expect(left.isEmpty, "orphan pack objects left after gc --grace-period 0: \(left.map(\.path)); gc said: \(collect)")
        }
    }
}

/// Runs a command to completion with `environment` added.
private func runWith(_ argv: [String], environment: [String: String]) throws -> ProcessResult {
    try ChildProcess.spawn(argv, scratch: NSTemporaryDirectory(), environment: environment).wait(timeout: 120)
}
