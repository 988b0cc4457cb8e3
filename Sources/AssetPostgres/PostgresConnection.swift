import AssetCatalog
import CPostgres
import Foundation

/// A value bound to or read from a PostgreSQL statement. Values travel in binary: `bytea` as raw bytes (names
/// are raw bytes and need not be UTF-8), integers as 8-byte big-endian.
public enum PGValue: Sendable, Equatable {
    case int(Int64)
    case text(String)
    case bytes([UInt8])
    case bool(Bool)
    case null

    public var int: Int64? { if case .int(let v) = self { return v }; return nil }
    public var text: String? { if case .text(let v) = self { return v }; return nil }
    public var bytes: [UInt8]? { if case .bytes(let v) = self { return v }; return nil }
}

/// One libpq connection: the one file that calls libpq. Connection settings follow libpq's own rules, so a URL
/// or `key=value` string plus the variables and files people already have (PGHOST, PGPORT, PGUSER,
/// PGPASSWORD, PGSSLMODE, ~/.pgpass, service files) all work. Not thread-safe: callers serialise access.
public final class PostgresConnection {
    private let handle: OpaquePointer
    /// host:port/database as user, for messages: never the password.
    public let displayName: String

    public init(_ conninfo: String) throws {
        guard let connection = PQconnectdb(conninfo) else { throw CatalogError(.failure, "libpq could not allocate a connection") }
        let name = Self.name(connection)
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(connection)
            // A server that is down, restarting or unreachable may answer later: transient.
            throw CatalogError(.transient, "cannot connect to the catalog at \(name): \(message)", cause: "libpq")
        }
        handle = connection
        displayName = name
    }

    deinit { PQfinish(handle) }

    private static func name(_ connection: OpaquePointer) -> String {
        func field(_ value: UnsafeMutablePointer<CChar>?) -> String { value.map { String(cString: $0) } ?? "" }
        return "postgresql://\(field(PQuser(connection)))@\(field(PQhost(connection))):\(field(PQport(connection)))/\(field(PQdb(connection)))"
    }

    /// Runs one or more statements without parameters or results (migrations, BEGIN, COMMIT).
    public func execute(_ sql: String) throws {
        guard let result = PQexec(handle, sql) else { throw connectionLost("executing SQL") }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else { throw error(result) }
    }

    /// Runs one statement with `$1...` parameters; returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [PGValue] = []) throws -> [[PGValue]] {
        // Binary parameters: every value is kept alive in `storage` until PQexecParams returns.
        var storage: [[UInt8]] = []
        var types: [Oid] = []
        var formats: [Int32] = []
        for value in parameters {
            switch value {
            case .int(let v): storage.append(withUnsafeBytes(of: v.bigEndian) { Array($0) }); types.append(20)
            case .text(let v): storage.append(Array(v.utf8)); types.append(25)
            case .bytes(let v): storage.append(v); types.append(17)
            case .bool(let v): storage.append([v ? 1 : 0]); types.append(16)
            case .null: storage.append([]); types.append(0)
            }
            formats.append(1)
        }
        let lengths = storage.map { Int32($0.count) }
        // An empty value still needs a valid pointer: each buffer gets one spare byte past its length.
        storage = storage.map { $0 + [0] }
        let result: OpaquePointer? = storage.withPointers { pointers in
            let values = zip(pointers, parameters).map { pointer, value -> UnsafePointer<CChar>? in
                if case .null = value { return nil }
                return pointer.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }
            }
            return PQexecParams(handle, sql, Int32(parameters.count), types, values, lengths, formats, 1)
        }
        guard let result else { throw connectionLost("running a query") }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else { throw error(result) }
        var rows: [[PGValue]] = []
        for row in 0..<PQntuples(result) {
            rows.append((0..<PQnfields(result)).map { column in Self.value(result, row, column) })
        }
        return rows
    }

    /// Runs `body` in a transaction (`isolation` e.g. "SERIALIZABLE"); rolls back when it throws. A
    /// serialization failure or deadlock surfaces as `.transient`, for the caller to run `body` again.
    public func transaction<T>(isolation: String = "READ COMMITTED", _ body: () throws -> T) throws -> T {
        try execute("BEGIN ISOLATION LEVEL \(isolation)")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")  // Safe: the original error is rethrown; a lost connection rolls back by itself.
            throw error
        }
    }

    private static func value(_ result: OpaquePointer, _ row: Int32, _ column: Int32) -> PGValue {
        if PQgetisnull(result, row, column) != 0 { return .null }
        let length = Int(PQgetlength(result, row, column))
        let bytes = PQgetvalue(result, row, column).map { p in
            Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: length))
        } ?? []
        switch PQftype(result, column) {
        case 20, 23, 21:  // int8, int4, int2
            var v: Int64 = 0
            for b in bytes { v = (v << 8) | Int64(b) }
            // Sign-extend the narrower ones.
            let bits = bytes.count * 8
            if bits < 64, bits > 0, v & (1 << (bits - 1)) != 0 { v -= 1 << bits }
            return .int(v)
        case 16: return .bool(bytes.first == 1)
        case 17: return .bytes(bytes)
        default: return .text(String(decoding: bytes, as: UTF8.self))
        }
    }

    private func error(_ result: OpaquePointer) -> CatalogError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        let message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
            ?? String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
        return CatalogError(Self.code(sqlState: state), "catalog \(displayName): \(message)", cause: "SQLSTATE \(state)")
    }

    private func connectionLost(_ what: String) -> CatalogError {
        let message = String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
        return CatalogError(.transient, "catalog \(displayName): connection lost while \(what): \(message)", cause: "libpq")
    }

    /// The backend-neutral code of a SQLSTATE.
    static func code(sqlState: String) -> CatalogError.Code {
        switch sqlState {
        case "40001", "40P01": return .transient  // serialization failure, deadlock: run the transaction again
        case "23505", "23P01": return .conflict  // unique or exclusion violation
        case "53100": return .noSpace
        case "XX001", "XX002": return .corrupt
        case _ where sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == "53300": return .transient
        case _ where sqlState.hasPrefix("22") || sqlState.hasPrefix("42"): return .invalid
        default: return .failure
        }
    }
}

extension Array where Element == [UInt8] {
    /// Calls `body` with a base pointer for each element (nil for an empty one), all valid during the call.
    fileprivate func withPointers<R>(_ body: ([UnsafePointer<UInt8>?]) -> R) -> R {
        func recurse(_ index: Int, _ collected: [UnsafePointer<UInt8>?]) -> R {
            guard index < count else { return body(collected) }
            return self[index].withUnsafeBufferPointer { recurse(index + 1, collected + [$0.baseAddress]) }
        }
        return recurse(0, [])
    }
}
