import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What `assetfs-store.json` holds: the format marker and the parameters fixed when the store was created.
public struct StoreConfig: Codable, Sendable {
    public static let formatName = "assetfs-store"
    /// The format new stores are created in (2: chunk ids from block hashes, see ChunkIdentity).
    public static let currentVersion = 2
    /// Formats this build reads and writes; a store keeps its own (its chunk ids must stay comparable).
    public static let knownVersions = 1...2

    /// The complaint for a store whose marker says another format, or nil if this build handles it.
    public static func unsupported(format: String, version: Int, at place: String) -> String? {
        guard format != formatName || !knownVersions.contains(version) else { return nil }
        return "\(place) has store format \(format) v\(version); this assetfs reads \(formatName) v\(knownVersions.lowerBound) to v\(knownVersions.upperBound): use a newer assetfs"
    }
    public var format: String
    public var version: Int
    public var chunker: ChunkerParameters
    public var createdNs: Int64

    public init(format: String, version: Int, chunker: ChunkerParameters, createdNs: Int64) {
        self.format = format
        self.version = version
        self.chunker = chunker
        self.createdNs = createdNs
    }
}

/// An open store: its pack storage, its catalog, and the chunk reader, which every operation shares.
public final class Repository: Sendable {
    public static let configName = "assetfs-store.json"
    public static let catalogName = "catalog.sqlite"
    public let root: String
    /// Where this host keeps its own state of the store: workspaces, locks, logs. For a local store its root.
    public let hostDirectory: String
    public let config: StoreConfig
    public let storage: PackStorage
    public let catalog: Catalog
    public let reader: ChunkReader
    /// How long gc keeps a pack object that left the catalog (or was never recorded) before deleting it, unless
    /// told otherwise. Set by the store's kind: 0 for a local store (one host, every writer excluded by
    /// sessions), longer for a shared store (see SharedStore).
    public let defaultGracePeriod: Double
    /// Chunks a mount reads ahead of a sequential reader: enough to overlap decompression and verification
    /// with the kernel's copy on local disk (6), and to hide each request's latency on an object store.
    public let readAhead: Int
    /// Files a mount starts fetching ahead of a reader that goes through a directory in name order (0: none).
    public let readAheadFiles: Int
    /// Threads a mount runs read-ahead on: as many as there are cores for a local store, where each fetch is
    /// CPU work (decompressing, verifying); more where each mostly waits on a request (set by the store's kind).
    public let fetchThreads: Int
    /// A mount's memory cache when `--cache-size` is not given. Local store: 24 MiB. The kernel keeps the pages
    /// it has read, so the cache holds read-ahead, chunks part way read, and blocks and tables of random reads.
    /// Measured (issue 15): cold reads of a 128 MiB file and of shards ran as fast with 16, 24 and 32 MiB as with
    /// 256 MiB, and the daemon's peak RSS went from 305 MiB to 62, 70 and 79 MiB (borg mount's: 85 MiB).
    /// A shared store keeps 256 MiB: each miss there costs a request (see SharedStore).
    public let defaultCacheBytes: Int

    /// A store assembled from backends the caller built (`create` and `open` build the local ones); also how a
    /// test puts a decorator around a backend.
    /// `diskCache`: where chunks fetched from a remote pack store are kept on this host (nil for a local store).
    /// `segments`: large reads of `storage` for readers that go through packs in order (nil for a local store).
    public init(root: String, config: StoreConfig, storage: PackStorage, catalog: Catalog, hostDirectory: String? = nil,
                diskCache: DiskChunkCache? = nil, segments: SegmentedPackReader? = nil, defaultGracePeriod: Double = 0,
                readAhead: Int = 6, readAheadFiles: Int = 0, fetchThreads: Int? = nil, defaultCacheBytes: Int = 24 << 20) {
        self.root = root
        self.defaultCacheBytes = defaultCacheBytes
        self.defaultGracePeriod = defaultGracePeriod
        self.readAhead = readAhead
        self.readAheadFiles = readAheadFiles
        self.fetchThreads = fetchThreads ?? ProcessInfo.processInfo.activeProcessorCount
        self.hostDirectory = hostDirectory ?? root
        self.config = config
        self.storage = storage
        self.catalog = catalog
        self.reader = ChunkReader(storage: storage, diskCache: diskCache, segments: segments,
                                  identity: ChunkIdentity(storeFormat: config.version) ?? .blockHashes)
    }

    /// Creates a new local store in `root`, which must be missing or an empty directory. (Stores of every kind:
    /// `Stores.create` in AssetSharedStore.)
    public static func create(at root: String, chunker: ChunkerParameters = .default) throws -> Repository {
        if let problem = chunker.problem { throw RepositoryError(.usage, problem) }
        var st = stat()
        if stat(root, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw RepositoryError(.usage, "\(root) exists and is not a directory: choose another store path")
            }
            if access(root + "/" + configName, F_OK) == 0 {
                throw RepositoryError(.conflict, "\(root) is already an assetfs store")
            }
            let existing = try listDirectory(root)
            if !existing.isEmpty {
                throw RepositoryError(.conflict, "\(root) is not empty and is not an assetfs store (it holds \(existing.count) entries): refusing to write into it; choose an empty or new directory")
            }
        }
        // Store files are owner-only: every directory is made 0700 and every file 0600 explicitly (the process
        // umask is left alone, since other threads may be creating files of their own meanwhile).
        try makeParents(root)
        try makeDirectory(root)
        try LocalPackStorage(root: root).createLayout()
        let config = StoreConfig(format: StoreConfig.formatName, version: StoreConfig.currentVersion, chunker: chunker, createdNs: Clock.nowNanoseconds())
        try createPrivateFile(root + "/" + catalogName)
        let backends = try StoreBackends.local(root: root)
        // The marker is written last and atomically: a store without it is not yet a store.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeFileAtomically(root + "/" + configName, Array(try encoder.encode(config)) + [0x0A])
        return Repository(root: root, config: config, storage: backends.storage, catalog: backends.catalog,
                          hostDirectory: backends.hostDirectory)
    }

    /// Opens the local store in `root`. (Stores of every kind: `Stores.open` in AssetSharedStore.)
    public static func open(at root: String) throws -> Repository {
        let configPath = root + "/" + configName
        guard let bytes = try? readWholeFile(configPath) else {
            throw RepositoryError(.notFound, "no assetfs store at \(root) (missing \(configName)): create one with `assetfs init --store \(root)` or pass --store / set ASSETFS_STORE")
        }
        let config: StoreConfig
        do {
            config = try JSONDecoder().decode(StoreConfig.self, from: Data(bytes))
        } catch {
            throw RepositoryError(.corruption, "\(configPath) is damaged: \(error)")
        }
        if let problem = StoreConfig.unsupported(format: config.format, version: config.version, at: root) {
            throw RepositoryError(.failure, problem)
        }
        // A store whose catalog vanished or was emptied must not be taken for an empty store: gc would then
        // delete every pack as an orphan. Refuse, and say what to do.
        var st = stat()
        let catalogPath = root + "/" + catalogName
        guard stat(catalogPath, &st) == 0, st.st_size > 0 else {
            throw RepositoryError(.corruption, "the catalog \(catalogPath) of store \(root) is missing or empty: restore it from a copy of the store; nothing was changed (the packs are intact)")
        }
        let backends = try StoreBackends.local(root: root)
        return Repository(root: root, config: config, storage: backends.storage, catalog: backends.catalog,
                          hostDirectory: backends.hostDirectory)
    }

    /// Shared for imports and commits, exclusive for gc: gc never runs while a writer may still need a chunk.
    public func lock(exclusive: Bool, wait: Bool = true) throws -> StoreLock {
        try StoreLock(path: hostDirectory + "/lock", exclusive: exclusive, wait: wait)
    }
}

/// An advisory flock on the store's lock file, released on `release()` or process exit (even SIGKILL).
public final class StoreLock {
    private var fd: Int32

    init(path: String, exclusive: Bool, wait: Bool) throws {
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw RepositoryError(.failure, "cannot open lock file \(path): \(String(cString: strerror(errno)))") }
        var op = exclusive ? LOCK_EX : LOCK_SH
        if !wait { op |= LOCK_NB }
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            let e = errno
            Glibc.close(fd)
            if e == EWOULDBLOCK {
                throw RepositoryError(.conflict, "the store is busy (an import, commit or gc holds \(path)); retry when it finishes")
            }
            throw RepositoryError(.failure, "cannot lock \(path): \(String(cString: strerror(e)))")
        }
    }

    public func release() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

func makeParents(_ path: String) throws {
    var prefix = ""
    let parts = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
    if path.hasPrefix("/") { prefix = "" }
    for part in parts {
        prefix += (path.hasPrefix("/") || !prefix.isEmpty ? "/" : "") + part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
            throw RepositoryError(.failure, "cannot create \(prefix): \(String(cString: strerror(errno)))")
        }
    }
}

/// Creates an empty file with mode 0600 if it does not exist, so SQLite (which copies the database file's
/// mode to its -wal and -shm files) keeps the catalog private.
func createPrivateFile(_ path: String) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT, mode: 0o600)
    fd.close()
}

func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = try FileDescriptor.open(path, O_RDONLY)
    defer { fd.close() }
    let size = Int(try fd.stat().st_size)
    return try fd.pread(count: size, at: 0)
}

/// Writes via a temporary name, fsync, rename, directory fsync: readers see the old or the new file, never half.
func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws {
    let tmp = path + ".tmp"
    let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
    do {
        try bytes.withUnsafeBytes { try fd.write($0) }
        try fd.sync()
        fd.close()
    } catch {
        fd.close()
        unlink(tmp)
        throw error
    }
    if rename(tmp, path) != 0 { throw RepositoryError(.failure, "cannot rename \(tmp): \(String(cString: strerror(errno)))") }
    let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    try syncDirectory(dir.isEmpty ? "/" : dir)
}
