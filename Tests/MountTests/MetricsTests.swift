import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One sample as prometheus_client's parser read it.
private struct Sample: Decodable {
    let name: String
    let labels: [String: String]
    let value: Double
}

/// Scrapes `url` with curl and parses the answer with prometheus_client's parser (the reference parser of
/// the Prometheus text format): a format error fails the test.
private func scrape(_ url: String, scratch: String) throws -> [Sample] {
    let text = try runForOutput(["curl", "-sSf", "--max-time", "10", url])
    let input = scratch + "/scrape-\(UUID().uuidString).txt"
    try Data(text.utf8).write(to: URL(fileURLWithPath: input))
    let script = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = []
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):
            for s in family.samples:
                out.append({"name": s.name, "labels": s.labels, "value": s.value})
        print(json.dumps(out))
        """
    let parsed = try runForOutput(["python3", "-c", script, input])
    return try JSONDecoder().decode([Sample].self, from: Data(parsed.utf8))
}

private func total(_ samples: [Sample], _ name: String, _ match: [String: String] = [:]) -> Double {
    samples.filter { s in s.name == name && match.allSatisfy { s.labels[$0.key] == $0.value } }.reduce(0) { $0 + $1.value }
}

/// The local addresses on which process `pid` listens for TCP connections (from `ss -ltnp`).
private func listeningAddresses(of pid: pid_t) throws -> [String] {
    try runForOutput(["ss", "-ltnpH"]).split(separator: "\n")
        .filter { $0.contains("pid=\(pid),") }
        .compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.map(String.init) }
}

@Suite("Metrics: the Prometheus endpoint and `stats --mount`")
struct MetricsTests {
    @Test("a mount with --metrics serves the Prometheus text format on loopback; its counters move by what a known read did", arguments: StoreBackend.allCases)
    func endpoint(backend: StoreBackend) throws {
        var settings = MountFixture.Settings(label: "mount", backstop: 120)
        settings.backend = backend
        let f = try MountFixture("metrics-\(backend)", settings: settings)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        let big = try #require(data.v1.files["big.bin"])
        let port = try freePorts(1)[0]
        let pid = try f.mount(arguments: ["--metrics", "127.0.0.1:\(port)"])
        let url = "http://127.0.0.1:\(port)/metrics"

        #expect(try listeningAddresses(of: pid) == ["127.0.0.1:\(port)"], "the endpoint must listen on the address given, and only there")
        let before = try scrape(url, scratch: f.root)
        try f.io("read big.bin") { () throws in
            #expect(sameBytes(try directRead(f.path("data/v1/big.bin"), size: big.bytes.count).prefix(big.bytes.count), big.bytes))
        }
        let after = try scrape(url, scratch: f.root)
        func delta(_ name: String, _ match: [String: String] = [:]) -> Double { total(after, name, match) - total(before, name, match) }

        #expect(delta("assetfs_fuse_read_bytes_total") == Double(big.bytes.count), "bytes answered to reads")
        #expect(delta("assetfs_fuse_request_duration_seconds_count", ["operation": "read"]) >= 1)
        #expect(delta("assetfs_fuse_request_duration_seconds_count", ["operation": "open"]) == 1)
        #expect(delta("assetfs_version_file_opens_total", ["asset": "data", "version": "v1"]) == 1)
        #expect(delta("assetfs_memory_cache_misses_total") >= 1)
        // Exported from the start; one reader of one file never has its read-ahead evicted.
        #expect(after.contains { $0.name == "assetfs_memory_cache_prefetch_wasted_total" }, "prefetch_wasted_total is not exported")
        #expect(delta("assetfs_memory_cache_prefetch_wasted_total") == 0)
        // --cache-size (24 MiB by default for a local store; 256 MiB less the 32 MiB of pack segments on a shared one).
        #expect(total(after, "assetfs_memory_cache_limit_bytes") == Double((backend == .shared ? 224 : 24) << 20))
        if backend == .shared {
            #expect(delta("assetfs_object_store_requests_total", ["method": "GET", "status": "206"]) >= 1, "a cold read fetches ranges")
            #expect(delta("assetfs_object_store_received_bytes_total") >= Double(big.bytes.count) / 2, "big.bin is random: it compresses little")
            #expect(delta("assetfs_disk_cache_misses_total") >= 1)
            #expect(delta("assetfs_disk_cache_written_bytes_total") >= Double(big.bytes.count) / 2)
            #expect(total(after, "assetfs_catalog_requests_total", ["result": "ok"]) >= 1)
            #expect(total(after, "assetfs_catalog_request_duration_seconds_count") >= 1)
        } else {
            #expect(total(after, "assetfs_object_store_requests_total") == 0, "a local store has no object store")
        }
        // The endpoint exposes figures, never settings: no secret can leak through it.
        let text = try runForOutput(["curl", "-sSf", url])
        if let secret = f.shared?.environment["AWS_SECRET_ACCESS_KEY"] { #expect(!text.contains(secret)) }

        // A person's view of the same figures, at a terminal; and --json for scripts.
        let session = try runInTerminal([Paths.assetfs, "stats", "--mount", f.mnt])
        #expect(session.succeeded, "\(session)")
        #expect(session.transcript.contains("memory cache:") && session.transcript.contains("FUSE requests:")
                && session.transcript.contains("data@v1"), "\(session)")
        if backend == .shared {
            #expect(session.transcript.contains("disk cache:") && session.transcript.contains("object store:"), "\(session)")
            // `assetfs cache` lists the host's shared-store mounts with their disk-cache lookups.
            let cache = try JSONSerialization.jsonObject(with: try f.cliOK(["cache", "--json"]).stdout) as? [String: Any]
            let mounts = cache?["mounts"] as? [[String: Any]] ?? []
            #expect(mounts.contains { $0["mountpoint"] as? String == f.mnt && ($0["misses"] as? NSNumber)?.doubleValue ?? 0 >= 1 },
                    "\(String(describing: cache))")
        }
        let json = try #require(try JSONSerialization.jsonObject(with: try f.cliOK(["stats", "--mount", f.mnt, "--json"]).stdout) as? [String: Any])
        #expect((json["readBytes"] as? NSNumber)?.doubleValue ?? 0 >= Double(big.bytes.count), "\(json)")
    }

    @Test("prefetch, then a cold read from a new daemon: every chunk comes from the disk cache, no GET reaches the object store")
    func prefetchThenNoGets() throws {
        let f = try MountFixture("metrics-prefetch", settings: .sharedStore())
        defer { f.close() }
        let data = try StandardData.create(in: f)
        _ = try f.cliOK(["prefetch", "data@v2"])
        let port = try freePorts(1)[0]
        try f.mount(arguments: ["--metrics", "\(port)"])  // a bare port: loopback
        let url = "http://127.0.0.1:\(port)/metrics"
        let before = try scrape(url, scratch: f.root)  // the store's marker was read at startup
        try f.io("read v2") { () throws in
            for (rel, file) in data.v2.files {
                #expect(sameBytes(try directRead(f.path("data/v2/" + rel), size: file.bytes.count).prefix(file.bytes.count), file.bytes), "data/v2/\(rel)")
            }
        }
        let after = try scrape(url, scratch: f.root)
        let gets = total(after, "assetfs_object_store_requests_total", ["method": "GET"]) - total(before, "assetfs_object_store_requests_total", ["method": "GET"])
        #expect(gets == 0, "GETs after a prefetch")
        #expect(total(after, "assetfs_disk_cache_hits_total") >= Double(data.v2.files.count), "every file came from the disk cache")
        #expect(total(after, "assetfs_disk_cache_misses_total") == 0)
    }

    @Test("without --metrics no TCP port is opened (stats --mount still works); a bad address is a usage error; a port in use fails the mount with one line")
    func addresses() throws {
        let f = try MountFixture("metrics-addresses", settings: MountFixture.Settings(label: "mount", backstop: 90))
        defer { f.close() }
        _ = try StandardData.create(in: f)
        let pid = try f.mount()
        #expect(try listeningAddresses(of: pid).isEmpty, "a mount without --metrics listens on no TCP port")
        let stats = try f.cliOK(["stats", "--mount", f.mnt])
        #expect(stats.out.contains("memory cache:"), "\(stats)")
        try f.unmount()
        let gone = f.cli(["stats", "--mount", f.mnt])
        #expect(gone.exitCode == 1 && gone.err.contains("nothing is mounted on"), "\(gone)")

        // --metrics off: nothing counted, no socket; stats --mount says it cannot read the figures.
        try f.mount(arguments: ["--metrics", "off"])
        let off = f.cli(["stats", "--mount", f.mnt])
        #expect(off.exitCode == 1 && off.err.contains("cannot read the figures"), "\(off)")
        try f.unmount()

        let bad = f.cli(["mount", f.mnt, "--background", "--metrics", "localhost:notaport"])
        #expect(bad.exitCode == 2 && bad.err.contains("--metrics"), "\(bad)")

        // A port someone else holds.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0 && listen(holder, 1) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let busy = f.cli(["mount", f.mnt, "--foreground", "--metrics", "127.0.0.1:\(port)"], timeout: 30)
        #expect(busy.exitCode == 1 && busy.err.contains("127.0.0.1:\(port)") && busy.errLines.count == 1, "\(busy)")
        #expect(f.mountDevice == nil, "nothing may be mounted after the failure")
    }
}
