import AssetCatalog
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A few libpq connections shared by the threads of one process (a mount's FUSE threads, an import's
/// pipeline). A connection is used by one thread at a time; one that broke (server restarted, network lost)
/// is dropped and the next call connects again, so a process outlives a database restart.
final class PostgresPool: @unchecked Sendable {
    let conninfo: String
    /// host:port/database as user: never the password.
    let displayName: String
    private let lock = NSLock()
    private var idle: [PostgresConnection] = []  // Protected by `lock`.
    /// Connections kept open between calls: at least as many as a mount runs fetches at once (8), or each call
    /// beyond them would connect and disconnect (a TCP handshake and authentication per query).
    private let keepIdle = 16

    init(conninfo: String) throws {
        // libpq waits for an unreachable host as long as TCP does (minutes) unless told otherwise; people who
        // set PGCONNECT_TIMEOUT or connect_timeout keep theirs.
        if getenv("PGCONNECT_TIMEOUT") == nil && !conninfo.contains("connect_timeout") {
            setenv("PGCONNECT_TIMEOUT", "5", 0)
        }
        self.conninfo = conninfo
        let first = try PostgresConnection(conninfo)
        displayName = first.displayName
        idle = [first]
    }

    /// Runs `body` on a connection of its own; a connection that broke during `body` is not reused.
    func with<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let started = DispatchTime.now().uptimeNanoseconds
        defer { CatalogMetrics.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- started)) }
        let connection: PostgresConnection
        do {
            connection = try take()
        } catch {
            CatalogMetrics.failed.increment()
            CatalogMetrics.errors.increment()
            throw error
        }
        do {
            let value = try body(connection)
            give(connection)
            CatalogMetrics.ok.increment()
            return value
        } catch {
            CatalogMetrics.failed.increment()
            CatalogMetrics.errors.increment()
            if connection.isHealthy { give(connection) }
            throw error
        }
    }

    /// `with`, run again after a transient failure (a lost connection, a serialization failure, the server
    /// restarting), a few times with growing pauses (about 3 s in all), then the last error. Only for work
    /// that may run twice: reads, and transactions whose body keeps the `Catalog.write` contract.
    func retrying<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        var delay = 0.05
        var attempt = 1
        while true {
            do {
                return try with(body)
            } catch let error as CatalogError where error.code == .transient && attempt < 6 {
                attempt += 1
                CatalogMetrics.retries.increment()
                // Jitter keeps hosts that failed together from retrying in step.
                usleep(useconds_t(delay * Double.random(in: 0.5...1.5) * 1_000_000))
                delay = min(delay * 2, 1.0)
            }
        }
    }

    /// `retrying` around one transaction.
    func transaction<T>(isolation: String = "READ COMMITTED", _ body: (PostgresConnection) throws -> T) throws -> T {
        try retrying { db in try db.transaction(isolation: isolation) { try body(db) } }
    }

    private func take() throws -> PostgresConnection {
        if let connection = lock.withLock({ idle.popLast() }) { return connection }
        return try PostgresConnection(conninfo)
    }

    private func give(_ connection: PostgresConnection) {
        lock.withLock { if idle.count < keepIdle { idle.append(connection) } }
    }
}

/// Typed access to a row of `PostgresConnection.query`; a NULL or a type this code did not ask for is a
/// catalog that does not hold what its schema says: reported as corrupt, never trapped on.
extension Array where Element == PGValue {
    func int(_ i: Int) throws -> Int64 {
        guard let v = self[i].int else { throw Self.unexpected(self[i], "an integer", i) }
        return v
    }

    func optionalInt(_ i: Int) throws -> Int64? { self[i] == .null ? nil : try int(i) }

    func bytes(_ i: Int) throws -> [UInt8] {
        guard let v = self[i].bytes else { throw Self.unexpected(self[i], "bytes", i) }
        return v
    }

    func optionalBytes(_ i: Int) throws -> [UInt8]? { self[i] == .null ? nil : try bytes(i) }

    func text(_ i: Int) throws -> String {
        guard let v = self[i].text else { throw Self.unexpected(self[i], "text", i) }
        return v
    }

    func optionalText(_ i: Int) throws -> String? { self[i] == .null ? nil : try text(i) }

    private static func unexpected(_ value: PGValue, _ wanted: String, _ column: Int) -> CatalogError {
        CatalogError(.corrupt, "catalog returned \(value) where column \(column) should hold \(wanted)")
    }
}

extension Array where Element == [PGValue] {
    /// The first column of the first row as an integer; nil when there is no row.
    func firstInt() throws -> Int64? { try first?.int(0) }
}
