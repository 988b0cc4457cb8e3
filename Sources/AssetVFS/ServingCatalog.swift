import AssetCatalog
import AssetStore
import Dispatch
import Logging

/// The catalog as the mount asks it, so that a catalog server that restarts or goes away does not take the
/// mount with it (a shared store's PostgreSQL; the local SQLite catalog never fails this way).
///
/// What never changes once written is remembered, bounded: a tree's entries (the last 256 listings, and
/// 65,536 lookups by name), a tree's subdirectory count, a file's size and hash. What changes (assets, versions, tags, workspaces) is asked every time, so
/// new versions and tag moves show at once; while the catalog is unreachable (`.transient` failures) the last
/// answer is served instead, and the catalog is asked again at most once a second until it answers. Reads of
/// files whose chunk lists are known keep working throughout; the mount recovers by itself.
final class ServingCatalog: @unchecked Sendable {
    let inner: Catalog
    private let logger: Logger
    private let entryMemo = BoundedMemo<EntryKey, TreeEntry?>(limit: 65536)
    private let listingMemo = BoundedMemo<Int64, [TreeEntry]>(limit: 256)
    private let subdirectoryMemo = BoundedMemo<Int64, Int>(limit: 16384)
    private let fileMemo = BoundedMemo<Int64, FileInfo>(limit: 16384)
    private let lock = Lock()
    // Protected by `lock`.
    private var lastGood: [String: Any] = [:]
    private var downSinceNs: UInt64?
    private var lastTryNs: UInt64 = 0

    private struct EntryKey: Hashable {
        let tree: Int64
        let name: [UInt8]
    }

    init(_ inner: Catalog, logger: Logger) {
        self.inner = inner
        self.logger = logger
    }

    // MARK: Changing answers, with the last one kept for outages

    func assets() throws -> [AssetInfo] { try fresh("assets") { try inner.assets() } }
    func versions(of asset: String) throws -> [VersionInfo] { try fresh("versions/\(asset)") { try inner.versions(of: asset) } }
    func version(of asset: String, number: Int) throws -> VersionInfo? {
        try fresh("version/\(asset)/\(number)") { try inner.version(of: asset, number: number) }
    }
    func tags(of asset: String) throws -> [(name: String, version: Int)] { try fresh("tags/\(asset)") { try inner.tags(of: asset) } }
    /// Not kept: asked only by `getxattr user.assetfs.inputs`.
    func lineage(versionID: Int64) throws -> LineageRecord? { try inner.lineage(versionID: versionID) }
    func workspaces(asset: String?) throws -> [WorkspaceInfo] {
        try fresh("workspaces/\(asset ?? "")") { try inner.workspaces(asset: asset) }
    }
    func workspace(asset: String, name: String) throws -> WorkspaceInfo? {
        try fresh("workspace/\(asset)/\(name)") { try inner.workspace(asset: asset, name: name) }
    }

    // MARK: Answers that never change

    func entries(of treeID: Int64) throws -> [TreeEntry] { try listingMemo.value(treeID) { try inner.entries(of: treeID) } }
    func entry(in treeID: Int64, named name: [UInt8]) throws -> TreeEntry? {
        // A directory listed already (readdir, or read-ahead across its files) answers without a query.
        if let listing = listingMemo.cached(treeID) {
            return DirectoryReadAhead.index(of: name, in: listing).map { listing[$0] }
        }
        return try entryMemo.value(EntryKey(tree: treeID, name: name)) { try inner.entry(in: treeID, named: name) }
    }
    func subdirectoryCount(of treeID: Int64) throws -> Int { try subdirectoryMemo.value(treeID) { try inner.subdirectoryCount(of: treeID) } }
    func file(_ id: Int64) throws -> FileInfo { try fileMemo.value(id) { try inner.file(id) } }
    func fileChunks(_ fileID: Int64) throws -> [FileChunk] { try inner.fileChunks(fileID) }
    func fileChunks(_ fileIDs: [Int64]) throws -> [Int64: [FileChunk]] { try inner.fileChunks(fileIDs) }
    func chunkLocation(_ id: ContentHash) throws -> ChunkLocation? { try inner.chunkLocation(id) }

    private func fresh<T>(_ key: String, _ ask: () throws -> T) throws -> T {
        // Times are compared saturating: another thread may have stored a time read after this thread's `now`.
        let now = DispatchTime.now().uptimeNanoseconds
        let known: T? = lock.withLock {
            // Down and asked within the last second: answer from memory without waiting on the catalog again.
            guard downSinceNs != nil, elapsed(since: lastTryNs, now: now) < 1_000_000_000 else { return nil }
            return lastGood[key] as? T
        }
        if let known { return known }
        do {
            let value = try ask()
            let recovered: UInt64? = lock.withLock {
                if lastGood.count >= 4096 { lastGood.removeAll() }
                lastGood[key] = value
                defer { downSinceNs = nil }
                return downSinceNs
            }
            if let since = recovered {
                logger.notice("catalog answers again; the mount serves its current versions",
                              metadata: ["down_for_seconds": "\(Double(elapsed(since: since, now: now)) / 1e9)"])
            }
            return value
        } catch let error as CatalogError where error.code == .transient {
            let (stale, firstFailure): (T?, Bool) = lock.withLock {
                lastTryNs = now
                let first = downSinceNs == nil
                if first { downSinceNs = now }
                return (lastGood[key] as? T, first)
            }
            if firstFailure {
                logger.warning("catalog unreachable; serving the versions known until it answers (asked again every second)",
                               metadata: ["error": "\(error.message)"])
            }
            guard let stale else { throw error }
            return stale
        }
    }

    private func elapsed(since start: UInt64, now: UInt64) -> UInt64 { now > start ? now - start : 0 }
}
