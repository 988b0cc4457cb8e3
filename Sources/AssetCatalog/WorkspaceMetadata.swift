import AssetStore

/// One node of a workspace overlay: a file, directory or symlink that was created, changed, moved or is an
/// ancestor of such a change. Untouched base entries have no row; they are read from the base tree.
public struct WorkspaceNode: Sendable, Equatable {
    public var ino: UInt64
    public var kind: EntryKind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    /// Last access as set by `utimensat` (reads do not change it: the mount is noatime).
    public var atimeNs: Int64
    /// Logical size. For files with a delta the delta file's size is authoritative.
    public var size: UInt64
    public var target: [UInt8]?
    /// Content under the delta: bytes below `baseLimit` not overwritten come from this stored file.
    public var baseFileID: Int64?
    public var baseLimit: UInt64
    /// Directories: the base listing that the overrides in `dirents` apply to.
    public var baseTreeID: Int64?
    public var hasDelta: Bool
    public var nlink: UInt32
    /// Device nodes: the device number (`st_rdev`); 0 for every other kind.
    public var rdev: UInt64

    public init(ino: UInt64, kind: EntryKind, mode: UInt32, uid: UInt32, gid: UInt32, mtimeNs: Int64, ctimeNs: Int64,
                size: UInt64, target: [UInt8]? = nil, baseFileID: Int64? = nil, baseLimit: UInt64 = 0,
                baseTreeID: Int64? = nil, hasDelta: Bool = false, nlink: UInt32 = 1, rdev: UInt64 = 0, atimeNs: Int64? = nil) {
        self.ino = ino
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
        self.size = size
        self.target = target
        self.baseFileID = baseFileID
        self.baseLimit = baseLimit
        self.baseTreeID = baseTreeID
        self.hasDelta = hasDelta
        self.nlink = nlink
        self.rdev = rdev
        self.atimeNs = atimeNs ?? mtimeNs
    }
}

/// The persistent overlay of one workspace: `STORE/workspaces/<id>/meta.sqlite`.
///
/// WAL with synchronous=NORMAL: every change survives a crash of the process (SIGKILL of the daemon);
/// `sync()` (called on fsync) makes it survive power loss too. Directory overrides map (parent, name) to a
/// child inode, or to 0 for a whiteout that hides a base entry.
public final class WorkspaceMetadata: @unchecked Sendable {
    /// Recursive, so readers called inside `transaction` on the same thread see the transaction's changes.
    private let lock = Lock(recursive: true)
    // Protected by `lock`.
    private let db: SQLiteDatabase
    public static let whiteout: UInt64 = 0

    public init(path: String) throws {
        db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=NORMAL")
        try db.execute("""
            CREATE TABLE IF NOT EXISTS nodes(
                ino INTEGER PRIMARY KEY, kind INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL,
                gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
                target BLOB, base_file_id INTEGER, base_limit INTEGER NOT NULL, base_tree_id INTEGER,
                has_delta INTEGER NOT NULL, nlink INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS dirents(
                parent INTEGER NOT NULL, name BLOB NOT NULL, child INTEGER NOT NULL, PRIMARY KEY(parent, name)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS dirents_by_child ON dirents(child);
            CREATE TABLE IF NOT EXISTS xattrs(
                ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS open_writers(ino INTEGER PRIMARY KEY, count INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS lineage_jobs(job_id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
            """)
        // Columns added since the first workspaces: rdev with special files (FIFOs, sockets, device nodes),
        // atime_ns with separate access times (NULL in older rows: the access time is the modification time).
        let columns = try db.rows("PRAGMA table_info(nodes)", [], { $0.text(1) })
        if !columns.contains("rdev") { try db.execute("ALTER TABLE nodes ADD COLUMN rdev INTEGER NOT NULL DEFAULT 0") }
        if !columns.contains("atime_ns") { try db.execute("ALTER TABLE nodes ADD COLUMN atime_ns INTEGER") }
    }

    /// Runs `body` atomically: every change in it lands, or none.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try lock.withLock { try db.transaction(body) }
    }

    static func nodeRow(_ r: Row) -> WorkspaceNode {
        WorkspaceNode(ino: UInt64(r.int(0)), kind: EntryKind(rawValue: UInt8(r.int(1))) ?? .file, mode: UInt32(r.int(2)),
                      uid: UInt32(r.int(3)), gid: UInt32(r.int(4)), mtimeNs: r.int(5), ctimeNs: r.int(6),
                      size: UInt64(r.int(7)), target: r.optionalBlob(8), baseFileID: r.optionalInt(9),
                      baseLimit: UInt64(r.int(10)), baseTreeID: r.optionalInt(11), hasDelta: r.int(12) != 0,
                      nlink: UInt32(r.int(13)), rdev: UInt64(bitPattern: r.int(14)), atimeNs: r.optionalInt(15))
    }

    static let nodeColumns = """
        SELECT ino, kind, mode, uid, gid, mtime_ns, ctime_ns, size, target, base_file_id, base_limit, base_tree_id,
               has_delta, nlink, rdev, atime_ns FROM nodes
        """

    public func node(_ ino: UInt64) throws -> WorkspaceNode? {
        try lock.withLock { try db.first(Self.nodeColumns + " WHERE ino = ?", [.int(Int64(bitPattern: ino))], Self.nodeRow) }
    }

    public func allNodes() throws -> [WorkspaceNode] {
        try lock.withLock { try db.rows(Self.nodeColumns + " ORDER BY ino", [], Self.nodeRow) }
    }

    // The following mutate; call them inside `transaction`.

    public func put(_ n: WorkspaceNode) throws {
        try db.run("""
            INSERT OR REPLACE INTO nodes(ino, kind, mode, uid, gid, mtime_ns, ctime_ns, size, target, base_file_id,
                                         base_limit, base_tree_id, has_delta, nlink, rdev, atime_ns)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.int(Int64(bitPattern: n.ino)), .int(Int64(n.kind.rawValue)), .int(Int64(n.mode)), .int(Int64(n.uid)),
                  .int(Int64(n.gid)), .int(n.mtimeNs), .int(n.ctimeNs), .int(Int64(n.size)), n.target.map { .blob($0) } ?? .null,
                  n.baseFileID.map { .int($0) } ?? .null, .int(Int64(n.baseLimit)), n.baseTreeID.map { .int($0) } ?? .null,
                  .int(n.hasDelta ? 1 : 0), .int(Int64(n.nlink)), .int(Int64(bitPattern: n.rdev)), .int(n.atimeNs)])
    }

    public func deleteNode(_ ino: UInt64) throws {
        try db.run("DELETE FROM nodes WHERE ino = ?", [.int(Int64(bitPattern: ino))])
        try db.run("DELETE FROM xattrs WHERE ino = ?", [.int(Int64(bitPattern: ino))])
    }

    /// Forgets every change (inside a transaction): the overlay becomes empty.
    public func reset() throws {
        try db.execute("DELETE FROM nodes; DELETE FROM dirents; DELETE FROM xattrs;")
    }

    /// In a transaction: the node row, read without taking the lock again.
    public func nodeInTransaction(_ ino: UInt64) throws -> WorkspaceNode? {
        try db.first(Self.nodeColumns + " WHERE ino = ?", [.int(Int64(bitPattern: ino))], Self.nodeRow)
    }

    public func direntInTransaction(parent: UInt64, name: [UInt8]) throws -> UInt64? {
        try db.first("SELECT child FROM dirents WHERE parent = ? AND name = ?", [.int(Int64(bitPattern: parent)), .blob(name)]) {
            UInt64(bitPattern: $0.int(0))
        }
    }

    /// nil: no override (look in the base); `whiteout`: hidden; otherwise the child inode.
    public func dirent(parent: UInt64, name: [UInt8]) throws -> UInt64? {
        try lock.withLock { try direntInTransaction(parent: parent, name: name) }
    }

    public func dirents(parent: UInt64) throws -> [(name: [UInt8], child: UInt64)] {
        try lock.withLock {
            try db.rows("SELECT name, child FROM dirents WHERE parent = ? ORDER BY name", [.int(Int64(bitPattern: parent))]) {
                ($0.blob(0), UInt64(bitPattern: $0.int(1)))
            }
        }
    }

    public func direntsInTransaction(parent: UInt64) throws -> [(name: [UInt8], child: UInt64)] {
        try db.rows("SELECT name, child FROM dirents WHERE parent = ? ORDER BY name", [.int(Int64(bitPattern: parent))]) {
            ($0.blob(0), UInt64(bitPattern: $0.int(1)))
        }
    }

    public func setDirent(parent: UInt64, name: [UInt8], child: UInt64) throws {
        try db.run("INSERT OR REPLACE INTO dirents(parent, name, child) VALUES(?, ?, ?)",
                   [.int(Int64(bitPattern: parent)), .blob(name), .int(Int64(bitPattern: child))])
    }

    public func removeDirent(parent: UInt64, name: [UInt8]) throws {
        try db.run("DELETE FROM dirents WHERE parent = ? AND name = ?", [.int(Int64(bitPattern: parent)), .blob(name)])
    }

    /// One (parent, name) that refers to `child`, for building paths in messages.
    public func parentOf(_ child: UInt64) throws -> (UInt64, [UInt8])? {
        try lock.withLock {
            try db.first("SELECT parent, name FROM dirents WHERE child = ? LIMIT 1", [.int(Int64(bitPattern: child))]) {
                (UInt64(bitPattern: $0.int(0)), $0.blob(1))
            }
        }
    }

    /// Allocates a fresh inode number in [2, 2^40), below the range of hashed base inodes.
    public func allocateInode() throws -> UInt64 {
        let current = try db.first("SELECT value FROM counters WHERE name = 'ino'") { UInt64($0.int(0)) } ?? 2
        try db.run("INSERT OR REPLACE INTO counters(name, value) VALUES('ino', ?)", [.int(Int64(current + 1))])
        return current
    }

    // Extended attributes.

    public func xattr(_ ino: UInt64, name: [UInt8]) throws -> [UInt8]? {
        try lock.withLock { try db.first("SELECT value FROM xattrs WHERE ino = ? AND name = ?", [.int(Int64(bitPattern: ino)), .blob(name)]) { $0.blob(0) } }
    }

    public func xattrNames(_ ino: UInt64) throws -> [[UInt8]] {
        try lock.withLock { try db.rows("SELECT name FROM xattrs WHERE ino = ? ORDER BY name", [.int(Int64(bitPattern: ino))]) { $0.blob(0) } }
    }

    public func setXattr(_ ino: UInt64, name: [UInt8], value: [UInt8]) throws {
        try db.run("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?, ?, ?)", [.int(Int64(bitPattern: ino)), .blob(name), .blob(value)])
    }

    public func removeXattr(_ ino: UInt64, name: [UInt8]) throws -> Bool {
        try db.run("DELETE FROM xattrs WHERE ino = ? AND name = ?", [.int(Int64(bitPattern: ino)), .blob(name)])
        return db.changes > 0
    }

    // Files open for writing, so that `commit` can refuse to snapshot a file mid-write.

    public func setOpenWriters(_ ino: UInt64, count: Int) throws {
        try lock.withLock {
            if count > 0 {
                try db.run("INSERT OR REPLACE INTO open_writers(ino, count) VALUES(?, ?)", [.int(Int64(bitPattern: ino)), .int(Int64(count))])
            } else {
                try db.run("DELETE FROM open_writers WHERE ino = ?", [.int(Int64(bitPattern: ino))])
            }
        }
    }

    public func openWriters() throws -> [UInt64] {
        try lock.withLock { try db.rows("SELECT ino FROM open_writers ORDER BY ino") { UInt64(bitPattern: $0.int(0)) } }
    }

    public func clearOpenWriters() throws {
        try lock.withLock { try db.run("DELETE FROM open_writers") }
    }

    // Lineage (Documentation/Lineage.md): what each job that wrote here read, one JSON row per job, written
    // by the mount daemon and read by commit.

    /// Replaces the rows of these jobs, in one transaction.
    public func saveLineage(_ rows: [(jobID: String, record: String)]) throws {
        guard !rows.isEmpty else { return }
        try lock.withLock {
            try db.transaction {
                for row in rows {
                    try db.run("INSERT OR REPLACE INTO lineage_jobs(job_id, record) VALUES(?, ?)", [.text(row.jobID), .text(row.record)])
                }
            }
        }
    }

    public func lineageRecords() throws -> [String] {
        try lock.withLock { try db.rows("SELECT record FROM lineage_jobs ORDER BY job_id") { $0.text(0) } }
    }

    public func clearLineage() throws {
        try lock.withLock { try db.run("DELETE FROM lineage_jobs") }
    }

    /// Makes every committed change durable on disk (checkpoints the WAL with fsync).
    public func sync() throws {
        try lock.withLock { try db.execute("PRAGMA wal_checkpoint(FULL)") }
    }
}
