import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a test's store lives: a local directory, or a shared store (packs on a real SeaweedFS S3 server, the
/// catalog on a real PostgreSQL 15). Suites that hold for both take it as an argument.
public enum StoreBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case local, shared
    public var description: String { rawValue }
}

/// One SeaweedFS and one PostgreSQL for every shared-store test of this process, started by the first test that
/// needs them and stopped when the last one lets go (reference counted), so a suite does not pay 3 s of server
/// start-up per test. Each test gets its own bucket prefix and database: tests never see each other's data.
public final class SharedServers: @unchecked Sendable {
    public let s3: S3Server
    public let postgres: PostgresServer
    public let directory: String

    private static let lock = NSLock()
    nonisolated(unsafe) private static var current: SharedServers?  // Protected by `lock`.
    nonisolated(unsafe) private static var users = 0  // Protected by `lock`.
    nonisolated(unsafe) private static var names = 0  // Protected by `lock`.

    private init(address: String = "127.0.0.1", namespace: String? = nil) throws {
        var template = Array("/tmp/assetfs-servers-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
        directory = cArrayString(template)
        s3 = try S3Server(directory: directory + "/s3", address: address, namespace: namespace)
        do {
            postgres = try PostgresServer(directory: directory + "/pg", address: address, namespace: namespace)
        } catch {
            s3.stop()
            throw error
        }
    }

    public static func acquire() throws -> SharedServers {
        try lock.withLock {
            if let current {
                users += 1
                return current
            }
            let servers = try SharedServers()
            current = servers
            users = 1
            return servers
        }
    }

    /// A pair of servers for one test alone (a test that stops or pauses them must not disturb others);
    /// stop it with `stopDedicated`.
    /// `namespace`: start them in that network namespace, listening on `address` there.
    public static func dedicated(address: String = "127.0.0.1", namespace: String? = nil) throws -> SharedServers {
        try SharedServers(address: address, namespace: namespace)
    }

    public func stopDedicated() {
        s3.stop()
        postgres.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public static func release() {
        let last: SharedServers? = lock.withLock {
            users -= 1
            guard users == 0 else { return nil }
            defer { current = nil }
            return current
        }
        guard let last else { return }
        last.s3.stop()
        last.postgres.stop()
        try? FileManager.default.removeItem(atPath: last.directory)
    }

    /// A name no other test of this process uses, on any server: the counter is the process's, not the
    /// server's, because the registry of environments is keyed by store URL (a per-server counter once gave a
    /// dedicated server's store and a shared one the same URL, and a test listed the other test's objects).
    public func uniqueName() -> String {
        Self.lock.withLock {
            Self.names += 1
            return "t\(getpid())x\(Self.names)"
        }
    }

    /// A new empty database; its libpq URL.
    public func newDatabase(_ name: String) throws -> String { try postgres.createDatabase(name) }

    /// The variables an assetfs process needs to reach these servers (AWS's conventions).
    public var s3Environment: [String: String] {
        ["AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.accessKey, "AWS_SECRET_ACCESS_KEY": s3.secretKey,
         "AWS_REGION": "us-east-1"]
    }
}

/// A shared store for one test, not yet initialised: `url` for --store and ASSETFS_STORE, `catalog` for
/// `init --catalog`, and `environment` for every assetfs process of the test (the servers' address and
/// credentials, plus this test's host directory and disk cache, so a test is its own host). `close()` lets go
/// of the servers.
public final class SharedStoreHandle: @unchecked Sendable {
    public let servers: SharedServers
    public let url: String
    public let catalog: String
    public let environment: [String: String]
    /// Servers of this store alone (`dedicated`), stopped by `close`.
    private let ownsServers: Bool
    private let closed = NSLock()
    private var isClosed = false  // Protected by `closed`.

    /// `directory`: the test's own scratch directory (holds the host directory and the disk cache).
    /// `dedicated`: servers of its own, which the test may stop, pause and restart.
    public init(directory: String, host: String = "host", dedicated: Bool = false) throws {
        servers = dedicated ? try SharedServers.dedicated() : try SharedServers.acquire()
        ownsServers = dedicated
        do {
            let name = servers.uniqueName()
            url = "s3://\(servers.s3.bucket)/\(name)"
            catalog = try servers.newDatabase(name)
        } catch {
            if dedicated { servers.stopDedicated() } else { SharedServers.release() }
            throw error
        }
        environment = servers.s3Environment.merging(Self.hostEnvironment(directory, host: host)) { $1 }
        SharedStoreRegistry.register(url, environment)
    }

    /// What makes a process another host of the same store: its own host directory and disk cache.
    public static func hostEnvironment(_ directory: String, host: String) -> [String: String] {
        ["ASSETFS_HOST_DIR": "\(directory)/\(host)-state", "ASSETFS_DISK_CACHE": "\(directory)/\(host)-cache"]
    }

    public func close() {
        let first = closed.withLock { () -> Bool in defer { isClosed = true }; return !isClosed }
        guard first else { return }
        SharedStoreRegistry.unregister(url)
        if ownsServers { servers.stopDedicated() } else { SharedServers.release() }
    }

    deinit { close() }
}

/// The environment each open shared store's processes need, by store URL: helpers that start assetfs with
/// only a store string (ASSETFS_STORE) add it from here.
public enum SharedStoreRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var environments: [String: [String: String]] = [:]  // Protected by `lock`.

    static func register(_ url: String, _ environment: [String: String]) { lock.withLock { environments[url] = environment } }
    static func unregister(_ url: String) { _ = lock.withLock { environments.removeValue(forKey: url) } }

    /// Empty for a local store.
    public static func environment(for store: String?) -> [String: String] {
        guard let store else { return [:] }
        return lock.withLock { environments[store] ?? [:] }
    }
}

/// A shared store's objects as seen from outside assetfs: curl signs each request (as a person debugging would).
public enum SharedStoreObjects {
    private static func curl(_ store: String, _ arguments: [String]) throws -> String {
        let env = SharedStoreRegistry.environment(for: store)
        guard let endpoint = env["AWS_ENDPOINT_URL"], let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"] else {
            throw TestFailure("\(store) is not an open shared store of this test")
        }
        return try runForOutput(["curl", "-sSf", "--max-time", "20", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(key):\(secret)",
                                 "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"] + arguments.map { $0.replacingOccurrences(of: "ENDPOINT", with: endpoint) })
    }

    /// (bucket, prefix) of `s3://BUCKET/PREFIX`.
    private static func split(_ store: String) -> (bucket: String, prefix: String) {
        let rest = store.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        return (bucket, String(rest.dropFirst(bucket.count + 1)))
    }

    /// The store's pack objects, as `s3://BUCKET/KEY` (what assetfs names them in messages) with their sizes.
    public static func packs(_ store: String) throws -> [(path: String, size: Int)] {
        let (bucket, prefix) = split(store)
        let xml = try curl(store, ["ENDPOINT/\(bucket)?list-type=2&max-keys=1000&prefix=\(prefix)%2Fpacks%2F"])
        var out: [(String, Int)] = []
        for item in xml.components(separatedBy: "<Contents>").dropFirst() {
            guard let key = element("Key", item), let size = element("Size", item).flatMap(Int.init) else { continue }
            out.append(("s3://\(bucket)/\(key)", size))
        }
        return out
    }

    /// Replaces the object at `path` (`s3://BUCKET/KEY`) with a copy whose byte at `offset` is inverted.
    public static func flipByte(_ store: String, path: String, at offset: Int) throws {
        let key = String(path.dropFirst("s3://".count))
        let local = NSTemporaryDirectory() + "/flip-\(UUID().uuidString)"
        defer { unlink(local) }
        _ = try curl(store, ["-o", local, "ENDPOINT/\(key)"])
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: local)))
        bytes[offset] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: local))
        _ = try curl(store, ["-T", local, "ENDPOINT/\(key)"])
    }

    private static func element(_ name: String, _ text: String) -> String? {
        guard let start = text.range(of: "<\(name)>"), let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex) else {
            return nil
        }
        return String(text[start.upperBound..<end.lowerBound])
    }
}

/// Two network namespaces joined by a veth pair: host A at `SUBNET.1`, host B at `SUBNET.2`, in a private /24
/// that exists only inside them. The root namespace first gets an `unreachable` route for that /24, so no
/// packet of the test can leave the machine. `close()` removes the namespaces (and with them the veth pair)
/// and the route, however the test ended.
public final class TwoHostNetwork: @unchecked Sendable {
    public let a: String
    public let b: String
    public let subnet: String
    public var addressA: String { subnet + ".1" }
    public var addressB: String { subnet + ".2" }
    private var made: [[String]] = []  // Undo commands, newest last.

    public init() throws {
        let tag = "\(getpid() % 100_000)"
        a = "afs-a-\(tag)"
        b = "afs-b-\(tag)"
        subnet = "10.213.\(Int.random(in: 1...250))"
        do {
            try ip(["route", "add", "unreachable", subnet + ".0/24"], undo: ["route", "del", "unreachable", subnet + ".0/24"])
            try ip(["netns", "add", a], undo: ["netns", "del", a])
            try ip(["netns", "add", b], undo: ["netns", "del", b])
            let (va, vb) = ("afsa\(tag)", "afsb\(tag)")
            try ip(["link", "add", va, "type", "veth", "peer", "name", vb], undo: ["link", "del", va])
            try ip(["link", "set", va, "netns", a], undo: nil)
            try ip(["link", "set", vb, "netns", b], undo: nil)
            for (ns, device, address) in [(a, va, addressA), (b, vb, addressB)] {
                try ip(["-n", ns, "addr", "add", address + "/24", "dev", device], undo: nil)
                try ip(["-n", ns, "link", "set", device, "up"], undo: nil)
                try ip(["-n", ns, "link", "set", "lo", "up"], undo: nil)
            }
        } catch {
            close()
            throw error
        }
    }

    private func ip(_ arguments: [String], undo: [String]?) throws {
        _ = try runForOutput(["ip"] + arguments)
        if let undo { made.append(undo) }
    }

    public func close() {
        for undo in made.reversed() { _ = try? runForOutput(["ip"] + undo) }
        made.removeAll()
    }

    deinit { close() }
}
