import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL 15 cluster for a test: `initdb` and `pg_ctl` run as the `postgres` user in a scratch
/// directory, listening on 127.0.0.1 and a free port, trust authentication. `stop` (and deinit) end it with
/// `pg_ctl -m immediate`, so a teardown never waits on clients.
public final class PostgresServer: @unchecked Sendable {
    public static let binaries = "/usr/lib/postgresql/15/bin"
    public let directory: String
    public let port: Int
    private let lock = NSLock()
    private var running = false  // Protected by `lock`.

    /// The address it listens on: 127.0.0.1, or an address inside a network namespace.
    public let address: String
    /// The network namespace it runs in (`ip netns` name), if not the test's own.
    public let namespace: String?

    /// `postgresql://postgres@ADDRESS:PORT/postgres`
    public var url: String { "postgresql://postgres@\(address):\(port)/postgres" }

    /// `directory` must not exist yet; it is made traversable by the postgres user. `namespace`: run in that
    /// network namespace (made with `ip netns add`), listening on `address` there.
    public init(directory: String, address: String = "127.0.0.1", namespace: String? = nil) throws {
        self.address = address
        self.namespace = namespace
        guard FileManager.default.isExecutableFile(atPath: Self.binaries + "/initdb") else {
            throw TestFailure("PostgreSQL 15 is missing (\(Self.binaries)): apt-get install postgresql (scripts/setup.sh does it)")
        }
        self.directory = directory
        port = try freePorts(1)[0]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Every parent must be traversable by postgres (mkdtemp makes 0700 directories).
        var parent = directory
        while parent != "/" && !parent.isEmpty {
            var st = stat()
            if stat(parent, &st) == 0, st.st_mode & 0o001 == 0 { chmod(parent, mode_t(st.st_mode & 0o7777) | 0o711) }
            parent = (parent as NSString).deletingLastPathComponent
        }
        try Self.asPostgres(["/bin/chown", "postgres", directory], asRoot: true)
        try Self.asPostgres([Self.binaries + "/initdb", "-D", directory + "/data", "-U", "postgres", "-A", "trust", "--no-sync"])
        if address != "127.0.0.1" {
            // initdb trusts loopback only; a server in a namespace is reached over its /24.
            let subnet = address.split(separator: ".").prefix(3).joined(separator: ".") + ".0/24"
            let hba = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/data/pg_hba.conf"))
            hba.seekToEndOfFile()
            hba.write(Data("host all all \(subnet) trust\n".utf8))
            try hba.close()
        }
        try start()
    }

    deinit { stop() }

    public func stop() {
        let was = lock.withLock { () -> Bool in defer { running = false }; return running }
        guard was else { return }
        _ = try? Self.asPostgres([Self.binaries + "/pg_ctl", "-D", directory + "/data", "-m", "immediate", "-w", "-t", "20", "stop"])
    }

    /// Starts it again after `stop` (same data, same port).
    public func restart() throws { try start() }

    private func start() throws {
        try Self.asPostgres([Self.binaries + "/pg_ctl", "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "30",
                             "-o", "-p \(port) -k \(directory) -c listen_addresses=\(address) -c fsync=off", "start"],
                            namespace: namespace)
        lock.withLock { running = true }
    }

    /// `createdb NAME` on this server; its libpq URL.
    public func createDatabase(_ name: String) throws -> String {
        try Self.asPostgres([Self.binaries + "/createdb", "-h", address, "-p", "\(port)", "-U", "postgres", name], asRoot: true,
                            namespace: namespace)
        return "postgresql://postgres@\(address):\(port)/\(name)"
    }

    @discardableResult
    static func asPostgres(_ argv: [String], asRoot: Bool = false, namespace: String? = nil, timeout: Double = 60) throws -> String {
        let command = asRoot ? argv : ["runuser", "-u", "postgres", "--"] + argv
        return try runForOutput(inNamespace(namespace) + command, timeout: timeout)
    }
}
