import AssetStore
import CSQLite
import Synchronization

/// The embedded catalog: one SQLite file in WAL mode, one writer at a time.
public final class SQLiteCatalog: Catalog, @unchecked Sendable {
    /// Serialises every use of `db`. SQLite connections are not thread-safe in NOMUTEX mode, and metadata
    /// queries are short, so one lock is enough; no disk I/O on packs ever happens under it.
    private let lock = Mutex<Void>(())
    // Protected by `lock`.
    private let db: SQLiteDatabase

    public init(path: String) throws {
        db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("PRAGMA foreign_keys=OFF")
        try Migrations.apply(to: db)
    }

    func locked<T>(_ body: (SQLiteDatabase) throws -> T) throws -> T {
        try lock.withLock { _ in try body(db) }
    }

    public func write<T>(_ body: (CatalogWriter) throws -> T) throws -> T {
        // SQLite queues writers on its busy timeout; a transaction that still fails as transient is run again,
        // which the write contract allows.
        var attempt = 1
        while true {
            do {
                return try locked { db in try db.transaction { try body(SQLiteCatalogWriter(db: db)) } }
            } catch let error as CatalogError where error.code == .transient && attempt < 3 {
                attempt += 1
            }
        }
    }

    public func existingChunks(_ hashes: [ContentHash]) throws -> Set<ContentHash> {
        // One indexed lookup per hash under one lock: SQLite is in-process, so a lookup costs microseconds and
        // no round trip (a server catalog answers the whole batch in one query instead).
        try locked { db in
            let writer = SQLiteCatalogWriter(db: db)
            return Set(try hashes.filter { try writer.chunkExists($0) })
        }
    }

    // MARK: Assets and versions

    public func assets() throws -> [AssetInfo] {
        try locked { db in
            try db.rows("""
                SELECT a.id, a.name, a.created_ns, COUNT(v.id), MAX(v.number)
                FROM assets a LEFT JOIN versions v ON v.asset_id = a.id GROUP BY a.id ORDER BY a.name
                """) { r in
                AssetInfo(id: r.int(0), name: r.text(1), createdNs: r.int(2), versionCount: Int(r.int(3)),
                          latest: r.optionalInt(4).map(Int.init))
            }
        }
    }

    static let versionColumns = """
        SELECT v.id, a.name, v.number, v.parent, v.created_ns, v.author, v.message, v.root_tree_id, t.hash,
               v.file_count, v.logical_bytes, v.new_bytes, v.meta
        FROM versions v JOIN assets a ON a.id = v.asset_id JOIN trees t ON t.id = v.root_tree_id
        """

    static func versionRow(_ r: Row) -> VersionInfo {
        VersionInfo(id: r.int(0), asset: r.text(1), number: Int(r.int(2)), parent: r.optionalInt(3).map(Int.init),
                    createdNs: r.int(4), author: r.text(5), message: r.text(6), rootTreeID: r.int(7),
                    rootHash: ContentHash(bytes: r.blob(8)), fileCount: Int(r.int(9)),
                    logicalBytes: UInt64(r.int(10)), newBytes: UInt64(r.int(11)), meta: MetaCoding.decode(r.text(12)),
                    tags: [])
    }

    public func versions(of asset: String) throws -> [VersionInfo] {
        let tagList = try tags(of: asset)
        return try locked { db in
            try db.rows(Self.versionColumns + " WHERE a.name = ? ORDER BY v.number", [.text(asset)]) { r in
                var v = Self.versionRow(r)
                v.tags = tagList.filter { $0.version == v.number }.map(\.name)
                return v
            }
        }
    }

    public func version(of asset: String, number: Int) throws -> VersionInfo? {
        let tagList = try tags(of: asset)
        return try locked { db in
            try db.first(Self.versionColumns + " WHERE a.name = ? AND v.number = ?", [.text(asset), .int(Int64(number))]) { r in
                var v = Self.versionRow(r)
                v.tags = tagList.filter { $0.version == v.number }.map(\.name)
                return v
            }
        }
    }

    public func tags(of asset: String) throws -> [(name: String, version: Int)] {
        try locked { db in
            try db.rows("""
                SELECT t.name, t.version FROM tags t JOIN assets a ON a.id = t.asset_id WHERE a.name = ? ORDER BY t.name
                """, [.text(asset)]) { r in (r.text(0), Int(r.int(1))) }
        }
    }

    // MARK: Trees and files

    public func tree(_ id: Int64) throws -> TreeInfo {
        try locked { db in
            guard let info = try db.first("SELECT id, hash, entry_count, file_count, total_size FROM trees WHERE id = ?",
                                          [.int(id)], { r in
                TreeInfo(id: r.int(0), hash: ContentHash(bytes: r.blob(1)), entryCount: Int(r.int(2)),
                         fileCount: Int(r.int(3)), totalSize: UInt64(r.int(4)))
            }) else { throw CatalogError(.corrupt, "catalog has no tree \(id) although a version refers to it") }
            return info
        }
    }

    static let entryColumns = "SELECT name, kind, mode, uid, gid, size, mtime_ns, target, file_id, subtree_id FROM entries"

    static func entryRow(_ r: Row) -> TreeEntry {
        TreeEntry(name: r.blob(0), kind: EntryKind(rawValue: UInt8(r.int(1))) ?? .file, mode: UInt32(r.int(2)),
                  uid: UInt32(r.int(3)), gid: UInt32(r.int(4)), size: UInt64(r.int(5)), mtimeNs: r.int(6),
                  target: r.optionalBlob(7), fileID: r.optionalInt(8), subtreeID: r.optionalInt(9))
    }

    public func entries(of treeID: Int64) throws -> [TreeEntry] {
        try locked { db in try db.rows(Self.entryColumns + " WHERE tree_id = ? ORDER BY name", [.int(treeID)], Self.entryRow) }
    }

    public func entry(in treeID: Int64, named name: [UInt8]) throws -> TreeEntry? {
        try locked { db in
            try db.first(Self.entryColumns + " WHERE tree_id = ? AND name = ?", [.int(treeID), .blob(name)], Self.entryRow)
        }
    }

    public func subdirectoryCount(of treeID: Int64) throws -> Int {
        try locked { db in
            Int(try db.first("SELECT COUNT(*) FROM entries WHERE tree_id = ? AND kind = 1", [.int(treeID)]) { $0.int(0) } ?? 0)
        }
    }

    public func file(_ id: Int64) throws -> FileInfo {
        try locked { db in
            guard let f = try db.first("SELECT id, hash, size, chunk_count FROM files WHERE id = ?", [.int(id)], Self.fileRow) else {
                throw CatalogError(.corrupt, "catalog has no file \(id) although a tree refers to it")
            }
            return f
        }
    }

    static func fileRow(_ r: Row) -> FileInfo {
        FileInfo(id: r.int(0), hash: ContentHash(bytes: r.blob(1)), size: UInt64(r.int(2)), chunkCount: Int(r.int(3)))
    }

    static let chunkColumns = """
        SELECT c.hash, p.name, c.offset, c.length, c.raw_length, c.codec, c.table_hash
        FROM chunks c JOIN packs p ON p.id = c.pack_id
        """

    static func chunkRow(_ r: Row, from i: Int32 = 0) -> ChunkLocation {
        ChunkLocation(id: ContentHash(bytes: r.blob(i)), pack: ContentHash(bytes: r.blob(i + 1)),
                      offset: UInt64(r.int(i + 2)), length: Int(r.int(i + 3)), rawLength: Int(r.int(i + 4)),
                      codec: ChunkRecord.CodecSummary(rawValue: UInt8(r.int(i + 5))) ?? .mixed,
                      tableHash: ContentHash(bytes: r.blob(i + 6)))
    }

    public func fileChunks(_ fileID: Int64) throws -> [FileChunk] {
        try locked { db in
            try db.rows("""
                SELECT fc.offset, c.hash, p.name, c.offset, c.length, c.raw_length, c.codec, c.table_hash
                FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
                WHERE fc.file_id = ? ORDER BY fc.seq
                """, [.int(fileID)]) { r in FileChunk(offset: UInt64(r.int(0)), location: Self.chunkRow(r, from: 1)) }
        }
    }

    public func chunkLocation(_ id: ContentHash) throws -> ChunkLocation? {
        try locked { db in try db.first(Self.chunkColumns + " WHERE c.hash = ?", [.blob(id.bytes)]) { Self.chunkRow($0) } }
    }

    public func statCache(asset: String, directory: [UInt8]) throws -> [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)] {
        // One range scan over the paths under `directory/` (the primary key's order) instead of two queries
        // per file; names with a further "/" belong to subdirectories and are skipped inside SQLite.
        let prefix = directory.isEmpty ? [] : directory + [0x2F]
        // Paths under "dir/" sort before "dir0" ("0" comes right after "/"); the root's range has no end.
        let range = directory.isEmpty ? "s.path >= ?" : "s.path >= ? AND s.path < ?"
        let bounds: [SQLValue] = directory.isEmpty ? [.blob(prefix)] : [.blob(prefix), .blob(directory + [0x30])]
        let start = SQLValue.int(Int64(prefix.count + 1))
        return try locked { db in
            var out: [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)] = [:]
            try db.query("""
                SELECT substr(s.path, ?), s.size, s.mtime_ns, s.ctime_ns, s.inode, s.file_id, f.hash FROM stat_cache s
                JOIN assets a ON a.id = s.asset_id JOIN files f ON f.id = s.file_id
                WHERE a.name = ? AND \(range) AND instr(substr(s.path, ?), x'2f') = 0
                """, [start, .text(asset)] + bounds + [start]) { r in
                let entry = StatCacheEntry(size: UInt64(r.int(1)), mtimeNs: r.int(2), ctimeNs: r.int(3),
                                           inode: UInt64(bitPattern: r.int(4)), fileID: r.int(5))
                out[r.blob(0)] = (entry, ContentHash(bytes: r.blob(6)))
            }
            return out
        }
    }
}
