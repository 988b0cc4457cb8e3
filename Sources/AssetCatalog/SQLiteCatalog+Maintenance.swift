import AssetStore

extension SQLiteCatalog {
    // MARK: Governance

    public func setTag(asset: String, name: String, version: Int, user: String) throws -> Int? {
        try locked { db in
            try db.transaction {
                let writer = SQLiteCatalogWriter(db: db)
                guard let assetID = try writer.assetID(asset, create: false) else {
                    throw CatalogError.noAsset(asset)
                }
                guard try db.first("SELECT 1 FROM versions WHERE asset_id = ? AND number = ?",
                                   [.int(assetID), .int(Int64(version))], { _ in true }) != nil else {
                    throw CatalogError.noVersion(asset, version)
                }
                let old = try setTagRow(db, assetID: assetID, name: name, version: version)
                if old != version {
                    try appendAudit(db, user: user, action: "tag", asset: asset, subject: name,
                                    from: old.map { "v\($0)" }, to: "v\(version)", detail: "")
                }
                return old
            }
        }
    }

    public func removeTag(asset: String, name: String, user: String) throws -> Int {
        try locked { db in
            try db.transaction {
                guard let assetID = try SQLiteCatalogWriter(db: db).assetID(asset, create: false),
                    let old = try db.first("SELECT version FROM tags WHERE asset_id = ? AND name = ?",
                                           [.int(assetID), .text(name)], { Int($0.int(0)) })
                else { throw CatalogError.noTag(asset, name) }
                try db.run("DELETE FROM tags WHERE asset_id = ? AND name = ?", [.int(assetID), .text(name)])
                try appendAudit(db, user: user, action: "untag", asset: asset, subject: name, from: "v\(old)", to: nil,
                                detail: "")
                return old
            }
        }
    }

    public func deleteVersion(asset: String, number: Int, user: String) throws {
        try locked { db in
            try db.transaction {
                guard let assetID = try SQLiteCatalogWriter(db: db).assetID(asset, create: false) else {
                    throw CatalogError.noAsset(asset)
                }
                let tagged = try db.rows("SELECT name FROM tags WHERE asset_id = ? AND version = ?",
                                         [.int(assetID), .int(Int64(number))]) { $0.text(0) }
                if !tagged.isEmpty {
                    throw CatalogError.tagged(asset, number, tags: tagged)
                }
                guard let versionID = try db.first("DELETE FROM versions WHERE asset_id = ? AND number = ? RETURNING id",
                                                   [.int(assetID), .int(Int64(number))], { $0.int(0) }) else {
                    throw CatalogError.noVersion(asset, number)
                }
                // Its own record goes with it; records of versions made from it keep naming it.
                try db.run("DELETE FROM version_lineage WHERE version_id = ?", [.int(versionID)])
                try db.run("DELETE FROM version_inputs WHERE version_id = ?", [.int(versionID)])
                try appendAudit(db, user: user, action: "delete-version", asset: asset, subject: "v\(number)",
                                from: "v\(number)", to: nil, detail: "")
            }
        }
    }

    public func audit(asset: String?) throws -> [AuditEntry] {
        try locked { db in
            let sql = "SELECT id, at_ns, user, action, asset, subject, from_value, to_value, detail FROM audit"
            let filter = asset == nil ? " ORDER BY id" : " WHERE asset = ? ORDER BY id"
            return try db.rows(sql + filter, asset.map { [.text($0)] } ?? []) { r in
                AuditEntry(id: r.int(0), atNs: r.int(1), user: r.text(2), action: r.text(3), asset: r.text(4),
                           subject: r.text(5), from: r.optionalText(6), to: r.optionalText(7), detail: r.text(8))
            }
        }
    }

    // MARK: Maintenance

    public func statistics() throws -> StoreStatistics {
        try locked { db in
            var s = StoreStatistics()
            s.assets = Int(try db.first("SELECT COUNT(*) FROM assets") { $0.int(0) } ?? 0)
            try db.query("SELECT COUNT(*), COALESCE(SUM(logical_bytes), 0) FROM versions") { r in
                s.versions = Int(r.int(0))
                s.logicalBytes = UInt64(r.int(1))
            }
            s.uniqueFileBytes = UInt64(try db.first("SELECT COALESCE(SUM(size), 0) FROM files") { $0.int(0) } ?? 0)
            try db.query("SELECT COUNT(*), COALESCE(SUM(raw_length), 0), COALESCE(SUM(length), 0) FROM chunks") { r in
                s.chunks = Int(r.int(0))
                s.chunkRawBytes = UInt64(r.int(1))
                s.chunkStoredBytes = UInt64(r.int(2))
            }
            try db.query("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM packs") { r in
                s.packs = Int(r.int(0))
                s.packBytes = UInt64(r.int(1))
            }
            return s
        }
    }

    public func packs() throws -> [(id: ContentHash, size: UInt64)] {
        try locked { db in try db.rows("SELECT name, size FROM packs ORDER BY id") { (ContentHash(bytes: $0.blob(0)), UInt64($0.int(1))) } }
    }

    public func allChunks() throws -> [ChunkLocation] {
        try locked { db in try db.rows(Self.chunkColumns + " ORDER BY c.pack_id, c.offset") { Self.chunkRow($0) } }
    }

    public func chunks(inPack pack: ContentHash) throws -> [ChunkLocation] {
        try locked { db in try db.rows(Self.chunkColumns + " WHERE p.name = ? ORDER BY c.offset", [.blob(pack.bytes)]) { Self.chunkRow($0) } }
    }

    public func allFiles() throws -> [FileInfo] {
        try locked { db in try db.rows("SELECT id, hash, size, chunk_count FROM files ORDER BY id", [], Self.fileRow) }
    }

    public func filesUsing(chunk: ContentHash) throws -> [Int64] {
        try locked { db in
            try db.rows("""
                SELECT DISTINCT fc.file_id FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id WHERE c.hash = ?
                """, [.blob(chunk.bytes)]) { $0.int(0) }
        }
    }

    public func deleteUnreachable() throws -> Int {
        try locked { db in
            try db.transaction {
                try db.execute("""
                    DROP TABLE IF EXISTS temp.live_trees;
                    CREATE TEMP TABLE live_trees(id INTEGER PRIMARY KEY);
                    INSERT INTO live_trees
                        WITH RECURSIVE t(id) AS (
                            SELECT root_tree_id FROM versions
                            UNION SELECT base_tree_id FROM workspaces
                            UNION SELECT e.subtree_id FROM entries e JOIN t ON e.tree_id = t.id WHERE e.subtree_id IS NOT NULL)
                        SELECT id FROM t;
                    DELETE FROM entries WHERE tree_id NOT IN (SELECT id FROM live_trees);
                    DELETE FROM trees WHERE id NOT IN (SELECT id FROM live_trees);
                    DROP TABLE IF EXISTS temp.live_files;
                    CREATE TEMP TABLE live_files(id INTEGER PRIMARY KEY);
                    INSERT OR IGNORE INTO live_files SELECT file_id FROM entries WHERE file_id IS NOT NULL;
                    DELETE FROM stat_cache WHERE file_id NOT IN (SELECT id FROM live_files);
                    DELETE FROM file_chunks WHERE file_id NOT IN (SELECT id FROM live_files);
                    DELETE FROM files WHERE id NOT IN (SELECT id FROM live_files);
                    DELETE FROM chunks WHERE id NOT IN (SELECT chunk_id FROM file_chunks);
                    """)
                let removed = db.changes
                try db.execute("DROP TABLE temp.live_trees; DROP TABLE temp.live_files;")
                return removed
            }
        }
    }

    public func liveBytesPerPack() throws -> [ContentHash: UInt64] {
        try locked { db in
            var out = [ContentHash: UInt64]()
            try db.query("""
                SELECT p.name, COALESCE(SUM(c.length), 0), COUNT(c.id) FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id GROUP BY p.id
                """) { r in
                // A live chunk also keeps its footer entry; header and trailer belong to any non-empty pack.
                let count = UInt64(r.int(2))
                out[ContentHash(bytes: r.blob(0))] = count == 0 ? 0 : UInt64(r.int(1)) + count * 88 + 32
            }
            return out
        }
    }

    public func relocate(_ chunks: [ChunkLocation], newPack: ContentHash, newPackSize: UInt64, dropping oldPacks: [ContentHash]) throws {
        try locked { db in
            try db.transaction {
                try db.run("INSERT OR IGNORE INTO packs(name, size, created_ns) VALUES(?, ?, ?)",
                           [.blob(newPack.bytes), .int(Int64(newPackSize)), .int(Clock.nowNanoseconds())])
                for c in chunks {
                    try db.run("""
                        UPDATE chunks SET pack_id = (SELECT id FROM packs WHERE name = ?), offset = ?, length = ?,
                            codec = ?, table_hash = ? WHERE hash = ?
                        """, [.blob(newPack.bytes), .int(Int64(c.offset)), .int(Int64(c.length)),
                              .int(Int64(c.codec.rawValue)), .blob(c.tableHash.bytes), .blob(c.id.bytes)])
                }
                try forgetPacksLocked(db, oldPacks)
            }
        }
    }

    public func forgetPacks(_ ids: [ContentHash]) throws {
        try locked { db in try db.transaction { try forgetPacksLocked(db, ids) } }
    }

    private func forgetPacksLocked(_ db: SQLiteDatabase, _ ids: [ContentHash]) throws {
        for id in ids {
            let used = try db.first("""
                SELECT COUNT(*) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE p.name = ?
                """, [.blob(id.bytes)]) { $0.int(0) } ?? 0
            guard used == 0 else {
                throw CatalogError.packInUse(id, chunks: used)
            }
            // Two-phase: the row goes, the object is doomed; gc deletes it once no reader can still want it.
            try db.run("""
                INSERT OR IGNORE INTO doomed_packs(name, size, doomed_ns) SELECT name, size, ? FROM packs WHERE name = ?
                """, [.int(Clock.nowNanoseconds()), .blob(id.bytes)])
            try db.run("DELETE FROM packs WHERE name = ?", [.blob(id.bytes)])
        }
    }

    public func doomedPacks() throws -> [DoomedPack] {
        try locked { db in
            try db.rows("SELECT name, size, doomed_ns FROM doomed_packs ORDER BY doomed_ns") {
                DoomedPack(id: ContentHash(bytes: $0.blob(0)), size: UInt64($0.int(1)), doomedNs: $0.int(2))
            }
        }
    }

    public func removeDoomedPacks(_ ids: [ContentHash]) throws {
        try locked { db in
            try db.transaction {
                for id in ids { try db.run("DELETE FROM doomed_packs WHERE name = ?", [.blob(id.bytes)]) }
            }
        }
    }
}
