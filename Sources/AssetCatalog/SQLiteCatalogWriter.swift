import AssetStore

/// The write operations of one SQLite transaction. Only created by `SQLiteCatalog.write`, under its lock.
struct SQLiteCatalogWriter: CatalogWriter {
    let db: SQLiteDatabase

    func recordPack(_ id: ContentHash, size: UInt64, chunks: [ChunkLocation]) throws {
        try db.run("INSERT OR IGNORE INTO packs(name, size, created_ns) VALUES(?, ?, ?)",
                   [.blob(id.bytes), .int(Int64(size)), .int(Clock.nowNanoseconds())])
        guard let packID = try db.first("SELECT id FROM packs WHERE name = ?", [.blob(id.bytes)], { $0.int(0) }) else {
            throw CatalogError(.corrupt, "pack row vanished during insert")
        }
        for c in chunks {
            // OR IGNORE: a concurrent import may have indexed the same chunk first; its copy wins and ours is garbage.
            try db.run("""
                INSERT OR IGNORE INTO chunks(hash, pack_id, offset, length, raw_length, codec, table_hash)
                VALUES(?, ?, ?, ?, ?, ?, ?)
                """, [.blob(c.id.bytes), .int(packID), .int(Int64(c.offset)), .int(Int64(c.length)),
                      .int(Int64(c.rawLength)), .int(Int64(c.codec.rawValue)), .blob(c.tableHash.bytes)])
        }
    }

    func chunkExists(_ id: ContentHash) throws -> Bool {
        try db.first("SELECT 1 FROM chunks WHERE hash = ?", [.blob(id.bytes)]) { _ in true } ?? false
    }

    func fileID(hash: ContentHash) throws -> Int64? {
        try db.first("SELECT id FROM files WHERE hash = ?", [.blob(hash.bytes)]) { $0.int(0) }
    }

    func insertFile(hash: ContentHash, size: UInt64, chunks: [(offset: UInt64, chunk: ContentHash)]) throws -> Int64 {
        guard let id = try insertByHash("files", hash, columns: "size, chunk_count",
                                        [.int(Int64(size)), .int(Int64(chunks.count))]) else {
            return try existingID("files", hash)
        }
        for (seq, c) in chunks.enumerated() {
            guard let chunkID = try db.first("SELECT id FROM chunks WHERE hash = ?", [.blob(c.chunk.bytes)], { $0.int(0) }) else {
                throw CatalogError(.invalid, "file \(hash.short) refers to chunk \(c.chunk.short), which is not indexed")
            }
            try db.run("INSERT INTO file_chunks(file_id, seq, offset, chunk_id) VALUES(?, ?, ?, ?)",
                       [.int(id), .int(Int64(seq)), .int(Int64(c.offset)), .int(chunkID)])
        }
        return id
    }

    func insertTree(hash: ContentHash, entries: [TreeEntry], fileCount: Int, totalSize: UInt64) throws -> Int64 {
        guard let id = try insertByHash("trees", hash, columns: "entry_count, file_count, total_size",
                                        [.int(Int64(entries.count)), .int(Int64(fileCount)), .int(Int64(totalSize))]) else {
            return try existingID("trees", hash)
        }
        for e in entries {
            try db.run("""
                INSERT INTO entries(tree_id, name, kind, mode, uid, gid, size, mtime_ns, target, file_id, subtree_id)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.int(id), .blob(e.name), .int(Int64(e.kind.rawValue)), .int(Int64(e.mode)), .int(Int64(e.uid)),
                      .int(Int64(e.gid)), .int(Int64(e.size)), .int(e.mtimeNs), e.target.map { .blob($0) } ?? .null,
                      e.fileID.map { .int($0) } ?? .null, e.subtreeID.map { .int($0) } ?? .null])
        }
        return id
    }

    /// Upsert by hash, the rule every catalog backend keeps (see CatalogWriter): inserts the row and returns its
    /// id, or returns nil when another writer inserted the same hash first (its row is the row; nothing is added).
    private func insertByHash(_ table: String, _ hash: ContentHash, columns: String, _ values: [SQLValue]) throws -> Int64? {
        let placeholders = Array(repeating: "?", count: values.count + 1).joined(separator: ", ")
        return try db.first("INSERT INTO \(table)(hash, \(columns)) VALUES(\(placeholders)) ON CONFLICT(hash) DO NOTHING RETURNING id",
                            [.blob(hash.bytes)] + values, { $0.int(0) })
    }

    /// The id of the row `insertByHash` found already there.
    private func existingID(_ table: String, _ hash: ContentHash) throws -> Int64 {
        guard let id = try db.first("SELECT id FROM \(table) WHERE hash = ?", [.blob(hash.bytes)], { $0.int(0) }) else {
            throw CatalogError(.transient, "\(table) row \(hash.short) vanished while it was inserted")
        }
        return id
    }

    func assetID(_ name: String, create: Bool) throws -> Int64? {
        if create {
            try db.run("INSERT INTO assets(name, created_ns) VALUES(?, ?) ON CONFLICT(name) DO NOTHING",
                       [.text(name), .int(Clock.nowNanoseconds())])
        }
        return try db.first("SELECT id FROM assets WHERE name = ?", [.text(name)], { $0.int(0) })
    }

    func latestVersionNumber(asset: String) throws -> Int? {
        try db.first("""
            SELECT MAX(v.number) FROM versions v JOIN assets a ON a.id = v.asset_id WHERE a.name = ?
            """, [.text(asset)]) { $0.optionalInt(0).map(Int.init) } ?? nil
    }

    func createVersion(asset: String, _ version: NewVersion, user: String) throws -> Int {
        guard let assetID = try assetID(asset, create: true) else { throw CatalogError(.invalid, "cannot create asset") }
        // The number is taken and bumped in one statement of the creating transaction: two writers can never
        // both get it (the second waits for the first's row lock, or, here, for SQLite's single writer).
        guard let taken = try db.first("UPDATE assets SET next_version = next_version + 1 WHERE id = ? RETURNING next_version - 1",
                                       [.int(assetID)], { $0.int(0) }) else {
            throw CatalogError(.transient, "asset \(asset) vanished while its version was created")
        }
        let number = Int(taken)
        let now = Clock.nowNanoseconds()
        let versionID = try db.first("""
            INSERT INTO versions(asset_id, number, parent, created_ns, author, message, root_tree_id, file_count,
                                 logical_bytes, new_bytes, meta)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
            """, [.int(assetID), .int(Int64(number)), version.parent.map { .int(Int64($0)) } ?? .null, .int(now),
                  .text(version.author), .text(version.message), .int(version.rootTreeID),
                  .int(Int64(version.fileCount)), .int(Int64(version.logicalBytes)), .int(Int64(version.newBytes)),
                  .text(MetaCoding.encode(version.meta))], { $0.int(0) })
        guard let versionID else { throw CatalogError(.transient, "version row of \(asset) v\(number) vanished while it was inserted") }
        if let lineage = version.lineage, !lineage.isEmpty {
            try db.run("INSERT INTO version_lineage(version_id, record) VALUES(?, ?)", [.int(versionID), .text(lineage.encoded())])
            for key in lineage.inputKeys {
                try db.run("INSERT INTO version_inputs(version_id, input_asset, input_version, kind) VALUES(?, ?, ?, ?)",
                           [.int(versionID), .text(key.asset), .int(Int64(key.version)), .text(key.kind)])
            }
        }
        try appendAudit(db, user: user, action: "create-version", asset: asset, subject: "v\(number)",
                        from: version.parent.map { "v\($0)" }, to: "v\(number)", detail: version.message)
        if let tag = version.tag {
            let old = try setTagRow(db, assetID: assetID, name: tag, version: number)
            try appendAudit(db, user: user, action: "tag", asset: asset, subject: tag, from: old.map { "v\($0)" },
                            to: "v\(number)", detail: "")
        }
        return number
    }

    func replaceStatCache(asset: String, entries: [(path: [UInt8], entry: StatCacheEntry)]) throws {
        guard let assetID = try assetID(asset, create: true) else { return }
        try db.run("DELETE FROM stat_cache WHERE asset_id = ?", [.int(assetID)])
        for (path, e) in entries {
            try db.run("""
                INSERT OR REPLACE INTO stat_cache(asset_id, path, size, mtime_ns, ctime_ns, inode, file_id)
                VALUES(?, ?, ?, ?, ?, ?, ?)
                """, [.int(assetID), .blob(path), .int(Int64(e.size)), .int(e.mtimeNs), .int(e.ctimeNs),
                      .int(Int64(bitPattern: e.inode)), .int(e.fileID)])
        }
    }
}

extension SQLiteCatalogWriter {
    func removeWorkspace(id: Int64, user: String, reason: String) throws {
        guard let ws = try db.first(SQLiteCatalog.workspaceColumns + " WHERE w.id = ?", [.int(id)], SQLiteCatalog.workspaceRow) else {
            throw CatalogError(.notFound, "workspace \(id) does not exist")
        }
        try db.run("DELETE FROM workspaces WHERE id = ?", [.int(id)])
        try appendAudit(db, user: user, action: reason, asset: ws.asset, subject: ws.name, from: "v\(ws.baseVersion)",
                        to: nil, detail: "")
    }
}

/// Sets a tag; returns the version it pointed to before, if any.
func setTagRow(_ db: SQLiteDatabase, assetID: Int64, name: String, version: Int) throws -> Int? {
    let old = try db.first("SELECT version FROM tags WHERE asset_id = ? AND name = ?", [.int(assetID), .text(name)]) {
        Int($0.int(0))
    }
    try db.run("INSERT OR REPLACE INTO tags(asset_id, name, version) VALUES(?, ?, ?)",
               [.int(assetID), .text(name), .int(Int64(version))])
    return old
}

func appendAudit(_ db: SQLiteDatabase, user: String, action: String, asset: String, subject: String, from: String?,
                 to: String?, detail: String) throws {
    try db.run("""
        INSERT INTO audit(at_ns, user, action, asset, subject, from_value, to_value, detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?)
        """, [.int(Clock.nowNanoseconds()), .text(user), .text(action), .text(asset), .text(subject),
              from.map { .text($0) } ?? .null, to.map { .text($0) } ?? .null, .text(detail)])
}
