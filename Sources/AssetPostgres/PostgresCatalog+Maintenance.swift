import AssetCatalog
import AssetStore

extension PostgresCatalog {
    // MARK: Governance

    /// The asset's id, its row locked until the transaction ends: tag moves and deletions of one asset from
    /// several hosts take turns, so each audit row names the value it replaced.
    private func lockedAsset(_ db: PostgresConnection, _ asset: String) throws -> Int64 {
        guard let id = try db.query("SELECT id FROM assets WHERE name = $1 FOR UPDATE", [.text(asset)]).first?.int(0) else {
            throw CatalogError.noAsset(asset)
        }
        return id
    }

    public func setTag(asset: String, name: String, version: Int, user: String) throws -> Int? {
        try pool.transaction { db in
            let assetID = try lockedAsset(db, asset)
            guard !(try db.query("SELECT 1::int8 FROM versions WHERE asset_id = $1 AND number = $2",
                                 [.int(assetID), .int(Int64(version))]).isEmpty) else {
                throw CatalogError.noVersion(asset, version)
            }
            let old = try setTagRow(db, assetID: assetID, name: name, version: version)
            if old != version {
                try appendAudit(db, user: user, action: "tag", asset: asset, subject: name, from: old.map { "v\($0)" },
                                to: "v\(version)", detail: "")
            }
            return old
        }
    }

    public func removeTag(asset: String, name: String, user: String) throws -> Int {
        try pool.transaction { db in
            let assetID = try lockedAsset(db, asset)
            guard let old = try db.query("DELETE FROM tags WHERE asset_id = $1 AND name = $2 RETURNING version",
                                         [.int(assetID), .text(name)]).firstInt().map(Int.init) else {
                throw CatalogError.noTag(asset, name)
            }
            try appendAudit(db, user: user, action: "untag", asset: asset, subject: name, from: "v\(old)", to: nil, detail: "")
            return old
        }
    }

    public func deleteVersion(asset: String, number: Int, user: String) throws {
        try pool.transaction { db in
            let assetID = try lockedAsset(db, asset)
            let tagged = try db.query("SELECT name FROM tags WHERE asset_id = $1 AND version = $2 ORDER BY name",
                                      [.int(assetID), .int(Int64(number))]).map { try $0.text(0) }
            if !tagged.isEmpty { throw CatalogError.tagged(asset, number, tags: tagged) }
            guard let versionID = try db.query("DELETE FROM versions WHERE asset_id = $1 AND number = $2 RETURNING id",
                                               [.int(assetID), .int(Int64(number))]).first?.int(0) else {
                throw CatalogError.noVersion(asset, number)
            }
            // Its own record goes with it; records of versions made from it keep naming it.
            try db.query("DELETE FROM version_lineage WHERE version_id = $1", [.int(versionID)])
            try db.query("DELETE FROM version_inputs WHERE version_id = $1", [.int(versionID)])
            try appendAudit(db, user: user, action: "delete-version", asset: asset, subject: "v\(number)",
                            from: "v\(number)", to: nil, detail: "")
        }
    }

    public func audit(asset: String?) throws -> [AuditEntry] {
        let sql = "SELECT id, at_ns, \"user\", action, asset, subject, from_value, to_value, detail FROM audit"
        return try read(sql + (asset == nil ? " ORDER BY id" : " WHERE asset = $1 ORDER BY id"), asset.map { [.text($0)] } ?? []) { r in
            AuditEntry(id: try r.int(0), atNs: try r.int(1), user: try r.text(2), action: try r.text(3), asset: try r.text(4),
                       subject: try r.text(5), from: try r.optionalText(6), to: try r.optionalText(7), detail: try r.text(8))
        }
    }

    // MARK: Maintenance

    public func statistics() throws -> StoreStatistics {
        guard let r = try read("""
            SELECT (SELECT COUNT(*) FROM assets)::int8,
                   (SELECT COUNT(*) FROM versions)::int8, (SELECT COALESCE(SUM(logical_bytes), 0) FROM versions)::int8,
                   (SELECT COALESCE(SUM(size), 0) FROM files)::int8,
                   (SELECT COUNT(*) FROM chunks)::int8, (SELECT COALESCE(SUM(raw_length), 0) FROM chunks)::int8,
                   (SELECT COALESCE(SUM(length), 0) FROM chunks)::int8,
                   (SELECT COUNT(*) FROM packs)::int8, (SELECT COALESCE(SUM(size), 0) FROM packs)::int8
            """, [], { $0 }).first else { throw CatalogError(.corrupt, "statistics query returned no row") }
        var s = StoreStatistics()
        s.assets = Int(try r.int(0))
        s.versions = Int(try r.int(1))
        s.logicalBytes = UInt64(try r.int(2))
        s.uniqueFileBytes = UInt64(try r.int(3))
        s.chunks = Int(try r.int(4))
        s.chunkRawBytes = UInt64(try r.int(5))
        s.chunkStoredBytes = UInt64(try r.int(6))
        s.packs = Int(try r.int(7))
        s.packBytes = UInt64(try r.int(8))
        return s
    }

    public func packs() throws -> [(id: ContentHash, size: UInt64)] {
        try read("SELECT name, size FROM packs ORDER BY id") { (ContentHash(bytes: try $0.bytes(0)), UInt64(try $0.int(1))) }
    }

    public func allChunks() throws -> [ChunkLocation] {
        try read(Self.chunkColumns + " ORDER BY c.pack_id, c.\"offset\"") { try Self.chunkRow($0) }
    }

    public func chunks(inPack pack: ContentHash) throws -> [ChunkLocation] {
        try read(Self.chunkColumns + " WHERE p.name = $1 ORDER BY c.\"offset\"", [.bytes(pack.bytes)]) { try Self.chunkRow($0) }
    }

    public func allFiles() throws -> [FileInfo] {
        try read("SELECT id, hash, size, chunk_count FROM files ORDER BY id", [], Self.fileRow)
    }

    public func filesUsing(chunk: ContentHash) throws -> [Int64] {
        try read("SELECT DISTINCT fc.file_id FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id WHERE c.hash = $1",
                 [.bytes(chunk.bytes)]) { try $0.int(0) }
    }

    public func deleteUnreachable() throws -> Int {
        // gc runs this only while no import or commit session is live on any host (see StoreSession), so no
        // writer can be adding a row that points at what is deleted here.
        try pool.transaction { db in
            try db.execute("""
                CREATE TEMP TABLE live_trees ON COMMIT DROP AS
                    WITH RECURSIVE t(id) AS (
                        SELECT id FROM (SELECT root_tree_id AS id FROM versions UNION SELECT base_tree_id FROM workspaces) roots
                        UNION SELECT e.subtree_id FROM entries e JOIN t ON e.tree_id = t.id WHERE e.subtree_id IS NOT NULL)
                    SELECT id FROM t;
                CREATE INDEX ON live_trees(id);
                DELETE FROM entries e WHERE NOT EXISTS (SELECT 1 FROM live_trees l WHERE l.id = e.tree_id);
                DELETE FROM trees t WHERE NOT EXISTS (SELECT 1 FROM live_trees l WHERE l.id = t.id);
                CREATE TEMP TABLE live_files ON COMMIT DROP AS SELECT DISTINCT file_id AS id FROM entries WHERE file_id IS NOT NULL;
                CREATE INDEX ON live_files(id);
                DELETE FROM stat_cache s WHERE NOT EXISTS (SELECT 1 FROM live_files l WHERE l.id = s.file_id);
                DELETE FROM file_chunks fc WHERE NOT EXISTS (SELECT 1 FROM live_files l WHERE l.id = fc.file_id);
                DELETE FROM files f WHERE NOT EXISTS (SELECT 1 FROM live_files l WHERE l.id = f.id);
                """)
            return Int(try db.query("""
                WITH gone AS (DELETE FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM file_chunks fc WHERE fc.chunk_id = c.id) RETURNING 1)
                SELECT COUNT(*)::int8 FROM gone
                """).first?.int(0) ?? 0)
        }
    }

    public func liveBytesPerPack() throws -> [ContentHash: UInt64] {
        var out = [ContentHash: UInt64]()
        for (name, bytes, count) in try read("""
            SELECT p.name, COALESCE(SUM(c.length), 0)::int8, COUNT(c.id)::int8 FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id GROUP BY p.id
            """, [], { (ContentHash(bytes: try $0.bytes(0)), UInt64(try $0.int(1)), UInt64(try $0.int(2))) }) {
            // A live chunk also keeps its footer entry; header and trailer belong to any non-empty pack.
            out[name] = count == 0 ? 0 : bytes + count * 88 + 32
        }
        return out
    }

    public func relocate(_ chunks: [ChunkLocation], newPack: ContentHash, newPackSize: UInt64, dropping oldPacks: [ContentHash]) throws {
        try pool.transaction { db in
            try db.query("INSERT INTO packs(name, size, created_ns) VALUES($1, $2, $3) ON CONFLICT(name) DO NOTHING",
                         [.bytes(newPack.bytes), .int(Int64(newPackSize)), .int(Clock.nowNanoseconds())])
            if !chunks.isEmpty {
                try db.query("""
                    UPDATE chunks c SET pack_id = (SELECT id FROM packs WHERE name = $1), "offset" = x.o, length = x.l, codec = x.k,
                        table_hash = x.t
                    FROM unnest($2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::bytea[]) AS x(h, o, l, k, t)
                    WHERE c.hash = x.h
                    """, [.bytes(newPack.bytes), .byteas(chunks.map(\.id.bytes)), .ints(chunks.map { Int64($0.offset) }),
                          .ints(chunks.map { Int64($0.length) }), .ints(chunks.map { Int64($0.codec.rawValue) }),
                          .byteas(chunks.map(\.tableHash.bytes))])
            }
            try forget(db, oldPacks)
        }
    }

    public func forgetPacks(_ ids: [ContentHash]) throws {
        try pool.transaction { db in try forget(db, ids) }
    }

    private func forget(_ db: PostgresConnection, _ ids: [ContentHash]) throws {
        for id in ids {
            let used = try db.query("SELECT COUNT(*)::int8 FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE p.name = $1",
                                    [.bytes(id.bytes)]).first?.int(0) ?? 0
            guard used == 0 else { throw CatalogError.packInUse(id, chunks: used) }
            // Two-phase: the row goes, the object is doomed; gc deletes it once no reader can still want it.
            try db.query("""
                INSERT INTO doomed_packs(name, size, doomed_ns) SELECT name, size, $1 FROM packs WHERE name = $2
                ON CONFLICT(name) DO NOTHING
                """, [.int(Clock.nowNanoseconds()), .bytes(id.bytes)])
            try db.query("DELETE FROM packs WHERE name = $1", [.bytes(id.bytes)])
        }
    }

    public func doomedPacks() throws -> [DoomedPack] {
        try read("SELECT name, size, doomed_ns FROM doomed_packs ORDER BY doomed_ns") {
            DoomedPack(id: ContentHash(bytes: try $0.bytes(0)), size: UInt64(try $0.int(1)), doomedNs: try $0.int(2))
        }
    }

    public func removeDoomedPacks(_ ids: [ContentHash]) throws {
        guard !ids.isEmpty else { return }
        try pool.transaction { db in
            try db.query("DELETE FROM doomed_packs WHERE name = ANY($1)", [.byteas(ids.map(\.bytes))])
        }
    }

    // MARK: Sessions

    /// An arbitrary constant: the advisory lock that makes "no blocking session, so insert mine" one step.
    static let sessionLockKey: Int64 = 0x6173_7365_7466_7332  // "assetfs2"

    public func openSession(_ new: NewSession, excluding: Set<SessionKind>) throws -> SessionOpening {
        try pool.transaction { db in
            try db.query("SELECT pg_advisory_xact_lock($1)", [.int(Self.sessionLockKey)])
            let now = try Self.removeExpiredSessions(db)
            let blocking = try db.query(Self.sessionColumns + " ORDER BY id").map(Self.sessionRow).filter { excluding.contains($0.kind) }
            if !blocking.isEmpty { return .blocked(blocking) }
            guard let id = try db.query("""
                INSERT INTO sessions(host, pid, kind, started_ns, expires_ns) VALUES($1, $2, $3, $4, $5) RETURNING id
                """, [.text(new.host), .int(Int64(new.pid)), .text(new.kind.rawValue), .int(now), .int(new.expiresNs)]).first?.int(0) else {
                throw CatalogError(.failure, "session insert returned no id")
            }
            return .opened(SessionInfo(id: id, host: new.host, pid: new.pid, kind: new.kind, startedNs: now, expiresNs: new.expiresNs))
        }
    }

    public func renewSession(_ id: Int64, expiresNs: Int64) throws -> Bool {
        try pool.retrying { db in
            !(try db.query("UPDATE sessions SET expires_ns = $1 WHERE id = $2 AND expires_ns > $3 RETURNING id",
                           [.int(expiresNs), .int(id), .int(Clock.nowNanoseconds())]).isEmpty)
        }
    }

    public func closeSession(_ id: Int64) throws {
        try pool.retrying { db in try db.query("DELETE FROM sessions WHERE id = $1", [.int(id)]) }
    }

    public func liveSessions() throws -> [SessionInfo] {
        try pool.transaction { db in
            _ = try Self.removeExpiredSessions(db)
            return try db.query(Self.sessionColumns + " ORDER BY id").map(Self.sessionRow)
        }
    }

    /// Deletes the sessions whose lease has run out; returns the time it judged by. Leases are judged by each
    /// host's clock: hosts of one store must keep their clocks in step (NTP) to well within a lease.
    private static func removeExpiredSessions(_ db: PostgresConnection) throws -> Int64 {
        let now = Clock.nowNanoseconds()
        try db.query("DELETE FROM sessions WHERE expires_ns <= $1", [.int(now)])
        return now
    }

    static let sessionColumns = "SELECT id, host, pid, kind, started_ns, expires_ns FROM sessions"

    static func sessionRow(_ r: [PGValue]) throws -> SessionInfo {
        // A kind this build does not know (a newer assetfs on another host) is treated as a writer: it blocks gc.
        SessionInfo(id: try r.int(0), host: try r.text(1), pid: Int32(truncatingIfNeeded: try r.int(2)),
                    kind: SessionKind(rawValue: try r.text(3)) ?? .import, startedNs: try r.int(4), expiresNs: try r.int(5))
    }

    // MARK: Workspaces

    static let workspaceColumns = """
        SELECT w.id, a.name, w.name, w.base_version, w.base_tree_id, w.created_ns, w.created_by, w.host
        FROM workspaces w JOIN assets a ON a.id = w.asset_id
        """

    static func workspaceRow(_ r: [PGValue]) throws -> WorkspaceInfo {
        WorkspaceInfo(id: try r.int(0), asset: try r.text(1), name: try r.text(2), baseVersion: Int(try r.int(3)),
                      baseTreeID: try r.int(4), createdNs: try r.int(5), createdBy: try r.text(6), host: try r.text(7))
    }

    public func createWorkspace(asset: String, name: String, baseVersion: Int, user: String, host: String) throws -> WorkspaceInfo {
        try pool.transaction { db in
            guard let assetID = try db.query("SELECT id FROM assets WHERE name = $1", [.text(asset)]).first?.int(0) else {
                throw CatalogError.noAsset(asset)
            }
            guard let tree = try db.query("SELECT root_tree_id FROM versions WHERE asset_id = $1 AND number = $2",
                                          [.int(assetID), .int(Int64(baseVersion))]).first?.int(0) else {
                throw CatalogError.noVersion(asset, baseVersion)
            }
            let inserted = try db.query("""
                INSERT INTO workspaces(asset_id, name, base_version, base_tree_id, created_ns, created_by, host)
                VALUES($1, $2, $3, $4, $5, $6, $7) ON CONFLICT(asset_id, name) DO NOTHING RETURNING id
                """, [.int(assetID), .text(name), .int(Int64(baseVersion)), .int(tree), .int(Clock.nowNanoseconds()), .text(user),
                      .text(host)])
            guard let id = try inserted.first?.int(0) else { throw CatalogError.workspaceExists(asset, name) }
            try appendAudit(db, user: user, action: "create-workspace", asset: asset, subject: name, from: "v\(baseVersion)",
                            to: nil, detail: "")
            guard let info = try db.query(Self.workspaceColumns + " WHERE w.id = $1", [.int(id)]).first.map(Self.workspaceRow) else {
                throw CatalogError(.transient, "workspace \(asset)/\(name) vanished while it was created")
            }
            return info
        }
    }

    public func workspaces(asset: String?) throws -> [WorkspaceInfo] {
        if let asset {
            return try read(Self.workspaceColumns + " WHERE a.name = $1 ORDER BY w.name", [.text(asset)], Self.workspaceRow)
        }
        return try read(Self.workspaceColumns + " ORDER BY a.name, w.name", [], Self.workspaceRow)
    }

    public func workspace(asset: String, name: String) throws -> WorkspaceInfo? {
        try read(Self.workspaceColumns + " WHERE a.name = $1 AND w.name = $2", [.text(asset), .text(name)], Self.workspaceRow).first
    }

    public func deleteWorkspace(id: Int64, user: String, reason: String) throws {
        try pool.transaction { db in try PostgresCatalogWriter(db: db).removeWorkspace(id: id, user: user, reason: reason) }
    }

    public func setWorkspaceBase(id: Int64, version: Int, treeID: Int64) throws {
        try pool.retrying { db in
            try db.query("UPDATE workspaces SET base_version = $1, base_tree_id = $2 WHERE id = $3",
                         [.int(Int64(version)), .int(treeID), .int(id)])
        }
    }
}
