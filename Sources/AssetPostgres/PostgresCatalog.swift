import AssetCatalog
import AssetStore

/// The catalog of a store shared by many hosts, on PostgreSQL: the same schema semantics as `SQLiteCatalog`
/// (see `PostgresMigrations`), reached through a few libpq connections.
///
/// libpq rather than postgres-nio: the FUSE daemon's threads are synchronous and each catalog call is one
/// short query, so a blocking connection per thread needs no event loop between a kernel request and its
/// answer (measured in README.md).
///
/// Concurrency comes from the rules of `CatalogWriter` (upserts by hash, version numbers taken with a row lock
/// in the creating transaction) under READ COMMITTED, and from transactions that may run again: a
/// serialization failure, a deadlock or a lost connection re-runs the whole `write` body.
public final class PostgresCatalog: Catalog, @unchecked Sendable {
    let pool: PostgresPool
    /// For messages: the catalog's address without any secret.
    public var displayName: String { pool.displayName }

    /// Connects (libpq's URL or key=value string, with its variables and files) and brings the schema up to
    /// date under an advisory lock.
    public init(conninfo: String) throws {
        pool = try PostgresPool(conninfo: conninfo)
        try pool.retrying { db in try db.migrate() }
    }

    /// Records that this catalog belongs to store `id`, unless it already belongs to one; returns the id it
    /// belongs to (`id` when it was free).
    public func bindStore(id: String) throws -> String {
        try pool.transaction { db in
            try db.query("INSERT INTO store_info(key, value) VALUES('store_id', $1) ON CONFLICT(key) DO NOTHING", [.text(id)])
            guard let bound = try db.query("SELECT value FROM store_info WHERE key = 'store_id'").first?.text(0) else {
                throw CatalogError(.transient, "store_info row vanished while it was written")
            }
            return bound
        }
    }

    /// The id of the store this catalog belongs to; nil for a catalog no store has claimed.
    public func storeID() throws -> String? {
        try read("SELECT value FROM store_info WHERE key = 'store_id'") { try $0.text(0) }.first
    }

    public func write<T>(_ body: (CatalogWriter) throws -> T) throws -> T {
        try pool.transaction { db in try body(PostgresCatalogWriter(db: db)) }
    }

    public func existingChunks(_ hashes: [ContentHash]) throws -> Set<ContentHash> {
        guard !hashes.isEmpty else { return [] }
        return try pool.retrying { db in
            Set(try db.query("SELECT hash FROM chunks WHERE hash = ANY($1)", [.byteas(hashes.map(\.bytes))])
                .map { ContentHash(bytes: try $0.bytes(0)) })
        }
    }

    /// One read, run again on a transient failure.
    func read<T>(_ sql: String, _ parameters: [PGValue] = [], _ row: ([PGValue]) throws -> T) throws -> [T] {
        try pool.retrying { db in try db.query(sql, parameters).map(row) }
    }

    // MARK: Assets and versions

    public func assets() throws -> [AssetInfo] {
        try read("""
            SELECT a.id, a.name, a.created_ns, COUNT(v.id)::int8, MAX(v.number)
            FROM assets a LEFT JOIN versions v ON v.asset_id = a.id GROUP BY a.id ORDER BY a.name
            """) { r in
            AssetInfo(id: try r.int(0), name: try r.text(1), createdNs: try r.int(2), versionCount: Int(try r.int(3)),
                      latest: try r.optionalInt(4).map(Int.init))
        }
    }

    static let versionColumns = """
        SELECT v.id, a.name, v.number, v.parent, v.created_ns, v.author, v.message, v.root_tree_id, t.hash,
               v.file_count, v.logical_bytes, v.new_bytes, v.meta,
               COALESCE((SELECT array_to_string(array_agg(g.name ORDER BY g.name), E'\\n') FROM tags g
                         WHERE g.asset_id = v.asset_id AND g.version = v.number), '')
        FROM versions v JOIN assets a ON a.id = v.asset_id JOIN trees t ON t.id = v.root_tree_id
        """

    static func versionRow(_ r: [PGValue]) throws -> VersionInfo {
        let tags = try r.text(13)
        return VersionInfo(id: try r.int(0), asset: try r.text(1), number: Int(try r.int(2)),
                           parent: try r.optionalInt(3).map(Int.init), createdNs: try r.int(4), author: try r.text(5),
                           message: try r.text(6), rootTreeID: try r.int(7), rootHash: ContentHash(bytes: try r.bytes(8)),
                           fileCount: Int(try r.int(9)), logicalBytes: UInt64(try r.int(10)), newBytes: UInt64(try r.int(11)),
                           meta: MetaCoding.decode(try r.text(12)),
                           tags: tags.isEmpty ? [] : tags.split(separator: "\n").map(String.init))
    }

    public func versions(of asset: String) throws -> [VersionInfo] {
        try read(Self.versionColumns + " WHERE a.name = $1 ORDER BY v.number", [.text(asset)], Self.versionRow)
    }

    public func version(of asset: String, number: Int) throws -> VersionInfo? {
        try read(Self.versionColumns + " WHERE a.name = $1 AND v.number = $2", [.text(asset), .int(Int64(number))],
                 Self.versionRow).first
    }

    public func tags(of asset: String) throws -> [(name: String, version: Int)] {
        try read("SELECT t.name, t.version FROM tags t JOIN assets a ON a.id = t.asset_id WHERE a.name = $1 ORDER BY t.name",
                 [.text(asset)]) { r in (try r.text(0), Int(try r.int(1))) }
    }

    // MARK: Trees and files

    public func tree(_ id: Int64) throws -> TreeInfo {
        guard let info = try read("SELECT id, hash, entry_count, file_count, total_size FROM trees WHERE id = $1", [.int(id)], { r in
            TreeInfo(id: try r.int(0), hash: ContentHash(bytes: try r.bytes(1)), entryCount: Int(try r.int(2)),
                     fileCount: Int(try r.int(3)), totalSize: UInt64(try r.int(4)))
        }).first else { throw CatalogError(.corrupt, "catalog has no tree \(id) although a version refers to it") }
        return info
    }

    static let entryColumns = "SELECT name, kind, mode, uid, gid, size, mtime_ns, target, file_id, subtree_id FROM entries"

    static func entryRow(_ r: [PGValue]) throws -> TreeEntry {
        TreeEntry(name: try r.bytes(0), kind: EntryKind(rawValue: UInt8(truncatingIfNeeded: try r.int(1))) ?? .file,
                  mode: UInt32(truncatingIfNeeded: try r.int(2)), uid: UInt32(truncatingIfNeeded: try r.int(3)),
                  gid: UInt32(truncatingIfNeeded: try r.int(4)), size: UInt64(try r.int(5)), mtimeNs: try r.int(6),
                  target: try r.optionalBytes(7), fileID: try r.optionalInt(8), subtreeID: try r.optionalInt(9))
    }

    public func entries(of treeID: Int64) throws -> [TreeEntry] {
        try read(Self.entryColumns + " WHERE tree_id = $1 ORDER BY name", [.int(treeID)], Self.entryRow)
    }

    public func entry(in treeID: Int64, named name: [UInt8]) throws -> TreeEntry? {
        try read(Self.entryColumns + " WHERE tree_id = $1 AND name = $2", [.int(treeID), .bytes(name)], Self.entryRow).first
    }

    public func subdirectoryCount(of treeID: Int64) throws -> Int {
        Int(try read("SELECT COUNT(*)::int8 FROM entries WHERE tree_id = $1 AND kind = 1", [.int(treeID)]) { try $0.int(0) }.first ?? 0)
    }

    static func fileRow(_ r: [PGValue]) throws -> FileInfo {
        FileInfo(id: try r.int(0), hash: ContentHash(bytes: try r.bytes(1)), size: UInt64(try r.int(2)), chunkCount: Int(try r.int(3)))
    }

    public func file(_ id: Int64) throws -> FileInfo {
        guard let f = try read("SELECT id, hash, size, chunk_count FROM files WHERE id = $1", [.int(id)], Self.fileRow).first else {
            throw CatalogError(.corrupt, "catalog has no file \(id) although a tree refers to it")
        }
        return f
    }

    static let chunkColumns = """
        SELECT c.hash, p.name, c."offset", c.length, c.raw_length, c.codec, c.table_hash
        FROM chunks c JOIN packs p ON p.id = c.pack_id
        """

    static func chunkRow(_ r: [PGValue], from i: Int = 0) throws -> ChunkLocation {
        ChunkLocation(id: ContentHash(bytes: try r.bytes(i)), pack: ContentHash(bytes: try r.bytes(i + 1)),
                      offset: UInt64(try r.int(i + 2)), length: Int(try r.int(i + 3)), rawLength: Int(try r.int(i + 4)),
                      codec: ChunkRecord.CodecSummary(rawValue: UInt8(truncatingIfNeeded: try r.int(i + 5))) ?? .mixed,
                      tableHash: ContentHash(bytes: try r.bytes(i + 6)))
    }

    public func fileChunks(_ fileID: Int64) throws -> [FileChunk] {
        try read("""
            SELECT fc."offset", c.hash, p.name, c."offset", c.length, c.raw_length, c.codec, c.table_hash
            FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
            WHERE fc.file_id = $1 ORDER BY fc.seq
            """, [.int(fileID)]) { r in FileChunk(offset: UInt64(try r.int(0)), location: try Self.chunkRow(r, from: 1)) }
    }

    public func fileChunks(_ fileIDs: [Int64]) throws -> [Int64: [FileChunk]] {
        var out: [Int64: [FileChunk]] = [:]
        let unique = Array(Set(fileIDs))
        for start in stride(from: 0, to: unique.count, by: 5_000) {
            let batch = Array(unique[start..<min(start + 5_000, unique.count)])
            for (file, chunk) in try read("""
                SELECT fc.file_id, fc."offset", c.hash, p.name, c."offset", c.length, c.raw_length, c.codec, c.table_hash
                FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
                WHERE fc.file_id = ANY($1) ORDER BY fc.file_id, fc.seq
                """, [.ints(batch)], { r in (try r.int(0), FileChunk(offset: UInt64(try r.int(1)), location: try Self.chunkRow(r, from: 2))) }) {
                out[file, default: []].append(chunk)
            }
        }
        for id in unique where out[id] == nil { out[id] = [] }  // An empty file has no chunks.
        return out
    }

    public func chunkLocation(_ id: ContentHash) throws -> ChunkLocation? {
        try read(Self.chunkColumns + " WHERE c.hash = $1", [.bytes(id.bytes)]) { try Self.chunkRow($0) }.first
    }

    public func statCache(asset: String, directory: [UInt8]) throws -> [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)] {
        // One range scan of the paths under `directory/` (see SQLiteCatalog.statCache); bytea compares bytewise.
        let prefix = directory.isEmpty ? [] : directory + [0x2F]
        let range = directory.isEmpty ? "s.path >= $3" : "s.path >= $3 AND s.path < $4"
        let bounds: [PGValue] = directory.isEmpty ? [.bytes(prefix)] : [.bytes(prefix), .bytes(directory + [0x30])]
        let rows = try read("""
            SELECT substring(s.path FROM $1::int4), s.size, s.mtime_ns, s.ctime_ns, s.inode, s.file_id, f.hash FROM stat_cache s
            JOIN assets a ON a.id = s.asset_id JOIN files f ON f.id = s.file_id
            WHERE a.name = $2 AND \(range) AND position('\\x2f'::bytea IN substring(s.path FROM $1::int4)) = 0
            """, [.int(Int64(prefix.count + 1)), .text(asset)] + bounds) { r in
            (try r.bytes(0), StatCacheEntry(size: UInt64(try r.int(1)), mtimeNs: try r.int(2), ctimeNs: try r.int(3),
                                            inode: UInt64(bitPattern: try r.int(4)), fileID: try r.int(5)),
             ContentHash(bytes: try r.bytes(6)))
        }
        var out: [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)] = [:]
        for (name, entry, hash) in rows { out[name] = (entry, hash) }
        return out
    }
}
