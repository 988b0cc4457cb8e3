import AssetStore

extension SQLiteCatalog {
    public func openSession(_ new: NewSession, excluding: Set<SessionKind>) throws -> SessionOpening {
        try locked { db in
            try db.transaction {
                let now = try Self.removeExpiredSessions(db)
                let blocking = try db.rows(Self.sessionColumns + " ORDER BY id", [], Self.sessionRow).filter { excluding.contains($0.kind) }
                if !blocking.isEmpty { return .blocked(blocking) }
                try db.run("INSERT INTO sessions(host, pid, kind, started_ns, expires_ns) VALUES(?, ?, ?, ?, ?)",
                           [.text(new.host), .int(Int64(new.pid)), .text(new.kind.rawValue), .int(now), .int(new.expiresNs)])
                return .opened(SessionInfo(id: db.lastInsertRowID, host: new.host, pid: new.pid, kind: new.kind, startedNs: now,
                                           expiresNs: new.expiresNs))
            }
        }
    }

    public func renewSession(_ id: Int64, expiresNs: Int64) throws -> Bool {
        try locked { db in
            try db.run("UPDATE sessions SET expires_ns = ? WHERE id = ? AND expires_ns > ?",
                       [.int(expiresNs), .int(id), .int(Clock.nowNanoseconds())])
            return db.changes == 1
        }
    }

    public func closeSession(_ id: Int64) throws {
        try locked { db in try db.run("DELETE FROM sessions WHERE id = ?", [.int(id)]) }
    }

    public func liveSessions() throws -> [SessionInfo] {
        try locked { db in
            _ = try Self.removeExpiredSessions(db)
            return try db.rows(Self.sessionColumns + " ORDER BY id", [], Self.sessionRow)
        }
    }

    /// Deletes the sessions whose lease has run out; returns the time it judged by.
    private static func removeExpiredSessions(_ db: SQLiteDatabase) throws -> Int64 {
        let now = Clock.nowNanoseconds()
        try db.run("DELETE FROM sessions WHERE expires_ns <= ?", [.int(now)])
        return now
    }

    static let sessionColumns = "SELECT id, host, pid, kind, started_ns, expires_ns FROM sessions"

    static func sessionRow(_ r: Row) -> SessionInfo {
        // A kind this build does not know (a newer assetfs on another host) is treated as a writer: it blocks gc.
        SessionInfo(id: r.int(0), host: r.text(1), pid: Int32(truncatingIfNeeded: r.int(2)),
                    kind: SessionKind(rawValue: r.text(3)) ?? .import, startedNs: r.int(4), expiresNs: r.int(5))
    }
}
