import AssetCatalog
import AssetRepository
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// POSIX semantics of one writable workspace, over `Workspace` (the persistent overlay).
///
/// Every change runs under `lock` (one change at a time per workspace), inside the workspace's shared flock
/// (so `commit` sees a consistent snapshot) and inside one metadata transaction (so a crash leaves either the
/// whole change or none of it). Reads take no lock beyond the metadata's.
final class WorkspaceOverlay: @unchecked Sendable {
    let workspace: Workspace
    /// Reads a range of a stored file through the mount's shared chunk cache.
    let readBase: (Int64, UInt64, Int) throws -> [UInt8]
    let lock = Lock(recursive: true)
    /// Held shared for as long as this daemon serves the workspace, so commit knows open-writer rows are live.
    private let daemonLock: StoreLock
    // Protected by `lock`: open handles and per-inode counts of writers and of all opens.
    var handles: [UInt64: OverlayHandle] = [:]
    var nextHandle: UInt64 = 1
    var writers: [UInt64: Int] = [:]
    var opens: [UInt64: Int] = [:]
    let granularity: UInt64

    /// Where the kernel saw a workspace inode: its current node, its parent's inode and its name there.
    /// Supplied by the mount (which records each lookup); used to persist untouched ancestors of a change.
    let locate: (UInt64) throws -> (node: WorkspaceNode, parent: UInt64, name: [UInt8])?

    init(workspace: Workspace, readBase: @escaping (Int64, UInt64, Int) throws -> [UInt8],
         locate: @escaping (UInt64) throws -> (node: WorkspaceNode, parent: UInt64, name: [UInt8])?) throws {
        self.workspace = workspace
        self.readBase = readBase
        self.locate = locate
        daemonLock = try WorkspaceLocks.daemon(workspace.directory)
        var st = statvfs()
        granularity = statvfs(workspace.directory, &st) == 0 ? max(DeltaFile.blockSize, UInt64(st.f_bsize)) : DeltaFile.blockSize
        try workspace.meta.clearOpenWriters()
        // Files unlinked while open when a previous daemon stopped: nobody can reach them any more.
        for node in try workspace.meta.allNodes() where node.nlink == 0 && node.kind != .directory {
            try workspace.meta.transaction { try workspace.meta.deleteNode(node.ino) }
            unlink(workspace.deltaPath(node.ino))
        }
    }

    deinit { daemonLock.release() }

    var meta: WorkspaceMetadata { workspace.meta }
    static func now() -> Int64 { Clock.nowNanoseconds() }

    // MARK: Resolution

    func lookup(_ dir: WorkspaceNode, _ name: [UInt8]) throws -> WorkspaceNode {
        guard dir.kind == .directory else { throw VFSError.notDirectory }
        guard let n = try workspace.lookup(dir, name) else { throw VFSError.notFound }
        return n
    }

    func attributes(_ n: WorkspaceNode) throws -> Attributes {
        let size = try workspace.size(of: n)
        var nlink = n.nlink
        let persisted = try meta.node(n.ino) != nil
        if n.kind == .directory && !persisted {
            nlink = UInt32(2 + (try n.baseTreeID.map { try workspace.repo.catalog.subdirectoryCount(of: $0) } ?? 0))
        }
        var a = Attributes(inode: n.ino, type: NodeType(n.kind), permissions: n.mode, linkCount: nlink, uid: n.uid, gid: n.gid,
                           size: n.kind == .symlink ? UInt64(n.target?.count ?? 0) : size, mtimeNs: n.mtimeNs)
        a.rdev = n.rdev
        a.atimeNs = n.atimeNs
        a.ctimeNs = n.ctimeNs
        return a
    }

    // MARK: Changes

    /// Runs one change: serialised, inside the commit lock and one metadata transaction.
    func change<T>(_ body: () throws -> T) throws -> T {
        try lock.withLock {
            let flock = try WorkspaceLocks.shared(workspace.directory)
            defer { flock.release() }
            do {
                return try meta.transaction(body)
            } catch let error as StoreError {
                throw VFSError(error)
            } catch let error as CatalogError where error.isNoSpace {
                throw VFSError(ENOSPC)
            }
        }
    }

    /// Persists a node (and, recursively, the directories above it) so it can be changed or moved. Must run
    /// inside `change`; `parent` and `name` say where the node is.
    func materialize(_ n: WorkspaceNode, parent: UInt64, name: [UInt8]) throws -> WorkspaceNode {
        if let persisted = try meta.nodeInTransaction(n.ino) { return persisted }
        // Commit and status walk down from the root through persisted directories only: every directory
        // above a change must be persisted too, or the change would be invisible to them.
        try ensurePersisted(parent)
        var node = n
        if node.kind == .directory {
            node.nlink = UInt32(2 + (try node.baseTreeID.map { try workspace.repo.catalog.subdirectoryCount(of: $0) } ?? 0))
        }
        try meta.put(node)
        try meta.setDirent(parent: parent, name: name, child: node.ino)
        return node
    }

    /// Persists the directory `ino` (and its ancestors) if it is still an untouched base directory.
    func ensurePersisted(_ ino: UInt64) throws {
        if ino == Workspace.rootInode { return }
        if try meta.nodeInTransaction(ino) != nil { return }
        guard let seen = try locate(ino) else { throw VFSError.notFound }
        _ = try materialize(seen.node, parent: seen.parent, name: seen.name)
    }

    func requireDirectory(_ dir: WorkspaceNode) throws {
        guard dir.kind == .directory else { throw VFSError.notDirectory }
    }

    func touch(_ dir: inout WorkspaceNode) throws {
        let now = Self.now()
        dir.mtimeNs = now
        dir.ctimeNs = now
        try meta.put(dir)
    }

    /// The child (override or base) inside a transaction, or nil.
    func childInTransaction(_ dir: WorkspaceNode, _ name: [UInt8]) throws -> WorkspaceNode? {
        if let child = try meta.direntInTransaction(parent: dir.ino, name: name) {
            return child == WorkspaceMetadata.whiteout ? nil : try meta.nodeInTransaction(child)
        }
        guard let tree = dir.baseTreeID, let entry = try workspace.repo.catalog.entry(in: tree, named: name) else { return nil }
        return workspace.synthesize(entry, parent: dir.ino)
    }

    /// Removes `name` from `dir`: a whiteout if the base has it, otherwise just the override.
    func removeName(_ dir: WorkspaceNode, _ name: [UInt8]) throws {
        if let tree = dir.baseTreeID, try workspace.repo.catalog.entry(in: tree, named: name) != nil {
            try meta.setDirent(parent: dir.ino, name: name, child: WorkspaceMetadata.whiteout)
        } else {
            try meta.removeDirent(parent: dir.ino, name: name)
        }
    }

    /// Drops one link to `n`; deletes it when no name and no open handle is left.
    func dropLink(_ n: WorkspaceNode) throws {
        guard var node = try meta.nodeInTransaction(n.ino) else {
            // An untouched base node: the whiteout hides it; if it is open, keep a nameless row so fstat and
            // reads through the open handle still find it.
            if (opens[n.ino] ?? 0) > 0 {
                var orphan = n
                orphan.nlink = 0
                try meta.put(orphan)
            }
            return
        }
        node.nlink = node.kind == .directory ? 0 : max(node.nlink, 1) - 1
        node.ctimeNs = Self.now()
        if node.nlink == 0 && (opens[node.ino] ?? 0) == 0 {
            try meta.deleteNode(node.ino)
            unlink(workspace.deltaPath(node.ino))
        } else {
            try meta.put(node)
        }
    }

    func newNode(kind: EntryKind, mode: UInt32, uid: UInt32, gid: UInt32, target: [UInt8]? = nil, rdev: UInt64 = 0) throws -> WorkspaceNode {
        let now = Self.now()
        let ino = try meta.allocateInode()
        return WorkspaceNode(ino: ino, kind: kind, mode: mode & 0o7777, uid: uid, gid: gid, mtimeNs: now, ctimeNs: now,
                             size: UInt64(target?.count ?? 0), target: target, hasDelta: kind == .file,
                             nlink: kind == .directory ? 2 : 1, rdev: kind == .characterDevice || kind == .blockDevice ? rdev : 0)
    }

    func create(in parent: WorkspaceNode, parentName: [UInt8], grandparent: UInt64, name: [UInt8], kind: EntryKind,
                mode: UInt32, uid: UInt32, gid: UInt32, target: [UInt8]? = nil, rdev: UInt64 = 0) throws -> WorkspaceNode {
        try change {
            try requireDirectory(parent)
            var dir = try materialize(parent, parent: grandparent, name: parentName)
            if try childInTransaction(dir, name) != nil { throw VFSError(EEXIST) }
            // A setgid directory passes its group on, and its setgid bit to new subdirectories (as ext4 does;
            // the kernel has already stripped S_ISGID from a new file's mode where the caller may not keep it).
            let inherits = dir.mode & UInt32(S_ISGID) != 0
            let node = try newNode(kind: kind, mode: inherits && kind == .directory ? mode | UInt32(S_ISGID) : mode, uid: uid,
                                   gid: inherits ? dir.gid : gid, target: target, rdev: rdev)
            if kind == .file {
                let delta = try DeltaFile.open(workspace.deltaPath(node.ino), create: true)
                delta.close()
            }
            try meta.put(node)
            try meta.setDirent(parent: dir.ino, name: name, child: node.ino)
            if kind == .directory { dir.nlink += 1 }
            try touch(&dir)
            return node
        }
    }

    func link(_ target: WorkspaceNode, targetParent: UInt64, targetName: [UInt8], to parent: WorkspaceNode, parentName: [UInt8],
              grandparent: UInt64, name: [UInt8]) throws -> WorkspaceNode {
        try change {
            guard target.kind != .directory else { throw VFSError(EPERM) }
            var dir = try materialize(parent, parent: grandparent, name: parentName)
            if try childInTransaction(dir, name) != nil { throw VFSError(EEXIST) }
            var node = try materialize(target, parent: targetParent, name: targetName)
            node.nlink += 1
            node.ctimeNs = Self.now()
            try meta.put(node)
            try meta.setDirent(parent: dir.ino, name: name, child: node.ino)
            try touch(&dir)
            return node
        }
    }

    func remove(from parent: WorkspaceNode, parentName: [UInt8], grandparent: UInt64, name: [UInt8], directory: Bool) throws {
        try change {
            try requireDirectory(parent)
            var dir = try materialize(parent, parent: grandparent, name: parentName)
            guard let child = try childInTransaction(dir, name) else { throw VFSError.notFound }
            if directory {
                guard child.kind == .directory else { throw VFSError.notDirectory }
                if try !workspace.listing(child).isEmpty { throw VFSError(ENOTEMPTY) }
                dir.nlink -= 1
            } else if child.kind == .directory {
                throw VFSError.isDirectory
            }
            try removeName(dir, name)
            try dropLink(child)
            try touch(&dir)
        }
    }
}
