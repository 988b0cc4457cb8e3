import AssetCatalog
import AssetStore

/// The write operations of one PostgreSQL transaction (READ COMMITTED). Batches travel as arrays that
/// `unnest` turns into rows, so a pack's chunks, a run of files and a tree's entries each cost a few round
/// trips, not one per row. Every insert is an upsert by hash (`ON CONFLICT DO NOTHING`): a row that another
/// host inserted first is the row.
struct PostgresCatalogWriter: CatalogWriter {
    let db: PostgresConnection

    func recordPack(_ id: ContentHash, size: UInt64, chunks: [ChunkLocation]) throws {
        guard let packID = try db.query("""
            WITH ins AS (INSERT INTO packs(name, size, created_ns) VALUES($1, $2, $3) ON CONFLICT(name) DO NOTHING RETURNING id)
            SELECT id FROM ins UNION ALL SELECT id FROM packs WHERE name = $1
            """, [.bytes(id.bytes), .int(Int64(size)), .int(Clock.nowNanoseconds())]).first?.int(0) else {
            throw CatalogError(.transient, "pack row \(id.short) vanished during insert")
        }
        var seen = Set<ContentHash>()
        let unique = chunks.filter { seen.insert($0.id).inserted }
        guard !unique.isEmpty else { return }
        // A chunk another import indexed first keeps its location; ours in this pack is garbage for gc.
        try db.query("""
            INSERT INTO chunks(hash, pack_id, "offset", length, raw_length, codec, table_hash)
            SELECT h, $1, o, l, r, c, t FROM unnest($2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::bytea[])
                AS x(h, o, l, r, c, t)
            ON CONFLICT(hash) DO NOTHING
            """, [.int(packID), .byteas(unique.map(\.id.bytes)), .ints(unique.map { Int64($0.offset) }),
                  .ints(unique.map { Int64($0.length) }), .ints(unique.map { Int64($0.rawLength) }),
                  .ints(unique.map { Int64($0.codec.rawValue) }), .byteas(unique.map(\.tableHash.bytes))])
    }

    func chunkExists(_ id: ContentHash) throws -> Bool {
        !(try db.query("SELECT 1::int8 FROM chunks WHERE hash = $1", [.bytes(id.bytes)]).isEmpty)
    }

    func fileID(hash: ContentHash) throws -> Int64? {
        try db.query("SELECT id FROM files WHERE hash = $1", [.bytes(hash.bytes)]).first?.int(0)
    }

    func insertFile(hash: ContentHash, size: UInt64, chunks: [(offset: UInt64, chunk: ContentHash)]) throws -> Int64 {
        try insertFiles([NewFile(hash: hash, size: size, chunks: chunks)])[0]
    }

    /// Three statements for the whole batch: insert the files that are new, look up every id, insert the chunk
    /// lists of the files this transaction inserted.
    func insertFiles(_ files: [NewFile]) throws -> [Int64] {
        guard !files.isEmpty else { return [] }
        var seen = Set<ContentHash>()
        let unique = files.filter { seen.insert($0.hash).inserted }
        let inserted = Set(try db.query("""
            INSERT INTO files(hash, size, chunk_count)
            SELECT h, s, n FROM unnest($1::bytea[], $2::int8[], $3::int8[]) AS x(h, s, n)
            ON CONFLICT(hash) DO NOTHING RETURNING id
            """, [.byteas(unique.map(\.hash.bytes)), .ints(unique.map { Int64($0.size) }),
                  .ints(unique.map { Int64($0.chunks.count) })]).map { try $0.int(0) })
        var ids: [ContentHash: Int64] = [:]
        for row in try db.query("SELECT hash, id FROM files WHERE hash = ANY($1)", [.byteas(unique.map(\.hash.bytes))]) {
            ids[ContentHash(bytes: try row.bytes(0))] = try row.int(1)
        }
        var fileIDs: [Int64] = [], seqs: [Int64] = [], offsets: [Int64] = [], chunkHashes: [[UInt8]] = []
        for file in unique {
            guard let id = ids[file.hash] else { throw CatalogError(.transient, "files row \(file.hash.short) vanished while it was inserted") }
            guard inserted.contains(id) else { continue }
            for (seq, c) in file.chunks.enumerated() {
                fileIDs.append(id)
                seqs.append(Int64(seq))
                offsets.append(Int64(c.offset))
                chunkHashes.append(c.chunk.bytes)
            }
        }
        if !fileIDs.isEmpty {
            let written = try db.query("""
                WITH ins AS (
                    INSERT INTO file_chunks(file_id, seq, "offset", chunk_id)
                    SELECT x.f, x.s, x.o, c.id FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[]) AS x(f, s, o, h)
                    JOIN chunks c ON c.hash = x.h
                    RETURNING 1)
                SELECT COUNT(*)::int8 FROM ins
                """, [.ints(fileIDs), .ints(seqs), .ints(offsets), .byteas(chunkHashes)]).first?.int(0) ?? 0
            guard written == Int64(fileIDs.count) else {
                throw CatalogError(.invalid, "\(Int64(fileIDs.count) - written) chunks of the files written are not indexed")
            }
        }
        return try files.map { file in
            guard let id = ids[file.hash] else { throw CatalogError(.transient, "files row \(file.hash.short) vanished") }
            return id
        }
    }

    func insertTree(hash: ContentHash, entries: [TreeEntry], fileCount: Int, totalSize: UInt64) throws -> Int64 {
        let new = try db.query("""
            INSERT INTO trees(hash, entry_count, file_count, total_size) VALUES($1, $2, $3, $4)
            ON CONFLICT(hash) DO NOTHING RETURNING id
            """, [.bytes(hash.bytes), .int(Int64(entries.count)), .int(Int64(fileCount)), .int(Int64(totalSize))])
        guard let id = try new.first?.int(0) else {
            guard let existing = try db.query("SELECT id FROM trees WHERE hash = $1", [.bytes(hash.bytes)]).first?.int(0) else {
                throw CatalogError(.transient, "trees row \(hash.short) vanished while it was inserted")
            }
            return existing
        }
        guard !entries.isEmpty else { return id }
        try db.query("""
            INSERT INTO entries(tree_id, name, kind, mode, uid, gid, size, mtime_ns, target, file_id, subtree_id)
            SELECT $1, n, k, m, u, g, s, t, l, f, d
            FROM unnest($2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::bytea[],
                        $10::int8[], $11::int8[]) AS x(n, k, m, u, g, s, t, l, f, d)
            """, [.int(id), .byteas(entries.map(\.name)), .ints(entries.map { Int64($0.kind.rawValue) }),
                  .ints(entries.map { Int64($0.mode) }), .ints(entries.map { Int64($0.uid) }), .ints(entries.map { Int64($0.gid) }),
                  .ints(entries.map { Int64($0.size) }), .ints(entries.map(\.mtimeNs)), .optionalByteas(entries.map(\.target)),
                  .optionalInts(entries.map(\.fileID)), .optionalInts(entries.map(\.subtreeID))])
        return id
    }

    func assetID(_ name: String, create: Bool) throws -> Int64? {
        if create {
            try db.query("INSERT INTO assets(name, created_ns) VALUES($1, $2) ON CONFLICT(name) DO NOTHING",
                         [.text(name), .int(Clock.nowNanoseconds())])
        }
        return try db.query("SELECT id FROM assets WHERE name = $1", [.text(name)]).first?.int(0)
    }

    func latestVersionNumber(asset: String) throws -> Int? {
        try db.query("SELECT MAX(v.number) FROM versions v JOIN assets a ON a.id = v.asset_id WHERE a.name = $1",
                     [.text(asset)]).first?.optionalInt(0).map(Int.init)
    }

    func createVersion(asset: String, _ version: NewVersion, user: String) throws -> Int {
        guard let assetID = try assetID(asset, create: true) else { throw CatalogError(.invalid, "cannot create asset \(asset)") }
        // The UPDATE takes the asset row's lock until this transaction ends: a second creator on any host waits
        // for it and then reads the bumped value, so the two numbers differ.
        guard let taken = try db.query("UPDATE assets SET next_version = next_version + 1 WHERE id = $1 RETURNING next_version - 1",
                                       [.int(assetID)]).first?.int(0) else {
            throw CatalogError(.transient, "asset \(asset) vanished while its version was created")
        }
        let number = Int(taken)
        let inserted = try db.query("""
            INSERT INTO versions(asset_id, number, parent, created_ns, author, message, root_tree_id, file_count,
                                 logical_bytes, new_bytes, meta)
            VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
            """, [.int(assetID), .int(Int64(number)), version.parent.map { .int(Int64($0)) } ?? .null, .int(Clock.nowNanoseconds()),
                  .text(version.author), .text(version.message), .int(version.rootTreeID), .int(Int64(version.fileCount)),
                  .int(Int64(version.logicalBytes)), .int(Int64(version.newBytes)), .text(MetaCoding.encode(version.meta))])
        guard let versionID = try inserted.first?.int(0) else {
            throw CatalogError(.transient, "version row of \(asset) v\(number) vanished while it was inserted")
        }
        if let lineage = version.lineage, !lineage.isEmpty {
            try db.query("INSERT INTO version_lineage(version_id, record) VALUES($1, $2)", [.int(versionID), .text(lineage.encoded())])
            for key in lineage.inputKeys {
                try db.query("INSERT INTO version_inputs(version_id, input_asset, input_version, kind) VALUES($1, $2, $3, $4)",
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
        try db.query("DELETE FROM stat_cache WHERE asset_id = $1", [.int(assetID)])
        // Paths are unique in a tree; a duplicate would be a bug upstream, and the last one wins as in SQLite.
        var byPath: [[UInt8]: StatCacheEntry] = [:]
        for (path, e) in entries { byPath[path] = e }
        guard !byPath.isEmpty else { return }
        let rows = Array(byPath)
        for start in stride(from: 0, to: rows.count, by: 50_000) {
            let slice = rows[start..<min(start + 50_000, rows.count)]
            try db.query("""
                INSERT INTO stat_cache(asset_id, path, size, mtime_ns, ctime_ns, inode, file_id)
                SELECT $1, p, s, m, c, i, f FROM unnest($2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
                    AS x(p, s, m, c, i, f)
                """, [.int(assetID), .byteas(slice.map(\.key)), .ints(slice.map { Int64($0.value.size) }),
                      .ints(slice.map(\.value.mtimeNs)), .ints(slice.map(\.value.ctimeNs)),
                      .ints(slice.map { Int64(bitPattern: $0.value.inode) }), .ints(slice.map(\.value.fileID))])
        }
    }

    func removeWorkspace(id: Int64, user: String, reason: String) throws {
        guard let ws = try db.query(PostgresCatalog.workspaceColumns + " WHERE w.id = $1", [.int(id)])
            .first.map(PostgresCatalog.workspaceRow) else {
            throw CatalogError(.notFound, "workspace \(id) does not exist")
        }
        try db.query("DELETE FROM workspaces WHERE id = $1", [.int(id)])
        try appendAudit(db, user: user, action: reason, asset: ws.asset, subject: ws.name, from: "v\(ws.baseVersion)",
                        to: nil, detail: "")
    }
}

/// Sets a tag; returns the version it pointed to before, if any. The caller holds the asset row's lock.
func setTagRow(_ db: PostgresConnection, assetID: Int64, name: String, version: Int) throws -> Int? {
    let old = try db.query("SELECT version FROM tags WHERE asset_id = $1 AND name = $2 FOR UPDATE", [.int(assetID), .text(name)])
        .firstInt().map(Int.init)
    try db.query("""
        INSERT INTO tags(asset_id, name, version) VALUES($1, $2, $3)
        ON CONFLICT(asset_id, name) DO UPDATE SET version = EXCLUDED.version
        """, [.int(assetID), .text(name), .int(Int64(version))])
    return old
}

func appendAudit(_ db: PostgresConnection, user: String, action: String, asset: String, subject: String, from: String?,
                 to: String?, detail: String) throws {
    try db.query("""
        INSERT INTO audit(at_ns, "user", action, asset, subject, from_value, to_value, detail) VALUES($1, $2, $3, $4, $5, $6, $7, $8)
        """, [.int(Clock.nowNanoseconds()), .text(user), .text(action), .text(asset), .text(subject),
              from.map { .text($0) } ?? .null, to.map { .text($0) } ?? .null, .text(detail)])
}
