import AssetStore

/// The catalog: assets, versions, trees, files, the chunk index, tags and the audit log.
///
/// SQLite is the embedded implementation (`SQLiteCatalog`); a PostgreSQL catalog for many hosts is meant to be a
/// second conforming type. Every method is safe to call from any thread.
public protocol Catalog: AnyObject, Sendable {
    // Assets and versions
    func assets() throws -> [AssetInfo]
    func versions(of asset: String) throws -> [VersionInfo]
    func version(of asset: String, number: Int) throws -> VersionInfo?
    /// The version a reference names, or an error that names what is missing.
    func resolve(_ ref: Ref) throws -> VersionInfo
    func tags(of asset: String) throws -> [(name: String, version: Int)]

    // Lineage (Documentation/Lineage.md)
    /// The record written with the version whose row id is `versionID`, if it has one.
    func lineage(versionID: Int64) throws -> LineageRecord?
    /// The versions whose records name `asset` v`version` as an input, by name and number.
    func consumers(asset: String, version: Int) throws -> [LineageConsumer]

    // Trees and files
    func tree(_ id: Int64) throws -> TreeInfo
    func entries(of treeID: Int64) throws -> [TreeEntry]
    func entry(in treeID: Int64, named name: [UInt8]) throws -> TreeEntry?
    /// How many entries of the tree are directories (for a directory's link count).
    func subdirectoryCount(of treeID: Int64) throws -> Int
    func file(_ id: Int64) throws -> FileInfo
    func fileChunks(_ fileID: Int64) throws -> [FileChunk]
    /// The chunk lists of many files, in as few queries as the backend allows (a server catalog: one per
    /// batch; the default asks file by file).
    func fileChunks(_ fileIDs: [Int64]) throws -> [Int64: [FileChunk]]
    func chunkLocation(_ id: ContentHash) throws -> ChunkLocation?
    /// The stat cache rows of the files directly inside `directory` (a path in the source, empty for its
    /// root), by name, with each file's whole-file hash; rows whose file is gone (gc) are left out.
    func statCache(asset: String, directory: [UInt8]) throws -> [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)]

    // Writing: a batch is one transaction.
    /// Runs `body` in one transaction. A backend may run `body` more than once (after a serialization failure,
    /// a deadlock or a lost connection, all `.transient`): it must only call the writer and compute its result,
    /// and change nothing outside the transaction; callers apply what it returns once `write` has returned.
    func write<T>(_ body: (CatalogWriter) throws -> T) throws -> T
    /// Which of `hashes` the chunk index holds, in as few queries as the backend allows (an import asks once
    /// per batch of chunks, not once per chunk).
    func existingChunks(_ hashes: [ContentHash]) throws -> Set<ContentHash>

    // Governance
    func setTag(asset: String, name: String, version: Int, user: String) throws -> Int?
    func removeTag(asset: String, name: String, user: String) throws -> Int
    func deleteVersion(asset: String, number: Int, user: String) throws
    func audit(asset: String?) throws -> [AuditEntry]

    // Workspaces (the registry; each workspace's overlay lives in its own WorkspaceMetadata)
    /// `host`: where the workspace's overlay lives (the creating host's name).
    func createWorkspace(asset: String, name: String, baseVersion: Int, user: String, host: String) throws -> WorkspaceInfo
    func workspaces(asset: String?) throws -> [WorkspaceInfo]
    func workspace(asset: String, name: String) throws -> WorkspaceInfo?
    func deleteWorkspace(id: Int64, user: String, reason: String) throws
    /// After `commit --keep`: the workspace now sits on `version`, whose root tree is `treeID`.
    func setWorkspaceBase(id: Int64, version: Int, treeID: Int64) throws

    // Maintenance
    func statistics() throws -> StoreStatistics
    func packs() throws -> [(id: ContentHash, size: UInt64)]
    func allChunks() throws -> [ChunkLocation]
    func chunks(inPack pack: ContentHash) throws -> [ChunkLocation]
    func allFiles() throws -> [FileInfo]
    func filesUsing(chunk: ContentHash) throws -> [Int64]
    /// Deletes every version-unreachable tree, file and chunk row; returns the chunk rows removed.
    func deleteUnreachable() throws -> Int
    /// Points chunks at their copies in a new pack and forgets the old pack, in one transaction.
    func relocate(_ chunks: [ChunkLocation], newPack: ContentHash, newPackSize: UInt64, dropping oldPacks: [ContentHash]) throws
    func forgetPacks(_ ids: [ContentHash]) throws
    /// Packs forgotten by `relocate` or `forgetPacks` whose objects may still exist, with when each was
    /// forgotten: gc deletes an object once its grace period has passed, then `removeDoomedPacks`.
    func doomedPacks() throws -> [DoomedPack]
    func removeDoomedPacks(_ ids: [ContentHash]) throws

    // Sessions: leases that let work on one host see the work of every other host
    /// Opens a session unless a live session of one of the `excluding` kinds exists; the check and the insert
    /// are one transaction, so of two processes that open excluding each other at once exactly one wins.
    func openSession(_ new: NewSession, excluding: Set<SessionKind>) throws -> SessionOpening
    /// Extends a session's lease to `expiresNs`; false when it had expired or was closed (its holder must then
    /// stop, since others may have acted as if it were gone).
    func renewSession(_ id: Int64, expiresNs: Int64) throws -> Bool
    func closeSession(_ id: Int64) throws
    /// Sessions whose lease has not expired; expired ones are removed.
    func liveSessions() throws -> [SessionInfo]

    /// Live bytes per pack (indexed records with their footer entries, plus header and trailer; 0 when no
    /// chunk is indexed), for deciding which packs to rewrite.
    func liveBytesPerPack() throws -> [ContentHash: UInt64]
}

/// Operations allowed inside one write transaction.
///
/// Rules every backend keeps, so that writers on many hosts need no lock of their own: packs, chunks, files and
/// trees are upserted by their hash (a row another writer inserted first is the row; nothing is added twice);
/// a version's number is allocated in the transaction that creates the version (concurrent creators get
/// distinct numbers, or one waits); nothing here reads a value and writes it back changed.
public protocol CatalogWriter {
    /// Records a durable pack and the chunks in it; chunks already indexed elsewhere keep their old location.
    func recordPack(_ id: ContentHash, size: UInt64, chunks: [ChunkLocation]) throws
    func chunkExists(_ id: ContentHash) throws -> Bool
    /// Inserts a file (or finds the identical one) and returns its id.
    func insertFile(hash: ContentHash, size: UInt64, chunks: [(offset: UInt64, chunk: ContentHash)]) throws -> Int64
    func fileID(hash: ContentHash) throws -> Int64?
    /// Inserts (or finds) each file, in order; returns their ids in the same order. A server catalog writes
    /// the whole batch in a few statements; the default inserts one file at a time.
    func insertFiles(_ files: [NewFile]) throws -> [Int64]
    /// Inserts a tree (or finds the identical one) and returns its id.
    func insertTree(hash: ContentHash, entries: [TreeEntry], fileCount: Int, totalSize: UInt64) throws -> Int64
    /// Creates the next version of `asset` (creating the asset if needed); returns its number.
    func createVersion(asset: String, _ version: NewVersion, user: String) throws -> Int
    func latestVersionNumber(asset: String) throws -> Int?
    func replaceStatCache(asset: String, entries: [(path: [UInt8], entry: StatCacheEntry)]) throws
    /// Removes a workspace's registry row (with an audit row), e.g. in the same transaction as its commit.
    func removeWorkspace(id: Int64, user: String, reason: String) throws
}

/// A file for `CatalogWriter.insertFiles`: its whole-file hash, size and chunks by offset.
public struct NewFile: Sendable {
    public var hash: ContentHash
    public var size: UInt64
    public var chunks: [(offset: UInt64, chunk: ContentHash)]

    public init(hash: ContentHash, size: UInt64, chunks: [(offset: UInt64, chunk: ContentHash)]) {
        self.hash = hash
        self.size = size
        self.chunks = chunks
    }
}

extension CatalogWriter {
    public func insertFiles(_ files: [NewFile]) throws -> [Int64] {
        try files.map { try insertFile(hash: $0.hash, size: $0.size, chunks: $0.chunks) }
    }
}

extension Catalog {
    public func fileChunks(_ fileIDs: [Int64]) throws -> [Int64: [FileChunk]] {
        var out: [Int64: [FileChunk]] = [:]
        for id in fileIDs where out[id] == nil { out[id] = try fileChunks(id) }
        return out
    }

    /// Resolves a reference with the catalog's own queries: the same answers and messages from every backend.
    public func resolve(_ ref: Ref) throws -> VersionInfo {
        let all = try assets()
        guard let asset = all.first(where: { $0.name == ref.asset }) else {
            throw CatalogError.noAsset(ref.asset)
        }
        let number: Int
        switch ref.selector {
        case .number(let n): number = n
        case .latest:
            guard let latest = asset.latest else {
                throw CatalogError(.notFound, "asset '\(ref.asset)' has no versions")
            }
            number = latest
        case .tag(let name):
            guard let tag = try tags(of: ref.asset).first(where: { $0.name == name }) else {
                throw CatalogError(.notFound, "asset '\(ref.asset)' has no tag '\(name)' (`assetfs versions \(ref.asset)` shows its tags)")
            }
            number = tag.version
        }
        guard let version = try version(of: ref.asset, number: number) else {
            let latest = asset.latest.map { "latest is v\($0)" } ?? "it has no versions"
            throw CatalogError(.notFound, "asset '\(ref.asset)' has no version v\(number) (\(latest))")
        }
        return version
    }
}
