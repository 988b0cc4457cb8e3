import AssetCatalog
import AssetRepository
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// An open workspace file. The node is a snapshot taken at open, so an unlinked file stays readable.
final class OverlayHandle: @unchecked Sendable {
    var node: WorkspaceNode
    let writable: Bool
    var delta: DeltaFile?
    var wroteSinceSync = false
    /// When this handle last wrote, until a flush records it as the file's mtime and ctime (nil: nothing
    /// pending, or a later setattr that set the times itself superseded it).
    var pendingWriteNs: Int64?
    /// The file is the workspace's own (it has a metadata row), so reads keep its atime (see `noteAccess`).
    let keepsAccessTime: Bool

    init(node: WorkspaceNode, writable: Bool, delta: DeltaFile?, keepsAccessTime: Bool) {
        self.node = node
        self.writable = writable
        self.delta = delta
        self.keepsAccessTime = keepsAccessTime
    }

    /// The file's data changed through this handle (a write, or growth by fallocate): mtime and ctime are
    /// now, recorded on the next flush.
    func noteWrite() {
        wroteSinceSync = true
        node.mtimeNs = WorkspaceOverlay.now()
        node.ctimeNs = node.mtimeNs
        pendingWriteNs = node.mtimeNs
    }
}

/// What `setattr` may change.
public struct AttributeChanges: Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var mtimeNs: Int64?
    public var atimeNs: Int64?
    public init() {}
}

extension WorkspaceOverlay {
    // MARK: Rename

    func rename(from parent: WorkspaceNode, parentName: [UInt8], grandparent: UInt64, name: [UInt8],
                to newParent: WorkspaceNode, newParentName: [UInt8], newGrandparent: UInt64, newName: [UInt8],
                noReplace: Bool, ancestorsOfTarget: [UInt64]) throws {
        try change {
            try requireDirectory(parent)
            try requireDirectory(newParent)
            var source = try materialize(parent, parent: grandparent, name: parentName)
            var target = parent.ino == newParent.ino ? source : try materialize(newParent, parent: newGrandparent, name: newParentName)
            guard let moving = try childInTransaction(source, name) else { throw VFSError.notFound }
            if moving.kind == .directory && (ancestorsOfTarget.contains(moving.ino) || moving.ino == target.ino) {
                throw VFSError.invalid  // Moving a directory into itself.
            }
            if let existing = try childInTransaction(target, newName) {
                if existing.ino == moving.ino { return }
                if noReplace { throw VFSError(EEXIST) }
                if moving.kind == .directory {
                    guard existing.kind == .directory else { throw VFSError.notDirectory }
                    if try !workspace.listing(existing).isEmpty { throw VFSError(ENOTEMPTY) }
                    target.nlink -= 1
                } else if existing.kind == .directory {
                    throw VFSError.isDirectory
                }
                try dropLink(existing)
            }
            var node = try materialize(moving, parent: source.ino, name: name)
            node.ctimeNs = Self.now()
            try meta.put(node)
            try removeName(source, name)
            try meta.setDirent(parent: target.ino, name: newName, child: node.ino)
            if node.kind == .directory && source.ino != target.ino {
                source.nlink -= 1
                target.nlink += 1
            }
            if source.ino == target.ino {
                // One directory: `target` is the copy that saw a replaced subdirectory's link go away.
                source.nlink = target.nlink
                try touch(&source)
            } else {
                try touch(&source)
                try touch(&target)
            }
        }
    }

    /// renameat2 with RENAME_EXCHANGE: the two names swap their inodes, atomically (one transaction). Both
    /// must exist (ENOENT); the kernel has already refused a directory exchanged into its own subtree.
    func exchange(_ parent: WorkspaceNode, parentName: [UInt8], grandparent: UInt64, name: [UInt8],
                  with newParent: WorkspaceNode, newParentName: [UInt8], newGrandparent: UInt64, newName: [UInt8]) throws {
        try change {
            try requireDirectory(parent)
            try requireDirectory(newParent)
            var source = try materialize(parent, parent: grandparent, name: parentName)
            var target = parent.ino == newParent.ino ? source : try materialize(newParent, parent: newGrandparent, name: newParentName)
            guard let first = try childInTransaction(source, name), let second = try childInTransaction(target, newName) else {
                throw VFSError.notFound
            }
            if first.ino == second.ino { return }
            var a = try materialize(first, parent: source.ino, name: name)
            var b = try materialize(second, parent: target.ino, name: newName)
            try meta.setDirent(parent: source.ino, name: name, child: b.ino)
            try meta.setDirent(parent: target.ino, name: newName, child: a.ino)
            try changedStatus(&a)
            try changedStatus(&b)
            if source.ino == target.ino {
                try touch(&source)
            } else {
                // A directory that changes parent moves its ".." link with it.
                if a.kind == .directory { source.nlink -= 1; target.nlink += 1 }
                if b.kind == .directory { target.nlink -= 1; source.nlink += 1 }
                try touch(&source)
                try touch(&target)
            }
        }
    }

    // MARK: Attributes

    func setAttributes(_ n: WorkspaceNode, parent: UInt64, name: [UInt8], _ changes: AttributeChanges) throws -> WorkspaceNode {
        try change {
            var node = try materialize(n, parent: parent, name: name)
            let now = Self.now()
            if let mode = changes.mode { node.mode = mode & 0o7777 }
            if let uid = changes.uid { node.uid = uid }
            if let gid = changes.gid { node.gid = gid }
            if let size = changes.size {
                guard node.kind == .file else { throw node.kind == .directory ? VFSError.isDirectory : VFSError.invalid }
                node = try truncate(node, to: size)
                node.mtimeNs = now
            }
            if let mtime = changes.mtimeNs { node.mtimeNs = mtime }
            if let atime = changes.atimeNs { node.atimeNs = atime }
            node.ctimeNs = now
            if changes.mtimeNs != nil || changes.size != nil {
                // These times are later than any write not yet flushed: those must not set mtime back.
                for h in handles.values where h.node.ino == node.ino { h.pendingWriteNs = nil }
            }
            try meta.put(node)
            refreshHandles(node)
            return node
        }
    }

    /// `mode` without setuid, and without setgid where group execute is set (setgid without it marks
    /// mandatory locking, which Linux leaves alone).
    static func withoutPrivileges(_ mode: UInt32) -> UInt32 {
        var out = mode & ~UInt32(S_ISUID)
        if out & UInt32(S_IXGRP) != 0 { out &= ~UInt32(S_ISGID) }
        return out
    }

    /// Gives a persisted file a delta (sparse, same size: every byte still comes from the base).
    func ensureDelta(_ n: WorkspaceNode) throws -> WorkspaceNode {
        guard n.kind == .file, !n.hasDelta else { return n }
        var node = n
        let delta = try DeltaFile.open(workspace.deltaPath(node.ino), create: true)
        defer { delta.close() }
        if ftruncate(delta.descriptor.raw, off_t(node.size)) != 0 { throw VFSError(errno) }
        node.hasDelta = true
        try meta.put(node)
        return node
    }

    func truncate(_ n: WorkspaceNode, to size: UInt64) throws -> WorkspaceNode {
        var node = try ensureDelta(n)
        let delta = try DeltaFile.open(workspace.deltaPath(node.ino), create: false)
        defer { delta.close() }
        if ftruncate(delta.descriptor.raw, off_t(size)) != 0 { throw VFSError(errno) }
        // Bytes past a shrink must read as zeros if the file grows again, never as the base's old bytes.
        node.baseLimit = min(node.baseLimit, size)
        node.size = size
        return node
    }

    /// Shows a change of a file to every handle open on it (a truncate through another descriptor, or a delta
    /// created by a writer after a reader opened the file). Must run under `lock`.
    func refreshHandles(_ node: WorkspaceNode) {
        for h in handles.values where h.node.ino == node.ino {
            h.node = node
            if node.hasDelta && h.delta == nil {
                h.delta = try? DeltaFile.open(workspace.deltaPath(node.ino), create: false)
            }
        }
    }

    // MARK: Open, read, write

    func open(_ n: WorkspaceNode, parent: UInt64, name: [UInt8], flags: Int32, uid: UInt32 = 0) throws -> UInt64 {
        guard n.kind == .file else { throw n.kind == .directory ? VFSError.isDirectory : VFSError.invalid }
        let writable = flags & O_ACCMODE != O_RDONLY
        var node = n
        if writable || flags & O_TRUNC != 0 {
            node = try change {
                var persisted = try ensureDelta(try materialize(n, parent: parent, name: name))
                if flags & O_TRUNC != 0 {
                    persisted = try truncate(persisted, to: 0)
                    persisted.mtimeNs = Self.now()
                    persisted.ctimeNs = persisted.mtimeNs
                    // The kernel leaves this to the file system when it truncates inside OPEN (atomic O_TRUNC):
                    // like any truncate by a caller without CAP_FSETID (taken as: not root), it drops setuid,
                    // and setgid where group execute is set.
                    if uid != 0 { persisted.mode = Self.withoutPrivileges(persisted.mode) }
                    try meta.put(persisted)
                }
                // Descriptors already open on the file must see the truncation (and the delta) too: a write
                // through one of them fills its edge blocks from what the file holds now, not from the base.
                refreshHandles(persisted)
                return persisted
            }
        }
        let delta = node.hasDelta ? try DeltaFile.open(workspace.deltaPath(node.ino), create: false) : nil
        let own = try writable || flags & O_TRUNC != 0 || meta.node(node.ino) != nil
        return try lock.withLock {
            let id = nextHandle
            nextHandle += 1
            handles[id] = OverlayHandle(node: node, writable: writable, delta: delta, keepsAccessTime: own)
            opens[node.ino, default: 0] += 1
            if writable {
                writers[node.ino, default: 0] += 1
                try meta.setOpenWriters(node.ino, count: writers[node.ino]!)
            }
            return id
        }
    }

    func handle(_ id: UInt64) throws -> OverlayHandle {
        guard let h = lock.withLock({ handles[id] }) else { throw VFSError.badHandle }
        return h
    }

    func read(_ id: UInt64, offset: UInt64, count: Int) throws -> [UInt8] {
        let h = try handle(id)
        // Both under the lock: another descriptor's open may give this handle a delta (refreshHandles).
        let (node, delta) = lock.withLock { (h.node, h.delta) }
        let size = try delta?.size ?? node.size
        do {
            let bytes = try Workspace.readMerged(node, size: size, delta: delta, offset: offset, count: count) { off, n in
                guard let file = node.baseFileID else { return [UInt8](repeating: 0, count: n) }
                return try readBase(file, off, n)
            }
            try? noteAccess(h)  // Best effort: a read never fails for want of recording its time.
            return bytes
        } catch let error as StoreError {
            throw VFSError(error)
        }
    }

    /// relatime, as ext4 mounts default to: a read sets atime when atime is not after mtime or ctime, or is a
    /// day old; so the first read after each change writes one metadata row, and later reads none. Only for
    /// files of the workspace's own (created or changed in it): files of the base version read through it keep
    /// their times, or reading a data set through a workspace would write a row per file. (The kernel never
    /// updates a FUSE file's atime itself, and reads it serves from its page cache do not reach this.)
    func noteAccess(_ h: OverlayHandle) throws {
        guard h.keepsAccessTime, lock.withLock({ Self.accessIsStale(h.node) }) else { return }
        try setAccessTime(h.node.ino)
    }

    /// The same rule for a symlink followed (READLINK), when it is the workspace's own. Not for directories
    /// read: the kernel keeps a directory's attributes cached for a second and would not see the change.
    func noteAccess(of n: WorkspaceNode) throws {
        guard Self.accessIsStale(n), try meta.node(n.ino) != nil else { return }
        try setAccessTime(n.ino)
    }

    static func accessIsStale(_ n: WorkspaceNode) -> Bool {
        n.atimeNs <= max(n.mtimeNs, n.ctimeNs) || now() - n.atimeNs >= 86_400_000_000_000
    }

    private func setAccessTime(_ ino: UInt64) throws {
        try change {
            guard var node = try meta.nodeInTransaction(ino) else { return }
            node.atimeNs = Self.now()
            try meta.put(node)
            for other in handles.values where other.node.ino == ino { other.node.atimeNs = node.atimeNs }
        }
    }

    func write(_ id: UInt64, offset: UInt64, data: UnsafeRawBufferPointer) throws -> Int {
        let h = try handle(id)
        guard h.writable, let delta = h.delta else { throw VFSError.badHandle }
        return try lock.withLock {
            let flock = try WorkspaceLocks.shared(workspace.directory)
            defer { flock.release() }
            do {
                let node = h.node
                let size = try delta.size
                let end = offset + UInt64(data.count)
                // Fill partial edge blocks from the base first: an allocated block must hold every byte it covers.
                var edges = Set([offset / granularity])
                edges.insert((end - 1) / granularity)
                for block in edges.sorted() {
                    let start = block * granularity
                    let stop = min(start + granularity, size)
                    let covered = offset <= start && end >= start + granularity
                    guard !covered, start < node.baseLimit, start < stop,
                          try delta.runs(from: start, to: start + 1).first?.data == false else { continue }
                    let fill = try Workspace.readMerged(node, size: size, delta: delta, offset: start, count: Int(stop - start)) { off, n in
                        guard let file = node.baseFileID else { return [UInt8](repeating: 0, count: n) }
                        return try readBase(file, off, n)
                    }
                    try fill.withUnsafeBytes { try delta.descriptor.pwrite($0, at: start) }
                }
                try delta.descriptor.pwrite(data, at: offset)
                h.noteWrite()
                return data.count
            } catch let error as StoreError {
                throw VFSError(error)
            }
        }
    }

    /// fallocate(2), modes 0 and FALLOC_FL_KEEP_SIZE (1): mode 0 grows the file to the range's end (the new
    /// bytes read as zeros); both reserve space in the delta, but only past the base's bytes (`baseLimit`): a
    /// block allocated in the delta counts as written (the delta's SEEK_DATA map is the overlay's), which is
    /// right only where the base has nothing to show. Other modes (punching holes, zeroing, collapsing) answer
    /// EOPNOTSUPP, as before.
    func allocate(_ id: UInt64, mode: Int32, offset: UInt64, length: UInt64) throws {
        guard mode & ~1 == 0 else { throw VFSError(EOPNOTSUPP) }
        let h = try handle(id)
        guard h.writable, let delta = h.delta else { throw VFSError.badHandle }
        try lock.withLock {
            let flock = try WorkspaceLocks.shared(workspace.directory)
            defer { flock.release() }
            do {
                let end = offset + length
                let from = max(offset, h.node.baseLimit)
                if end > from, fallocateKeepSize(delta.descriptor.raw, offset: from, length: end - from) != 0 { throw VFSError(errno) }
                if mode & 1 == 0, end > (try delta.size) {
                    if ftruncate(delta.descriptor.raw, off_t(end)) != 0 { throw VFSError(errno) }
                    h.noteWrite()
                }
            } catch let error as StoreError {
                throw VFSError(error)
            }
        }
    }

    /// Persists size and times of a written file; with `durable`, fsyncs its data and the metadata too.
    func flush(_ id: UInt64, durable: Bool) throws {
        let h = try handle(id)
        guard h.writable, h.wroteSinceSync || durable else { return }
        try change {
            guard var node = try meta.nodeInTransaction(h.node.ino) else { return }
            node.size = try h.delta?.size ?? node.size
            // The write's time, as ext4 sets it at each write: even over an mtime that utimensat set in the
            // future, unless a setattr after the write set the times itself (it cleared `pendingWriteNs`).
            if let written = h.pendingWriteNs {
                node.mtimeNs = written
                node.ctimeNs = max(node.ctimeNs, written)
                h.pendingWriteNs = nil
            }
            try meta.put(node)
            h.wroteSinceSync = false
        }
        if durable {
            try h.delta?.descriptor.sync()
            try meta.sync()
        }
    }

    func release(_ id: UInt64) {
        try? flush(id, durable: false)  // Safe: flush failures were already reported by the close() that called flush.
        lock.withLock {
            guard let h = handles.removeValue(forKey: id) else { return }
            h.delta?.close()
            let ino = h.node.ino
            opens[ino, default: 1] -= 1
            if opens[ino] == 0 { opens.removeValue(forKey: ino) }
            if h.writable {
                writers[ino, default: 1] -= 1
                try? meta.setOpenWriters(ino, count: writers[ino] ?? 0)  // Safe: a stale row is cleared at next start.
                if writers[ino] == 0 { writers.removeValue(forKey: ino) }
            }
            // The last handle of an unlinked file: now its data can go.
            if opens[ino] == nil, let node = try? meta.node(ino), node.nlink == 0 {
                _ = try? meta.transaction { try meta.deleteNode(ino) }
                unlink(workspace.deltaPath(ino))
            }
        }
    }

    // MARK: Extended attributes

    func setXattr(_ n: WorkspaceNode, parent: UInt64, name: [UInt8], attribute: [UInt8], value: [UInt8], flags: Int32) throws {
        try change {
            var node = try materialize(n, parent: parent, name: name)
            let old = try meta.xattr(node.ino, name: attribute)
            if flags & 1 /* XATTR_CREATE */ != 0 && old != nil { throw VFSError(EEXIST) }
            if flags & 2 /* XATTR_REPLACE */ != 0 && old == nil { throw VFSError.noAttribute }
            // ext4 leaves ctime alone when a value is set to what it already was.
            guard old != value else { return }
            try meta.setXattr(node.ino, name: attribute, value: value)
            try changedStatus(&node)
        }
    }

    func removeXattr(_ n: WorkspaceNode, parent: UInt64, name: [UInt8], attribute: [UInt8]) throws {
        try change {
            var node = try materialize(n, parent: parent, name: name)
            guard try meta.removeXattr(node.ino, name: attribute) else { throw VFSError.noAttribute }
            try changedStatus(&node)
        }
    }

    /// A change of the inode's metadata (not its data): ctime is now, as for every such change on ext4.
    func changedStatus(_ node: inout WorkspaceNode) throws {
        node.ctimeNs = Self.now()
        try meta.put(node)
        for h in handles.values where h.node.ino == node.ino { h.node.ctimeNs = node.ctimeNs }
    }
}

/// fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length); 0 or -1 with errno. Glibc declares fallocate only
/// under _GNU_SOURCE, which Swift's Glibc module does not see, so it is looked up once by name.
func fallocateKeepSize(_ fd: Int32, offset: UInt64, length: UInt64) -> Int32 {
    guard let call = glibcFallocate else {
        errno = EOPNOTSUPP
        return -1
    }
    return call(fd, 1 /* FALLOC_FL_KEEP_SIZE */, off_t(offset), off_t(length))
}

private let glibcFallocate: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32)? = {
    guard let symbol = dlsym(nil, "fallocate") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
}()
