import AssetCatalog
import AssetObjectStore
import AssetPostgres
import AssetRepository
import AssetStore
import Foundation

/// How to reach a shared store's services and where this host keeps its part, from command-line options and
/// the environment. Every field is optional: the marker and the conventions (AWS_*, PG*) fill in the rest.
public struct SharedStoreSettings: Sendable {
    /// `--catalog`: a libpq URL or key=value string; overrides the one in the store's marker.
    public var catalog: String?
    /// `--s3-endpoint`: overrides AWS_ENDPOINT_URL.
    public var s3Endpoint: String?
    /// `--disk-cache`: the host's verified chunk cache (default: see `defaultDiskCache`).
    public var diskCache: String?
    /// `--disk-cache-size`.
    public var diskCacheBytes: UInt64?
    /// `--io-timeout`: how long a read of the object store may take, retries included, before it fails (a
    /// mount then answers EIO). Each try gets half, and no retry starts after the other half.
    public var ioTimeout: Double = 30
    public var environment: [String: String]
    /// Told of each retried object-store call (what failed, where, and when it is tried again): a mount logs
    /// these, rate-limited. Commands leave it nil; their final error says the rest.
    public var onRetry: (@Sendable (String) -> Void)?

    public static let defaultDiskCacheBytes: UInt64 = 10 << 30

    public init(catalog: String? = nil, s3Endpoint: String? = nil, diskCache: String? = nil, diskCacheBytes: UInt64? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.catalog = catalog
        self.s3Endpoint = s3Endpoint
        self.diskCache = diskCache
        self.diskCacheBytes = diskCacheBytes
        self.environment = environment
    }

    func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }

    var home: String { value("HOME") ?? "/root" }

    /// This host's state of store `id` (workspaces, scratch packs, locks, logs): $ASSETFS_HOST_DIR, else
    /// /var/lib/assetfs-host/ID for root, else $XDG_STATE_HOME/assetfs/ID (~/.local/state/assetfs/ID).
    func hostDirectory(storeID: String) -> String {
        if let dir = value("ASSETFS_HOST_DIR") { return dir }
        if geteuid() == 0 { return "/var/lib/assetfs-host/\(storeID)" }
        return (value("XDG_STATE_HOME") ?? home + "/.local/state") + "/assetfs/\(storeID)"
    }

    /// The disk cache: --disk-cache, else $ASSETFS_DISK_CACHE, else /var/cache/assetfs for root, else
    /// $XDG_CACHE_HOME/assetfs (~/.cache/assetfs). Chunks are named by their hash and verified on every read,
    /// so every store on the host may share one directory.
    public func diskCacheDirectory() -> String {
        if let dir = diskCache ?? value("ASSETFS_DISK_CACHE") { return dir }
        if geteuid() == 0 { return "/var/cache/assetfs" }
        return (value("XDG_CACHE_HOME") ?? home + "/.cache") + "/assetfs"
    }
}

/// What a shared store's marker object holds: the local store's config plus the store's id and the catalog's
/// address (never a secret).
struct SharedStoreMarker: Codable {
    var format: String
    var version: Int
    var chunker: ChunkerParameters
    var createdNs: Int64
    var id: String
    var catalog: String

    var config: StoreConfig { StoreConfig(format: format, version: version, chunker: chunker, createdNs: createdNs) }
}

/// Opens and creates stores of every kind: the one place that knows which backends serve which location.
public enum Stores {
    public static func create(_ location: StoreLocation, chunker: ChunkerParameters = .default,
                              settings: SharedStoreSettings = SharedStoreSettings()) throws -> Repository {
        switch location {
        case .local(let path):
            if settings.catalog != nil {
                throw RepositoryError(.usage, "--catalog is for stores on object storage (s3://BUCKET/PREFIX); a local store keeps its catalog in \(path)")
            }
            return try Repository.create(at: path, chunker: chunker)
        case .s3(let bucket, let prefix):
            return try SharedStore.create(bucket: bucket, prefix: prefix, chunker: chunker, settings: settings)
        }
    }

    public static func open(_ location: StoreLocation, settings: SharedStoreSettings = SharedStoreSettings()) throws -> Repository {
        switch location {
        case .local(let path): return try Repository.open(at: path)
        case .s3(let bucket, let prefix): return try SharedStore.open(bucket: bucket, prefix: prefix, settings: settings)
        }
    }
}

/// A store shared by many hosts: packs on S3-compatible object storage, the catalog on PostgreSQL, and on each
/// host a directory of its own and a verified disk cache of chunks.
enum SharedStore {
    static let markerName = Repository.configName
    /// gc's default grace period on a shared store: 15 minutes. Writers on every host are excluded by their
    /// sessions (30 s leases), so the grace period only has to outlast what sessions cannot see: a pack upload
    /// that is still in flight from a host whose lease just lapsed (a 32 MiB pack over a slow link takes
    /// minutes), and a mount on another host that read a chunk's location just before gc moved it.
    static let gracePeriod = 15.0 * 60
    /// Chunks (about 512 KiB each) a mount fetches ahead of a sequential reader: 16 MiB, four segment requests
    /// in flight, hide an object store's per-request latency (measured with `AssetBench shared`: 16, 32 and 48
    /// chunks gave cold large-file reads of 0.52-0.66x, 0.66x and 0.65x the 8-way plain fetch).
    static let readAhead = 32
    /// Readers in order fetch packs in aligned 4 MiB ranges, at most 8 held at once (32 MiB, taken from the
    /// mount's --cache-size). Measured with `AssetBench shared`: exact per-chunk ranges gave cold reads of
    /// 0.36x (large files) and 0.16x (small files) the plain fetch and prefetch 0.33x curl; 4 MiB segments
    /// 0.66x, 0.83x and 1.05x; 8 MiB segments 0.62x, 0.79x and 1.18x. See SegmentedPackReader.
    static let segmentSize = 4 << 20
    /// Read-ahead fetches in flight at once (threads of the mount's FetchPool).
    static let fetchThreads = 8
    static let segmentsHeld = 8
    /// Small files a mount fetches ahead of a reader that walks a directory in name order: each costs a
    /// request's latency, so 16 at a time overlap (measured with `AssetBench shared`).
    static let readAheadFiles = 16
    /// A mount's memory cache by default: every miss costs a request, and 16 files and 8 segments are fetched
    /// ahead at a time (the figures in the README's shared-store tables were measured with it).
    static let memoryCacheBytes = 256 << 20

    static func create(bucket: String, prefix: String, chunker: ChunkerParameters, settings: SharedStoreSettings) throws -> Repository {
        if let problem = chunker.problem { throw RepositoryError(.usage, problem) }
        let url = "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)")
        guard let catalogURL = settings.catalog else {
            throw RepositoryError(.usage, "a store on object storage needs a catalog: add --catalog postgresql://USER@HOST:PORT/DATABASE (passwords go in ~/.pgpass or PGPASSWORD)")
        }
        try CatalogAddress.requireNoSecret(catalogURL)
        let id = UUID().uuidString.lowercased()
        let probe = try objectStorage(bucket: bucket, prefix: prefix, settings: settings, hostDirectory: nil)
        if try probe.readObject(markerName) != nil {
            throw RepositoryError(.conflict, "\(url) is already an assetfs store")
        }
        let catalog = try PostgresCatalog(conninfo: catalogURL)
        let bound = try catalog.bindStore(id: id)
        guard bound == id else {
            throw RepositoryError(.conflict, "the catalog \(catalog.displayName) already belongs to another store (id \(bound)): give each store a database of its own")
        }
        let marker = SharedStoreMarker(format: StoreConfig.formatName, version: StoreConfig.currentVersion, chunker: chunker,
                                       createdNs: Clock.nowNanoseconds(), id: id, catalog: catalogURL)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // The marker is written last, create-if-absent: a store without it is not yet a store, and of two hosts
        // creating the same store at once one is told it exists.
        guard try probe.createObject(markerName, contents: Array(try encoder.encode(marker)) + [0x0A]) else {
            throw RepositoryError(.conflict, "\(url) was created by another host meanwhile")
        }
        let host = try prepareHostDirectory(settings.hostDirectory(storeID: id))
        let storage = try objectStorage(bucket: bucket, prefix: prefix, settings: settings, hostDirectory: host)
        return try repository(url: url, marker: marker, storage: storage, catalog: catalog, hostDirectory: host, settings: settings)
    }

    static func open(bucket: String, prefix: String, settings: SharedStoreSettings) throws -> Repository {
        let url = "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)")
        // Only uploads need this host's scratch directory, and its name needs the store's id: read the marker first.
        let probe = try objectStorage(bucket: bucket, prefix: prefix, settings: settings, hostDirectory: nil)
        guard let bytes = try probe.readObject(markerName) else {
            throw RepositoryError(.notFound, "no assetfs store at \(url) (missing \(markerName)): create one with `assetfs init --store \(url) --catalog postgresql://USER@HOST:PORT/DATABASE`")
        }
        let marker: SharedStoreMarker
        do {
            marker = try JSONDecoder().decode(SharedStoreMarker.self, from: Data(bytes))
        } catch {
            throw RepositoryError(.corruption, "\(url)/\(markerName) is damaged: \(error)")
        }
        if let problem = StoreConfig.unsupported(format: marker.format, version: marker.version, at: url) {
            throw RepositoryError(.failure, problem)
        }
        let catalogURL = settings.catalog ?? marker.catalog
        try CatalogAddress.requireNoSecret(catalogURL)
        let catalog = try PostgresCatalog(conninfo: catalogURL)
        // A store pointed at the wrong (or an emptied) catalog must not be taken for an empty store: gc would
        // delete every pack as an orphan.
        let bound = try catalog.storeID()
        guard bound == marker.id else {
            let found = bound.map { "the catalog of store \($0)" } ?? "an empty catalog"
            throw RepositoryError(.corruption, "\(url) is store \(marker.id), but \(catalog.displayName) holds \(found): pass the store's own catalog with --catalog; nothing was changed")
        }
        let host = try prepareHostDirectory(settings.hostDirectory(storeID: marker.id))
        let storage = try objectStorage(bucket: bucket, prefix: prefix, settings: settings, hostDirectory: host)
        return try repository(url: url, marker: marker, storage: storage, catalog: catalog, hostDirectory: host, settings: settings)
    }

    private static func repository(url: String, marker: SharedStoreMarker, storage: S3PackStorage, catalog: Catalog,
                                   hostDirectory: String, settings: SharedStoreSettings) throws -> Repository {
        let cache = try DiskChunkCache(directory: settings.diskCacheDirectory(),
                                       capacity: settings.diskCacheBytes ?? SharedStoreSettings.defaultDiskCacheBytes)
        var retry = RetryPolicy()
        retry.totalTime = settings.ioTimeout / 2
        let retrying = RetryingPackStorage(storage, policy: retry, onRetry: settings.onRetry)
        return Repository(root: url, config: marker.config, storage: retrying, catalog: catalog,
                          hostDirectory: hostDirectory, diskCache: cache, segments: SegmentedPackReader(storage: retrying, segmentSize: segmentSize, capacity: segmentsHeld),
                          defaultGracePeriod: gracePeriod,
                          readAhead: readAhead, readAheadFiles: readAheadFiles, fetchThreads: fetchThreads,
                          defaultCacheBytes: memoryCacheBytes)
    }

    private static func objectStorage(bucket: String, prefix: String, settings: SharedStoreSettings,
                                      hostDirectory: String?) throws -> S3PackStorage {
        var s3 = try S3Settings.resolve(settings.environment, endpoint: settings.s3Endpoint)
        s3.requestTimeout = settings.ioTimeout / 2
        s3.connectTimeout = min(s3.connectTimeout, settings.ioTimeout / 4)
        return S3PackStorage(settings: s3, bucket: bucket, prefix: prefix,
                             scratchDirectory: hostDirectory.map { $0 + "/scratch" } ?? NSTemporaryDirectory())
    }

    /// Makes the host directory and its parts, owner-only.
    private static func prepareHostDirectory(_ path: String) throws -> String {
        for dir in [path, path + "/scratch"] {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw RepositoryError(.failure, "cannot create this host's store directory \(dir): \(error.localizedDescription) (set ASSETFS_HOST_DIR to choose another)")
            }
        }
        return path
    }
}

/// Catalog addresses are written into the marker and shown in messages, so they must hold no secret.
enum CatalogAddress {
    static func requireNoSecret(_ conninfo: String) throws {
        let advice = "keep the password out of the command line and the store's marker: put it in ~/.pgpass or PGPASSWORD"
        if conninfo.hasPrefix("postgresql://") || conninfo.hasPrefix("postgres://") {
            let rest = conninfo.split(separator: "://", maxSplits: 1).last.map(String.init) ?? ""
            let authority = rest.prefix { $0 != "/" && $0 != "?" }
            if let at = authority.lastIndex(of: "@"), authority[..<at].contains(":") {
                throw RepositoryError(.usage, "the catalog URL contains a password: \(advice)")
            }
            if let query = rest.split(separator: "?", maxSplits: 1).dropFirst().first,
               query.split(separator: "&").contains(where: { $0.lowercased().hasPrefix("password=") }) {
                throw RepositoryError(.usage, "the catalog URL contains a password: \(advice)")
            }
        } else if conninfo.lowercased().contains("password") {
            throw RepositoryError(.usage, "the catalog connection string contains a password: \(advice)")
        }
    }
}
