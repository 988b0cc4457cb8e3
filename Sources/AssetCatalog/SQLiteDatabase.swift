import CSQLite
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A value bound to or read from an SQLite statement.
public enum SQLValue: Sendable {
    case int(Int64)
    case text(String)
    case blob([UInt8])
    case null
}

/// The one Swift file that calls SQLite's C API: a connection with a statement cache. Not thread-safe by itself;
/// `SQLiteCatalog` serialises access with its mutex.
final class SQLiteDatabase {
    private let handle: OpaquePointer
    let path: String
    private var statements: [String: OpaquePointer] = [:]

    init(path: String, readOnly: Bool = false) throws {
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw CatalogError(SQLiteDatabase.code(of: rc), "cannot open catalog \(path): \(message)", cause: SQLiteDatabase.cause(rc))
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 60_000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        for stmt in statements.values { sqlite3_finalize(stmt) }
        sqlite3_close_v2(handle)
    }

    private func error(_ rc: Int32, _ sql: String) -> CatalogError {
        let message = String(cString: sqlite3_errmsg(handle))
        var text = "catalog \(path): \(message)"
        if rc & 0xFF == SQLITE_FULL || sqlite3_system_errno(handle) == ENOSPC {
            text += " (the disk holding the store is full: free space and retry; the store is unchanged)"
        } else if rc & 0xFF == SQLITE_CORRUPT || rc & 0xFF == SQLITE_NOTADB {
            text += " (the catalog file is damaged: restore catalog.sqlite from a copy of the store)"
        } else if rc & 0xFF == SQLITE_READONLY {
            text += " (the store is read-only for this user)"
        }
        let full = rc & 0xFF == SQLITE_FULL || sqlite3_system_errno(handle) == ENOSPC
        return CatalogError(full ? .noSpace : Self.code(of: rc), text, cause: Self.cause(rc))
    }

    /// The backend-neutral code of an SQLite result code (primary or extended).
    static func code(of rc: Int32) -> CatalogError.Code {
        switch rc & 0xFF {
        case SQLITE_FULL: return .noSpace
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt
        case SQLITE_BUSY, SQLITE_LOCKED: return .transient
        case SQLITE_CONSTRAINT: return .conflict
        case SQLITE_MISUSE, SQLITE_RANGE, SQLITE_MISMATCH: return .invalid
        default: return .failure
        }
    }

    static func cause(_ rc: Int32) -> String { "SQLite \(rc) (\(String(cString: sqlite3_errstr(rc))))" }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let err = error(rc, sql)
            sqlite3_free(message)
            throw err
        }
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let stmt = statements[sql] { return stmt }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        statements[sql] = stmt
        return stmt
    }

    /// Runs `sql` with `bindings`, calling `row` for each result row.
    func query(_ sql: String, _ bindings: [SQLValue] = [], row: (Row) throws -> Void) throws {
        let stmt = try prepared(sql)
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        for (i, value) in bindings.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .int(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .text(let v): rc = sqlite3_bind_text(stmt, index, v, -1, csqlite_transient())
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(stmt, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count), csqlite_transient()) }
            case .null: rc = sqlite3_bind_null(stmt, index)
            }
            if rc != SQLITE_OK { throw error(rc, sql) }
        }
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            if rc != SQLITE_ROW { throw error(rc, sql) }
            try row(Row(stmt: stmt))
        }
    }

    func run(_ sql: String, _ bindings: [SQLValue] = []) throws {
        try query(sql, bindings) { _ in }
    }

    func rows<T>(_ sql: String, _ bindings: [SQLValue] = [], _ map: (Row) throws -> T) throws -> [T] {
        var out = [T]()
        try query(sql, bindings) { out.append(try map($0)) }
        return out
    }

    func first<T>(_ sql: String, _ bindings: [SQLValue] = [], _ map: (Row) throws -> T) throws -> T? {
        var out: T?
        try query(sql, bindings) { if out == nil { out = try map($0) } }
        return out
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` in a transaction. IMMEDIATE takes the write lock up front so that two writers queue on the
    /// busy timeout instead of failing with SQLITE_BUSY halfway.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")  // Safe: the original error is rethrown; a failed rollback leaves nothing committed.
            throw error
        }
    }
}

/// One result row; column accessors by index.
struct Row {
    let stmt: OpaquePointer
    func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    func optionalInt(_ i: Int32) -> Int64? { sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : int(i) }
    func text(_ i: Int32) -> String {
        guard let p = sqlite3_column_text(stmt, i) else { return "" }
        return String(cString: p)
    }
    func optionalText(_ i: Int32) -> String? { sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : text(i) }
    func blob(_ i: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, i))
        guard n > 0, let p = sqlite3_column_blob(stmt, i) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
    func optionalBlob(_ i: Int32) -> [UInt8]? { sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : blob(i) }
}
