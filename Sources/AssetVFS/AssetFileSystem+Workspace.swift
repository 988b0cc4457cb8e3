import AssetCatalog
import AssetRepository
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// Writes: allowed inside workspaces, EROFS everywhere else.
extension AssetFileSystem {
    func overlay(_ id: Int64) throws -> WorkspaceOverlay {
        if let existing = overlayLock.withLock({ overlays[id] }) { return existing }
        guard let info = try catalog.workspaces(asset: nil).first(where: { $0.id == id }) else { throw VFSError.notFound }
        let workspace = try WorkspaceManager(repo: repo).open(info)
        let overlay = try WorkspaceOverlay(workspace: workspace, readBase: { [weak self] fileID, offset, count in
            guard let self else { throw VFSError.io }
            return try self.readStored(fileID, offset: offset, count: count)
        }, locate: { [weak self] local in
            guard let self,
                  case .workspace(_, _, let parent, let name)? = self.nodes.node(InodeNumber.of(.workspaceNode(workspace: id, local: local)))
            else { return nil }
            return (try self.resolveWorkspace(id, local, parent: parent, name: name), parent, name)
        })
        return overlayLock.withLock {
            if let raced = overlays[id] { return raced }
            overlays[id] = overlay
            VFSMetrics.workspacesOpen.record(overlays.count)
            return overlay
        }
    }

    /// The current overlay node of a workspace inode the kernel knows. Persisted nodes are read from the
    /// overlay; untouched base nodes are found again from their parent (recorded at lookup), recursively.
    func resolveWorkspace(_ id: Int64, _ local: UInt64, parent: UInt64, name: [UInt8]) throws -> WorkspaceNode {
        let overlay = try self.overlay(id)
        if let n = try overlay.meta.node(local) { return n }
        guard local != Workspace.rootInode,
              case .workspace(_, let pl, let pp, let pn)? = nodes.node(InodeNumber.of(.workspaceNode(workspace: id, local: parent))),
              pl == parent
        else { throw VFSError.notFound }
        let parentNode = try resolveWorkspace(id, pl, parent: pp, name: pn)
        guard let n = try overlay.workspace.lookup(parentNode, name), n.ino == local else { throw VFSError.notFound }
        return n
    }

    /// A range of a stored file through the shared cache (workspace files reading their base).
    func readStored(_ fileID: Int64, offset: UInt64, count: Int) throws -> [UInt8] {
        let file = try baseFiles.value(fileID) {
            OpenFile(fileID: fileID, size: try catalog.file(fileID).size, chunks: try catalog.fileChunks(fileID), path: "file \(fileID)")
        }
        return try read(file, offset: offset, count: count).joined
    }

    /// The workspace a node belongs to, with its current overlay node; EROFS for anything outside workspaces.
    private func workspaceNode(_ inode: UInt64) throws -> (WorkspaceOverlay, WorkspaceNode, Int64, UInt64, [UInt8]) {
        guard let node = nodes.node(inode) else { throw VFSError.notFound }
        guard case .workspace(let id, let local, let parent, let name) = node else { throw VFSError.readOnly }
        let overlay = try self.overlay(id)
        return (overlay, try resolveWorkspace(id, local, parent: parent, name: name), id, parent, name)
    }

    private func entry(_ id: Int64, _ overlay: WorkspaceOverlay, _ n: WorkspaceNode, parent: UInt64, name: [UInt8]) throws -> Entry {
        let node = Node.workspace(id: id, local: n.ino, parent: parent, name: name)
        _ = try nodes.remember(node)
        return try entry(for: node)
    }

    public func create(parent: UInt64, name: [UInt8], mode: UInt32, flags: Int32, uid: UInt32, gid: UInt32) throws -> (Entry, UInt64) {
        try Self.checkName(name)
        let (overlay, dir, id, grandparent, dirName) = try workspaceNode(parent)
        let n = try overlay.create(in: dir, parentName: dirName, grandparent: grandparent, name: name, kind: .file,
                                   mode: mode, uid: uid, gid: gid)
        let e = try entry(id, overlay, n, parent: dir.ino, name: name)
        let handle = try overlay.open(n, parent: dir.ino, name: name, flags: (flags & ~O_TRUNC) | O_RDWR)
        return (e, handles.add(.workspaceFile(overlay, handle)))
    }

    public func makeDirectory(parent: UInt64, name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32) throws -> Entry {
        try Self.checkName(name)
        let (overlay, dir, id, grandparent, dirName) = try workspaceNode(parent)
        let n = try overlay.create(in: dir, parentName: dirName, grandparent: grandparent, name: name, kind: .directory,
                                   mode: mode, uid: uid, gid: gid)
        return try entry(id, overlay, n, parent: dir.ino, name: name)
    }

    /// A FIFO, socket or device node (`mode` carries the type bits); its I/O is the kernel's.
    public func makeSpecial(parent: UInt64, name: [UInt8], mode: UInt32, rdev: UInt64, uid: UInt32, gid: UInt32) throws -> Entry {
        try Self.checkName(name)
        guard let kind = EntryKind(fileType: mode), kind.isSpecial else { throw VFSError.invalid }
        let (overlay, dir, id, grandparent, dirName) = try workspaceNode(parent)
        let n = try overlay.create(in: dir, parentName: dirName, grandparent: grandparent, name: name, kind: kind,
                                   mode: mode, uid: uid, gid: gid, rdev: rdev)
        return try entry(id, overlay, n, parent: dir.ino, name: name)
    }

    public func makeSymlink(parent: UInt64, name: [UInt8], target: [UInt8], uid: UInt32, gid: UInt32) throws -> Entry {
        try Self.checkName(name)
        let (overlay, dir, id, grandparent, dirName) = try workspaceNode(parent)
        let n = try overlay.create(in: dir, parentName: dirName, grandparent: grandparent, name: name, kind: .symlink,
                                   mode: 0o777, uid: uid, gid: gid, target: target)
        return try entry(id, overlay, n, parent: dir.ino, name: name)
    }

    public func makeLink(_ inode: UInt64, newParent: UInt64, newName: [UInt8]) throws -> Entry {
        try Self.checkName(newName)
        let (overlay, target, id, targetParent, targetName) = try workspaceNode(inode)
        let (overlay2, dir, id2, grandparent, dirName) = try workspaceNode(newParent)
        guard id == id2, overlay === overlay2 else { throw VFSError(EXDEV) }
        let n = try overlay.link(target, targetParent: targetParent, targetName: targetName, to: dir, parentName: dirName,
                                 grandparent: grandparent, name: newName)
        return try entry(id, overlay, n, parent: dir.ino, name: newName)
    }

    public func remove(parent: UInt64, name: [UInt8], directory: Bool) throws {
        let (overlay, dir, _, grandparent, dirName) = try workspaceNode(parent)
        try overlay.remove(from: dir, parentName: dirName, grandparent: grandparent, name: name, directory: directory)
    }

    public func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: UInt32) throws {
        try Self.checkName(newName)
        guard let from = nodes.node(parent), let to = nodes.node(newParent) else { throw VFSError.notFound }
        guard case .workspace(let id, _, _, _) = from else { throw VFSError.readOnly }
        guard case .workspace(let id2, _, _, _) = to else {
            // Into a version or another asset: like crossing file systems.
            if case .versionRoot = to { throw VFSError.readOnly }
            throw VFSError(EXDEV)
        }
        guard id == id2 else { throw VFSError(EXDEV) }
        // RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2); RENAME_WHITEOUT (for overlay file systems) is not.
        guard flags & ~UInt32(3) == 0, flags != 3 else { throw VFSError.invalid }
        let (overlay, source, _, grandparent, sourceName) = try workspaceNode(parent)
        let (_, target, _, newGrandparent, targetName) = try workspaceNode(newParent)
        if flags & 2 != 0 {
            return try overlay.exchange(source, parentName: sourceName, grandparent: grandparent, name: name,
                                        with: target, newParentName: targetName, newGrandparent: newGrandparent, newName: newName)
        }
        try overlay.rename(from: source, parentName: sourceName, grandparent: grandparent, name: name,
                           to: target, newParentName: targetName, newGrandparent: newGrandparent, newName: newName,
                           noReplace: flags & 1 != 0, ancestorsOfTarget: try ancestors(id, of: newParent))
    }

    /// Workspace inode numbers of the directories above (and including) `inode`, from the kernel's view.
    private func ancestors(_ id: Int64, of inode: UInt64) throws -> [UInt64] {
        var out: [UInt64] = []
        var current = nodes.node(inode)
        while case .workspace(_, let local, let parent, _)? = current, local != Workspace.rootInode, out.count < 100_000 {
            out.append(local)
            current = nodes.node(InodeNumber.of(.workspaceNode(workspace: id, local: parent)))
        }
        return out
    }

    public func setAttributes(_ inode: UInt64, _ changes: AttributeChanges) throws -> Entry {
        let (overlay, n, id, parent, name) = try workspaceNode(inode)
        let updated = try overlay.setAttributes(n, parent: parent, name: name, changes)
        return try entry(for: .workspace(id: id, local: updated.ino, parent: parent, name: name))
    }

    public func write(_ handle: UInt64, offset: UInt64, data: UnsafeRawBufferPointer) throws -> Int {
        guard case .workspaceFile(let overlay, let id)? = handles.get(handle) else { throw VFSError.badHandle }
        return try overlay.write(id, offset: offset, data: data)
    }

    /// fallocate(2) on an open workspace file (modes 0 and FALLOC_FL_KEEP_SIZE; others answer EOPNOTSUPP).
    public func allocate(_ handle: UInt64, mode: Int32, offset: UInt64, length: UInt64) throws {
        guard case .workspaceFile(let overlay, let id)? = handles.get(handle) else { throw VFSError.badHandle }
        try overlay.allocate(id, mode: mode, offset: offset, length: length)
    }

    public func flush(_ handle: UInt64, durable: Bool) throws {
        guard case .workspaceFile(let overlay, let id)? = handles.get(handle) else { return }
        try overlay.flush(id, durable: durable)
    }

    public func setExtendedAttribute(_ inode: UInt64, name: String, value: [UInt8], flags: Int32) throws {
        let (overlay, n, _, parent, nodeName) = try workspaceNode(inode)
        guard Self.keepsAttribute(name) else { throw VFSError(EOPNOTSUPP) }
        try overlay.setXattr(n, parent: parent, name: nodeName, attribute: Array(name.utf8), value: value, flags: flags)
    }

    public func removeExtendedAttribute(_ inode: UInt64, name: String) throws {
        let (overlay, n, _, parent, nodeName) = try workspaceNode(inode)
        try overlay.removeXattr(n, parent: parent, name: nodeName, attribute: Array(name.utf8))
    }

    /// EROFS for version paths, ENOENT for unknown inodes: the answer to writes the VFS does not support there.
    public func refuseWrite(_ inode: UInt64) throws -> Never {
        guard nodes.node(inode) != nil else { throw VFSError.notFound }
        throw VFSError.readOnly
    }
}

/// A small bounded memo (base files of workspace files, by file id).
final class BoundedMemo<Key: Hashable, Value>: @unchecked Sendable {
    private let lock = Lock()
    // Protected by `lock`.
    private var values: [Key: Value] = [:]
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    func value(_ key: Key, make: () throws -> Value) throws -> Value {
        if let v = lock.withLock({ values[key] }) { return v }
        let v = try make()
        set(key, v)
        return v
    }

    func remove(_ key: Key) { _ = lock.withLock { values.removeValue(forKey: key) } }

    /// Keeps `value` for `key` (made elsewhere, e.g. many at once).
    func set(_ key: Key, _ value: Value) {
        lock.withLock {
            if values.count >= limit { values.removeAll() }
            values[key] = value
        }
    }

    /// The value if it is held, without making it.
    func cached(_ key: Key) -> Value? { lock.withLock { values[key] } }
}
