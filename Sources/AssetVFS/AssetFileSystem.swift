import AssetCatalog
import AssetRepository
import AssetStore
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The mounted namespace: `/<asset>/v<N>/...`, `/<asset>/latest`, `/<asset>/<tag>`.
///
/// Speaks errno (`VFSError`) and knows nothing of FUSE; `AssetFUSE` translates kernel requests into these
/// calls. Directory contents are loaded lazily, one directory at a time, from the catalog; the asset level is
/// re-read on every call so new versions and tag moves appear without remounting.
public final class AssetFileSystem: @unchecked Sendable {
    public let repo: Repository
    /// The catalog as the mount asks it: immutable answers remembered, the last answers served while it is down.
    let catalog: ServingCatalog
    let nodes: NodeTable
    public let cache: ChunkCache
    let logger: Logger
    let handles = HandleTable()
    /// The daemon's own ids: synthetic directories belong to whoever mounted.
    let ownerUID = getuid()
    let ownerGID = getgid()
    let mountedNs = Clock.nowNanoseconds()
    let overlayLock = Lock()
    // Protected by `overlayLock`: open workspace overlays by workspace id.
    var overlays: [Int64: WorkspaceOverlay] = [:]
    let baseFiles = BoundedMemo<Int64, OpenFile>(limit: 1024)
    let chunkLists = BoundedMemo<Int64, [FileChunk]>(limit: 4096)
    /// Version files read without an open handle (versions-only mounts), by inode: their read pattern.
    let handlelessFiles = BoundedMemo<UInt64, OpenFile>(limit: 256)
    /// Fetches the next files of a directory read in name order (object stores; off for a local store).
    let directoryReadAhead: DirectoryReadAhead
    /// The threads read-ahead runs on (see FetchPool).
    let fetchPool: FetchPool
    /// Read failures are logged at most 10 lines per 10 s (a dead server must not fill the disk).
    let readFailureLog = LogLimiter()
    /// Serve versions only: no `workspaces` directories, and version files are read by inode, so the kernel
    /// can open them without asking (see `servesOpensInKernel`).
    public let versionsOnly: Bool
    /// Whether the kernel opens version files by itself (see `servesOpensInKernel`).
    let kernelOpens: Bool
    /// Lineage recording (nil with `--no-lineage`): which jobs read which version files, and wrote where.
    public let lineage: LineageRecorder?
    /// Writes writer jobs' new observations to their workspaces every second.
    private let lineageTimer: DispatchSourceTimer?

    /// `lineage`: record lineage, naming jobs with `inspector` (Documentation/Lineage.md).
    /// `lineageSeesOpens`: on a versions-only mount, keep opens going to the daemon so lineage sees every one.
    public init(repo: Repository, cacheBytes: Int, logger: Logger, versionsOnly: Bool = false, lineage: Bool = false,
                lineageSeesOpens: Bool = false, inspector: ProcessInspector = ProcfsInspector()) {
        self.kernelOpens = versionsOnly && !(lineage && lineageSeesOpens)
        self.nodes = NodeTable(filesPerVersion: lineage)
        self.repo = repo
        self.catalog = ServingCatalog(repo.catalog, logger: logger)
        // `cacheBytes` is all the memory for bytes read: segments of packs being read in order come out of it.
        let segments = repo.reader.segments?.budgetBytes ?? 0
        self.cache = ChunkCache(capacity: max(cacheBytes / 2, cacheBytes - segments))
        self.directoryReadAhead = DirectoryReadAhead(depth: repo.readAheadFiles)
        self.fetchPool = FetchPool(width: repo.fetchThreads)
        self.logger = logger
        self.versionsOnly = versionsOnly
        guard lineage else {
            self.lineage = nil
            self.lineageTimer = nil
            return
        }
        let overlays = WeakBox<AssetFileSystem>()
        let recorder = LineageRecorder(inspector: inspector, host: ProcessInfo.processInfo.hostName, store: repo.root,
                                       logger: logger) { id, rows in
            guard let fs = overlays.value else { return }
            try fs.overlay(id).meta.saveLineage(rows)
        }
        self.lineage = recorder
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler { [weak recorder] in recorder?.flush() }
        self.lineageTimer = timer
        overlays.value = self
        timer.resume()
    }

    deinit { lineageTimer?.cancel() }

    /// Writes what lineage holds for writer jobs now (commit asks, through the mount's socket; and at unmount).
    public func flushLineage() { lineage?.flush() }

    /// A change to `inode` by `caller`: inside a workspace, the caller's job becomes a writer of it.
    public func noteChange(_ inode: UInt64, caller: Caller) {
        guard let lineage, case .workspace(let id, _, _, _)? = nodes.node(inode) else { return }
        lineage.wrote(caller, workspace: id)
    }

    // MARK: Names

    /// NAME_MAX, as statfs reports it: a longer name answers ENAMETOOLONG, as on ext4 (FUSE passes names of up
    /// to 1,024 bytes on to the file system).
    static let nameMax = 255

    static func checkName(_ name: [UInt8]) throws {
        if name.count > nameMax { throw VFSError(ENAMETOOLONG) }
    }

    public func lookup(parent: UInt64, name: [UInt8]) throws -> Entry {
        try Self.checkName(name)
        guard let parentNode = nodes.node(parent) else { throw VFSError.notFound }
        guard let child = try child(of: parentNode, named: name) else { throw VFSError.notFound }
        _ = try nodes.remember(child)
        return try entry(for: child)
    }

    public func forget(_ inode: UInt64, count: UInt64) { nodes.forget(inode, count: count) }

    public func attributes(_ inode: UInt64) throws -> Entry {
        guard let node = nodes.node(inode) else { throw VFSError.notFound }
        return try entry(for: node)
    }

    public func readlink(_ inode: UInt64) throws -> [UInt8] {
        switch nodes.node(inode) {
        case .assetLink(let asset, let name)?:
            guard let target = try linkTarget(asset: asset, name: name) else { throw VFSError.notFound }
            return Array("v\(target)".utf8)
        case .symlink(_, _, _, let entry)?:
            return entry.target ?? []
        case .workspace(let id, let local, let parent, let name)?:
            let n = try resolveWorkspace(id, local, parent: parent, name: name)
            guard n.kind == .symlink else { throw VFSError.invalid }
            try? overlay(id).noteAccess(of: n)  // Best effort, as for reads.
            return n.target ?? []
        case nil:
            throw VFSError.notFound
        default:
            throw VFSError.invalid
        }
    }

    /// The node `name` names inside `parent`, or nil.
    func child(of parent: Node, named name: [UInt8]) throws -> Node? {
        let text = String(decoding: name, as: UTF8.self)
        switch parent {
        case .root:
            guard Names.isValid(text), try catalog.assets().contains(where: { $0.name == text }) else { return nil }
            return .asset(text)
        case .asset(let asset):
            if text == "workspaces" { return versionsOnly ? nil : .workspaces(asset: asset) }
            if case .number(let n)? = try? Ref.parseSelectorPublic(text), Array("v\(n)".utf8) == name {
                guard let v = try catalog.version(of: asset, number: n) else { return nil }
                return .versionRoot(asset: asset, version: n, treeID: v.rootTreeID, rootHash: v.rootHash, createdNs: v.createdNs)
            }
            guard try linkTarget(asset: asset, name: text) != nil else { return nil }
            return .assetLink(asset: asset, name: text)
        case .versionRoot(let asset, let version, let treeID, _, _):
            return try versionChild(asset: asset, version: version, treeID: treeID, prefix: [], name: name)
        case .directory(let asset, let version, let path, let entry, _):
            guard let sub = entry.subtreeID else { return nil }
            return try versionChild(asset: asset, version: version, treeID: sub, prefix: path, name: name)
        case .workspaces(let asset):
            guard Names.isValid(text), let info = try catalog.workspace(asset: asset, name: text) else { return nil }
            return .workspace(id: info.id, local: Workspace.rootInode, parent: Workspace.rootInode, name: [])
        case .workspace(let id, let local, let parent, let parentName):
            let overlay = try self.overlay(id)
            let dir = try resolveWorkspace(id, local, parent: parent, name: parentName)
            let child = try overlay.lookup(dir, name)
            return .workspace(id: id, local: child.ino, parent: local, name: name)
        case .file, .symlink, .assetLink:
            throw VFSError.notDirectory
        }
    }

    private func versionChild(asset: String, version: Int, treeID: Int64, prefix: [UInt8], name: [UInt8]) throws -> Node? {
        guard let entry = try catalog.entry(in: treeID, named: name) else { return nil }
        if entry.kind == .file { directoryReadAhead.noteLookup(treeID: treeID, name: name, in: self) }
        return try node(for: entry, asset: asset, version: version, path: prefix.isEmpty ? name : prefix + [0x2F] + name)
    }

    func node(for entry: TreeEntry, asset: String, version: Int, path: [UInt8]) throws -> Node {
        switch entry.kind {
        case .file: return .file(asset: asset, version: version, path: path, entry: entry)
        case .symlink: return .symlink(asset: asset, version: version, path: path, entry: entry)
        case .fifo, .socket, .characterDevice, .blockDevice: throw VFSError.io  // Never in a version.
        case .directory:
            let subdirs = try entry.subtreeID.map { try catalog.subdirectoryCount(of: $0) } ?? 0
            return .directory(asset: asset, version: version, path: path, entry: entry, subdirectories: subdirs)
        }
    }

    /// The version `latest` or a tag points to now; nil if there is no such link.
    func linkTarget(asset: String, name: String) throws -> Int? {
        if name == "latest" { return try catalog.assets().first(where: { $0.name == asset })?.latest }
        guard Names.tagProblem(name) == nil else { return nil }
        return try catalog.tags(of: asset).first(where: { $0.name == name })?.version
    }

    func entry(for node: Node) throws -> Entry {
        Entry(attributes: try attributes(of: node), cache: node.isImmutable ? .immutable : .changing)
    }

    func attributes(of node: Node) throws -> Attributes {
        let inode = nodes.inode(of: node)
        switch node {
        case .root:
            let count = try catalog.assets().count
            return Attributes(inode: inode, type: .directory, permissions: 0o755, linkCount: UInt32(2 + count),
                              uid: ownerUID, gid: ownerGID, size: 0, mtimeNs: mountedNs)
        case .asset(let asset):
            let versions = try catalog.versions(of: asset)
            // Subdirectories: one per version, plus `workspaces` unless versions only.
            let subdirectories = versions.count + (versionsOnly ? 0 : 1)
            return Attributes(inode: inode, type: .directory, permissions: 0o755, linkCount: UInt32(2 + subdirectories),
                              uid: ownerUID, gid: ownerGID, size: 0, mtimeNs: versions.last?.createdNs ?? mountedNs)
        case .assetLink(let asset, let name):
            guard let target = try linkTarget(asset: asset, name: name) else { throw VFSError.notFound }
            return Attributes(inode: inode, type: .symlink, permissions: 0o777, linkCount: 1, uid: ownerUID, gid: ownerGID,
                              size: UInt64("v\(target)".utf8.count), mtimeNs: mountedNs)
        case .versionRoot(_, _, let treeID, _, let created):
            return Attributes(inode: inode, type: .directory, permissions: 0o555,
                              linkCount: UInt32(2 + (try catalog.subdirectoryCount(of: treeID))),
                              uid: ownerUID, gid: ownerGID, size: 0, mtimeNs: created)
        case .directory(_, _, _, let e, let subdirs):
            return Attributes(inode: inode, type: .directory, permissions: e.mode, linkCount: UInt32(2 + subdirs),
                              uid: e.uid, gid: e.gid, size: 0, mtimeNs: e.mtimeNs)
        case .file(_, _, _, let e):
            return Attributes(inode: inode, type: .file, permissions: e.mode, linkCount: 1, uid: e.uid, gid: e.gid,
                              size: e.size, mtimeNs: e.mtimeNs)
        case .symlink(_, _, _, let e):
            return Attributes(inode: inode, type: .symlink, permissions: 0o777, linkCount: 1, uid: e.uid, gid: e.gid,
                              size: UInt64(e.target?.count ?? 0), mtimeNs: e.mtimeNs)
        case .workspaces(let asset):
            let count = try catalog.workspaces(asset: asset).count
            return Attributes(inode: inode, type: .directory, permissions: 0o755, linkCount: UInt32(2 + count),
                              uid: ownerUID, gid: ownerGID, size: 0, mtimeNs: mountedNs)
        case .workspace(let id, let local, let parent, let name):
            let overlay = try self.overlay(id)
            var a = try overlay.attributes(try resolveWorkspace(id, local, parent: parent, name: name))
            a.inode = inode
            return a
        }
    }

    // MARK: Directories

    /// Snapshot of a directory's entries for one open handle (offsets index into it).
    public func openDirectory(_ inode: UInt64) throws -> UInt64 {
        guard let node = nodes.node(inode) else { throw VFSError.notFound }
        var items: [(name: [UInt8], node: Node)] = []
        switch node {
        case .root:
            items = try catalog.assets().map { (Array($0.name.utf8), Node.asset($0.name)) }
        case .asset(let asset):
            for v in try catalog.versions(of: asset) {
                items.append((Array("v\(v.number)".utf8),
                              .versionRoot(asset: asset, version: v.number, treeID: v.rootTreeID, rootHash: v.rootHash, createdNs: v.createdNs)))
            }
            if try linkTarget(asset: asset, name: "latest") != nil { items.append((Array("latest".utf8), .assetLink(asset: asset, name: "latest"))) }
            if !versionsOnly { items.append((Array("workspaces".utf8), .workspaces(asset: asset))) }
            for tag in try catalog.tags(of: asset) { items.append((Array(tag.name.utf8), .assetLink(asset: asset, name: tag.name))) }
        case .versionRoot(let asset, let version, let treeID, _, _):
            items = try catalog.entries(of: treeID).map { ($0.name, try self.node(for: $0, asset: asset, version: version, path: $0.name)) }
        case .directory(let asset, let version, let path, let entry, _):
            items = try catalog.entries(of: entry.subtreeID ?? -1).map {
                ($0.name, try self.node(for: $0, asset: asset, version: version, path: path + [0x2F] + $0.name))
            }
        case .workspaces(let asset):
            items = try catalog.workspaces(asset: asset).map {
                (Array($0.name.utf8), .workspace(id: $0.id, local: Workspace.rootInode, parent: Workspace.rootInode, name: []))
            }
        case .workspace(let id, let local, let parent, let name):
            let overlay = try self.overlay(id)
            let dir = try resolveWorkspace(id, local, parent: parent, name: name)
            guard dir.kind == .directory else { throw VFSError.notDirectory }
            items = try overlay.workspace.listing(dir).map { ($0.name, .workspace(id: id, local: $0.node.ino, parent: local, name: $0.name)) }
        case .file, .symlink, .assetLink:
            throw VFSError.notDirectory
        }
        return handles.add(.directory(items))
    }

    /// At most `limit` entries from `offset` on; each carries its attributes for readdirplus. The limit keeps
    /// listing a 100,000-entry directory linear: only what can fit in one kernel buffer is computed.
    public func readDirectory(_ handle: UInt64, from offset: Int, limit: Int) throws -> [DirectoryItem] {
        guard case .directory(let items)? = handles.get(handle) else { throw VFSError.badHandle }
        guard offset < items.count, limit > 0 else { return [] }
        return try items[offset..<min(items.count, offset + limit)].map { DirectoryItem(name: $0.name, entry: try entry(for: $0.node)) }
    }

    /// The kernel now holds a reference to the entry at `index` (readdirplus): count it like a lookup.
    public func directoryEntrySent(_ handle: UInt64, index: Int) throws {
        guard case .directory(let items)? = handles.get(handle), index < items.count else { throw VFSError.badHandle }
        _ = try nodes.remember(items[index].node)
    }

    public func releaseDirectory(_ handle: UInt64) { handles.remove(handle) }

    // MARK: Extended attributes

    public static let sha256Attribute = "user.assetfs.sha256"
    public static let versionAttribute = "user.assetfs.version"
    public static let rootAttribute = "user.assetfs.root"
    /// The version's inputs (Documentation/Lineage.md), compact JSON; `[]` when none is recorded.
    public static let inputsAttribute = "user.assetfs.inputs"
    /// The version's metadata, compact JSON with numbers as numbers (what `show --json` prints as `meta`).
    public static let metaAttribute = "user.assetfs.meta"

    /// `uid`: the caller's. `trusted.*` names are listed to root only, as ext4 lists them only to callers with
    /// CAP_SYS_ADMIN (the kernel filters nothing in a FUSE file system's list).
    public func extendedAttributeNames(_ inode: UInt64, uid: UInt32 = 0) throws -> [String] {
        switch nodes.node(inode) {
        case .file?: return [Self.sha256Attribute]
        case .versionRoot?: return [Self.versionAttribute, Self.rootAttribute, Self.inputsAttribute, Self.metaAttribute]
        case .workspace(let id, let local, let parent, let name)?:
            let overlay = try self.overlay(id)
            let n = try resolveWorkspace(id, local, parent: parent, name: name)
            return try overlay.meta.xattrNames(n.ino).map { String(decoding: $0, as: UTF8.self) }
                .filter { uid == 0 || !$0.hasPrefix("trusted.") }
        case nil: throw VFSError.notFound
        default: return []
        }
    }

    /// The extended attributes a workspace keeps: `user.*`, and `trusted.*` (the kernel lets only
    /// CAP_SYS_ADMIN callers set or read those, before a request reaches the daemon). Not `security.*` (SELinux
    /// labels) or `system.*` (ACLs).
    static func keepsAttribute(_ name: String) -> Bool { name.hasPrefix("user.") || name.hasPrefix("trusted.") }

    public func extendedAttribute(_ inode: UInt64, name: String) throws -> [UInt8] {
        // Only the user and trusted namespaces exist here. ENOTSUP (not ENODATA) lets tools like `ls -l`
        // remember that this file system has no SELinux labels or ACLs instead of asking again for every file.
        guard Self.keepsAttribute(name) else { throw VFSError(EOPNOTSUPP) }
        switch (nodes.node(inode), name) {
        case (.file(_, _, _, let e)?, Self.sha256Attribute):
            return Array(try catalog.file(e.fileID ?? -1).hash.hex.utf8)
        case (.versionRoot(let asset, let version, _, _, _)?, Self.versionAttribute):
            return Array("\(asset)@v\(version)".utf8)
        case (.versionRoot(let asset, let version, _, _, _)?, Self.metaAttribute):
            guard let info = try catalog.version(of: asset, number: version) else { throw VFSError.notFound }
            return Array(CompactJSON.string(info.typedMeta).utf8)
        case (.versionRoot(let asset, let version, _, _, _)?, Self.inputsAttribute):
            guard let info = try catalog.version(of: asset, number: version) else { throw VFSError.notFound }
            return Array((try catalog.lineage(versionID: info.id) ?? LineageRecord()).summaryJSON.utf8)
        case (.versionRoot(_, _, _, let root, _)?, Self.rootAttribute):
            return Array(root.hex.utf8)
        case (.workspace(let id, let local, let parent, let nodeName)?, _):
            let overlay = try self.overlay(id)
            let n = try resolveWorkspace(id, local, parent: parent, name: nodeName)
            guard let value = try overlay.meta.xattr(n.ino, name: Array(name.utf8)) else { throw VFSError.noAttribute }
            return value
        case (nil, _):
            throw VFSError.notFound
        default:
            throw VFSError.noAttribute
        }
    }

    // MARK: File system

    public struct Usage: Sendable {
        public var blockSize: UInt64
        public var blocks: UInt64
        public var freeBlocks: UInt64
        public var availableBlocks: UInt64
        public var files: UInt64
        public var freeFiles: UInt64
    }

    /// The store's disk as `df` should see it: writes into workspaces land there.
    public func usage() -> Usage {
        var st = statvfs()
        guard statvfs(repo.hostDirectory, &st) == 0 else { return Usage(blockSize: 4096, blocks: 0, freeBlocks: 0, availableBlocks: 0, files: 0, freeFiles: 0) }
        return Usage(blockSize: UInt64(st.f_frsize), blocks: UInt64(st.f_blocks), freeBlocks: UInt64(st.f_bfree),
                     availableBlocks: UInt64(st.f_bavail), files: UInt64(st.f_files), freeFiles: UInt64(st.f_ffree))
    }


    public var liveInodes: Int { nodes.count }
}

/// A weak reference that can be filled in after the closure holding it was made.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    private let lock = Lock()
    private weak var stored: T?  // Protected by `lock`.
    var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
