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
    /// A one-dimensional array of `elementType` (an element Oid: 20 int8, 25 text, 17 bytea, 16 bool); what
    /// `unnest($1::bytea[], ...)` turns into rows, so one statement writes a whole batch.
    indirect case array([PGValue], elementType: UInt32)

    public static func ints(_ values: [Int64]) -> PGValue { .array(values.map { .int($0) }, elementType: 20) }
    public static func optionalInts(_ values: [Int64?]) -> PGValue { .array(values.map { $0.map { .int($0) } ?? .null }, elementType: 20) }
    public static func byteas(_ values: [[UInt8]]) -> PGValue { .array(values.map { .bytes($0) }, elementType: 17) }
    public static func optionalByteas(_ values: [[UInt8]?]) -> PGValue { .array(values.map { $0.map { .bytes($0) } ?? .null }, elementType: 17) }
    public static func texts(_ values: [String]) -> PGValue { .array(values.map { .text($0) }, elementType: 25) }

    /// PostgreSQL's binary send format of this value and its type Oid (nil bytes: SQL NULL).
    func encoded() -> (bytes: [UInt8]?, type: UInt32) {
        func int32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
        switch self {
        case .int(let v): return (withUnsafeBytes(of: v.bigEndian) { Array($0) }, 20)
        case .text(let v): return (Array(v.utf8), 25)
        case .bytes(let v): return (v, 17)
        case .bool(let v): return ([v ? 1 : 0], 16)
        case .null: return (nil, 0)
        case .array(let elements, let elementType):
            // ndim, has-nulls flag, element type; then size and lower bound of the one dimension; then each
            // element as length (-1 for NULL) and bytes. An empty array has no dimension.
            let arrayType: UInt32 = [20: 1016, 25: 1009, 17: 1001, 16: 1000][elementType] ?? 0
            let parts = elements.map { $0.encoded().bytes }
            var out = int32(elements.isEmpty ? 0 : 1) + int32(parts.contains { $0 == nil } ? 1 : 0) + int32(Int32(bitPattern: elementType))
            if !elements.isEmpty { out += int32(Int32(elements.count)) + int32(1) }
            for part in parts {
                out += int32(part.map { Int32($0.count) } ?? -1)
                out += part ?? []
            }
            return (out, arrayType)
        }
    }

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

    /// Whether the connection still works (false after the server went away: drop it and connect again).
    public var isHealthy: Bool { PQstatus(handle) == CONNECTION_OK }

    public init(_ conninfo: String) throws {
        guard let connection = PQconnectdb(conninfo) else { throw CatalogError(.failure, "libpq could not allocate a connection") }
        let name = Self.name(connection)
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.oneLine(String(cString: PQerrorMessage(connection)))
            PQfinish(connection)
            // A server that is down, restarting or unreachable may answer later: transient.
            throw CatalogError(.transient, "cannot connect to the catalog at \(name): \(message)", cause: "libpq")
        }
        // Server notices ("relation already exists, skipping") are for a person at psql, not for assetfs's
        // users: libpq would print them on stderr.
        _ = PQsetNoticeProcessor(connection, { _, _ in }, nil)
        handle = connection
        displayName = name
    }

    deinit { PQfinish(handle) }

    /// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...?"); a command
    /// prints one line per error.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .joined(separator: " ")
    }

    private static func name(_ connection: OpaquePointer) -> String {
        func field(_ value: UnsafeMutablePointer<CChar>?) -> String { value.map { String(cString: $0) } ?? "" }
        return "postgresql://\(field(PQuser(connection)))@\(field(PQhost(connection))):\(field(PQport(connection)))/\(field(PQdb(connection)))"
    }

    /// Runs one or more statements without parameters or results (migrations, BEGIN, COMMIT).
    public func execute(_ sql: String) throws {
        CatalogMetrics.queries.increment()
        guard let result = PQexec(handle, sql) else { throw connectionLost("executing SQL") }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else { throw error(result) }
    }

    /// Runs one statement with `$1...` parameters; returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [PGValue] = []) throws -> [[PGValue]] {
        CatalogMetrics.queries.increment()
        // Binary parameters: every value is kept alive in `storage` until PQexecParams returns.
        var storage: [[UInt8]] = []
        var types: [Oid] = []
        var formats: [Int32] = []
        for value in parameters {
            let (bytes, type) = value.encoded()
            storage.append(bytes ?? [])
            types.append(type)
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
            ?? Self.oneLine(String(cString: PQresultErrorMessage(result)))
        // A connection that broke (server shut down or restarted, network lost) reports a fatal error with no
        // SQLSTATE: that is transient, for a new connection to try again.
        let code = isHealthy ? Self.code(sqlState: state) : .transient
        return CatalogError(code, "catalog \(displayName): \(message)", cause: state.isEmpty ? "libpq" : "SQLSTATE \(state)")
    }

    private func connectionLost(_ what: String) -> CatalogError {
        let message = Self.oneLine(String(cString: PQerrorMessage(handle)))
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
