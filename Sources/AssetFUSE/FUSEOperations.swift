import AssetCatalog
import AssetStore
import AssetVFS
import CFUSE3
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The lowlevel operations table: each callback turns one kernel request into one VFS call and sends
/// exactly one reply. Callbacks are capture-free C functions; the VFS comes from the session's userdata.
private func fs(_ req: fuse_req_t?) -> AssetFileSystem {
    Unmanaged<AssetFileSystem>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
}

/// Runs `body`; a thrown VFSError becomes its errno, anything else EIO. Counted and timed per operation.
private func answer(_ req: fuse_req_t?, _ operation: FUSEOperation, _ body: () throws -> Void) {
    let started = DispatchTime.now().uptimeNanoseconds
    defer { FUSEMetrics.durations[operation.rawValue].recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- started)) }
    do {
        try body()
    } catch let error as VFSError {
        FUSEMetrics.failed(operation, errno: error.errno)
        fuse_reply_err(req, error.errno)
    } catch {
        FUSEMetrics.failed(operation, errno: EIO)
        fuse_reply_err(req, EIO)
    }
}

/// Who sent the request: the thread id, uid and gid the kernel passes with it (lineage names its job).
private func caller(_ req: fuse_req_t?) -> Caller {
    let ctx = fuse_req_ctx(req)!.pointee
    return Caller(pid: ctx.pid, uid: ctx.uid, gid: ctx.gid)
}

/// Lineage: the caller's job changes something at `inode` (a no-op outside workspaces and with --no-lineage).
private func changing(_ req: fuse_req_t?, _ inode: fuse_ino_t) {
    fs(req).noteChange(UInt64(inode), caller: caller(req))
}

enum FUSEOperations {
    static func make() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.lookup = { req, parent, name in
            answer(req, .lookup) {
                var e = KernelTypes.entryParam(try fs(req).lookup(parent: UInt64(parent), name: KernelTypes.name(name!)))
                fuse_reply_entry(req, &e)
            }
        }
        ops.forget = { req, ino, count in
            fs(req).forget(UInt64(ino), count: count)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let vfs = fs(req)
            for i in 0..<count { vfs.forget(UInt64(forgets![i].ino), count: forgets![i].nlookup) }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, _ in
            answer(req, .getattr) {
                let e = try fs(req).attributes(UInt64(ino))
                var st = KernelTypes.stat(e.attributes)
                fuse_reply_attr(req, &st, e.cache.attributeSeconds)
            }
        }
        ops.readlink = { req, ino in
            answer(req, .readlink) {
                let target = try fs(req).readlink(UInt64(ino)).map { CChar(bitPattern: $0) } + [0]
                fuse_reply_readlink(req, target)
            }
        }
        ops.open = { req, ino, fi in
            answer(req, .open) {
                let vfs = fs(req)
                // ENOSYS tells the kernel to open every file of this mount itself from now on (no_open): it keeps
                // the page cache across opens and sends no release. Reads then carry handle 0.
                if vfs.servesOpensInKernel { throw VFSError(ENOSYS) }
                fi!.pointee.fh = try vfs.open(UInt64(ino), flags: fi!.pointee.flags, uid: fuse_req_ctx(req)!.pointee.uid, caller: caller(req))
                // Version files never change: keep the page cache across opens.
                let immutable = vfs.keepsCache(fi!.pointee.fh)
                fi!.pointee.keep_cache = immutable ? 1 : 0
                // Nothing to flush for a version file: spare the kernel a round trip on every close.
                fi!.pointee.noflush = immutable ? 1 : 0
                fuse_reply_open(req, fi)
            }
        }
        ops.read = { req, ino, size, offset, fi in
            answer(req, .read) {
                let vfs = fs(req), handle = fi!.pointee.fh
                let bytes = handle == 0 && vfs.servesOpensInKernel
                    ? try vfs.read(inode: UInt64(ino), offset: UInt64(offset), count: size, caller: caller(req))
                    : try vfs.read(handle, offset: UInt64(offset), count: size)
                FUSEMetrics.readBytes.increment(by: bytes.count)
                FUSEOperations.reply(req, bytes)
            }
        }
        ops.release = { req, _, fi in
            if fi!.pointee.fh != 0 { fs(req).release(fi!.pointee.fh) }
            fuse_reply_err(req, 0)
        }
        ops.opendir = { req, ino, fi in
            answer(req, .opendir) {
                fi!.pointee.fh = try fs(req).openDirectory(UInt64(ino))
                fi!.pointee.cache_readdir = 0
                fuse_reply_open(req, fi)
            }
        }
        ops.readdir = { req, _, size, offset, fi in
            answer(req, .readdir) { try FUSEOperations.readDirectory(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: false) }
        }
        ops.readdirplus = { req, _, size, offset, fi in
            answer(req, .readdirplus) { try FUSEOperations.readDirectory(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: true) }
        }
        ops.releasedir = { req, _, fi in
            fs(req).releaseDirectory(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.statfs = { req, _ in
            let u = fs(req).usage()
            var st = statvfs()
            st.f_bsize = UInt(u.blockSize)
            st.f_frsize = UInt(u.blockSize)
            st.f_blocks = fsblkcnt_t(u.blocks)
            st.f_bfree = fsblkcnt_t(u.freeBlocks)
            st.f_bavail = fsblkcnt_t(u.availableBlocks)
            st.f_files = fsfilcnt_t(u.files)
            st.f_ffree = fsfilcnt_t(u.freeFiles)
            st.f_namemax = 255
            fuse_reply_statfs(req, &st)
        }
        ops.getxattr = { req, ino, name, size in
            answer(req, .getxattr) {
                let value = try fs(req).extendedAttribute(UInt64(ino), name: String(cString: name!))
                try FUSEOperations.replyXattr(req, value, size: size)
            }
        }
        ops.listxattr = { req, ino, size in
            answer(req, .listxattr) {
                let names = try fs(req).extendedAttributeNames(UInt64(ino), uid: fuse_req_ctx(req)!.pointee.uid)
                try FUSEOperations.replyXattr(req, names.flatMap { Array($0.utf8) + [0] }, size: size)
            }
        }
        installWrites(&ops)
        return ops
    }

    /// Replies with every piece of a read in one gathered write to the kernel.
    fileprivate static func reply(_ req: fuse_req_t?, _ bytes: ReadBytes) {
        var vectors: [iovec] = []
        vectors.reserveCapacity(bytes.pieces.count)
        replyGathered(req, bytes.pieces[...], &vectors)
    }

    /// Each piece's buffer stays pinned (by nesting) until the kernel has copied it.
    private static func replyGathered(_ req: fuse_req_t?, _ pieces: ArraySlice<ArraySlice<UInt8>>, _ vectors: inout [iovec]) {
        guard let first = pieces.first else {
            _ = vectors.withUnsafeBufferPointer { fuse_reply_iov(req, $0.baseAddress, Int32($0.count)) }
            return
        }
        first.withUnsafeBytes { buffer in
            vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count))
            replyGathered(req, pieces.dropFirst(), &vectors)
        }
    }

    /// size 0 asks for the length; otherwise the value must fit (ERANGE).
    fileprivate static func replyXattr(_ req: fuse_req_t?, _ value: [UInt8], size: Int) throws {
        if size == 0 {
            fuse_reply_xattr(req, value.count)
        } else if value.count > size {
            throw VFSError.range
        } else {
            value.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
    }

    fileprivate static func readDirectory(_ req: fuse_req_t?, size: Int, offset: off_t, handle: UInt64, plus: Bool) throws {
        let vfs = fs(req)
        // A dirent takes at least 24 bytes (plain) or 152 (plus, with its attributes) plus its name.
        let items = try vfs.readDirectory(handle, from: Int(offset), limit: max(1, size / (plus ? 152 : 24)))
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        try buffer.withUnsafeMutableBufferPointer { buf in
            for (i, item) in items.enumerated() {
                let next = off_t(offset) + off_t(i) + 1
                let name = item.name.map { CChar(bitPattern: $0) } + [0]
                let needed: Int
                if plus {
                    var e = KernelTypes.entryParam(item.entry)
                    needed = fuse_add_direntry_plus(req, buf.baseAddress! + used, size - used, name, &e, next)
                } else {
                    var st = KernelTypes.stat(item.entry.attributes)
                    needed = fuse_add_direntry(req, buf.baseAddress! + used, size - used, name, &st, next)
                }
                if needed > size - used { break }
                used += needed
                // The kernel now holds a reference to this entry, as after a lookup.
                if plus { try vfs.directoryEntrySent(handle, index: Int(offset) + i) }
            }
        }
        fuse_reply_buf(req, buffer, used)
    }

    /// Changes: applied inside workspaces; EROFS on version paths (the VFS decides).
    static func installWrites(_ ops: inout fuse_lowlevel_ops) {
        ops.create = { req, parent, name, mode, fi in
            answer(req, .create) {
                changing(req, parent)
                let ctx = fuse_req_ctx(req)!.pointee
                let (entry, handle) = try fs(req).create(parent: UInt64(parent), name: KernelTypes.name(name!), mode: mode,
                                                         flags: fi!.pointee.flags, uid: ctx.uid, gid: ctx.gid)
                var e = KernelTypes.entryParam(entry)
                fi!.pointee.fh = handle
                fuse_reply_create(req, &e, fi)
            }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            answer(req, .mknod) {
                changing(req, parent)
                let ctx = fuse_req_ctx(req)!.pointee
                // FIFOs, sockets and device nodes: inodes of the workspace (EROFS on versions: the VFS decides).
                guard mode & S_IFMT == S_IFREG else {
                    var e = KernelTypes.entryParam(try fs(req).makeSpecial(parent: UInt64(parent), name: KernelTypes.name(name!), mode: mode,
                                                                           rdev: UInt64(rdev), uid: ctx.uid, gid: ctx.gid))
                    fuse_reply_entry(req, &e)
                    return
                }
                let (entry, handle) = try fs(req).create(parent: UInt64(parent), name: KernelTypes.name(name!), mode: mode,
                                                         flags: O_RDWR, uid: ctx.uid, gid: ctx.gid)
                fs(req).release(handle)
                var e = KernelTypes.entryParam(entry)
                fuse_reply_entry(req, &e)
            }
        }
        ops.mkdir = { req, parent, name, mode in
            answer(req, .mkdir) {
                changing(req, parent)
                let ctx = fuse_req_ctx(req)!.pointee
                var e = KernelTypes.entryParam(try fs(req).makeDirectory(parent: UInt64(parent), name: KernelTypes.name(name!),
                                                                         mode: mode, uid: ctx.uid, gid: ctx.gid))
                fuse_reply_entry(req, &e)
            }
        }
        ops.symlink = { req, target, parent, name in
            answer(req, .symlink) {
                changing(req, parent)
                let ctx = fuse_req_ctx(req)!.pointee
                var e = KernelTypes.entryParam(try fs(req).makeSymlink(parent: UInt64(parent), name: KernelTypes.name(name!),
                                                                       target: KernelTypes.name(target!), uid: ctx.uid, gid: ctx.gid))
                fuse_reply_entry(req, &e)
            }
        }
        ops.link = { req, ino, parent, name in
            answer(req, .link) {
                changing(req, parent)
                var e = KernelTypes.entryParam(try fs(req).makeLink(UInt64(ino), newParent: UInt64(parent), newName: KernelTypes.name(name!)))
                fuse_reply_entry(req, &e)
            }
        }
        ops.unlink = { req, parent, name in
            answer(req, .unlink) {
                changing(req, parent)
                try fs(req).remove(parent: UInt64(parent), name: KernelTypes.name(name!), directory: false)
                fuse_reply_err(req, 0)
            }
        }
        ops.rmdir = { req, parent, name in
            answer(req, .rmdir) {
                changing(req, parent)
                try fs(req).remove(parent: UInt64(parent), name: KernelTypes.name(name!), directory: true)
                fuse_reply_err(req, 0)
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            answer(req, .rename) {
                changing(req, parent)
                try fs(req).rename(parent: UInt64(parent), name: KernelTypes.name(name!), newParent: UInt64(newParent),
                                   newName: KernelTypes.name(newName!), flags: flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.setattr = { req, ino, attr, toSet, _ in
            answer(req, .setattr) {
                changing(req, ino)
                let st = attr!.pointee
                var changes = AttributeChanges()
                if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = st.st_mode & 0o7777 }
                if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = st.st_uid }
                if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = st.st_gid }
                if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = UInt64(st.st_size) }
                // Each time on its own: a field the caller left out (UTIME_OMIT) is not in `toSet`.
                let nowNs = Clock.nowNanoseconds()
                if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
                    changes.mtimeNs = nowNs
                } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                    changes.mtimeNs = nanoseconds(st.st_mtim)
                }
                if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 {
                    changes.atimeNs = nowNs
                } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
                    changes.atimeNs = nanoseconds(st.st_atim)
                }
                let entry = try fs(req).setAttributes(UInt64(ino), changes)
                var out = KernelTypes.stat(entry.attributes)
                fuse_reply_attr(req, &out, entry.cache.attributeSeconds)
            }
        }
        ops.write = { req, _, buf, size, offset, fi in
            answer(req, .write) {
                let n = try fs(req).write(fi!.pointee.fh, offset: UInt64(offset), data: UnsafeRawBufferPointer(start: buf, count: size))
                fuse_reply_write(req, n)
            }
        }
        ops.flush = { req, _, fi in
            answer(req, .flush) {
                // Files the kernel opened itself have nothing to flush; ENOSYS stops the flush sent on every close.
                if fs(req).servesOpensInKernel { throw VFSError(ENOSYS) }
                try fs(req).flush(fi!.pointee.fh, durable: false)
                fuse_reply_err(req, 0)
            }
        }
        ops.fsync = { req, _, _, fi in
            answer(req, .fsync) {
                try fs(req).flush(fi!.pointee.fh, durable: true)
                fuse_reply_err(req, 0)
            }
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            answer(req, .setxattr) {
                changing(req, ino)
                let bytes = size > 0 ? Array(UnsafeRawBufferPointer(start: value, count: size)) : []
                try fs(req).setExtendedAttribute(UInt64(ino), name: String(cString: name!), value: bytes, flags: flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.removexattr = { req, ino, name in
            answer(req, .removexattr) {
                changing(req, ino)
                try fs(req).removeExtendedAttribute(UInt64(ino), name: String(cString: name!))
                fuse_reply_err(req, 0)
            }
        }
        ops.fallocate = { req, ino, mode, offset, length, fi in
            answer(req, .fallocate) {
                changing(req, ino)
                try fs(req).allocate(fi!.pointee.fh, mode: mode, offset: UInt64(offset), length: UInt64(length))
                fuse_reply_err(req, 0)
            }
        }
    }
}

/// The requests counted in metrics (label `operation`): those answered through `answer`.
enum FUSEOperation: Int, CaseIterable {
    case lookup, getattr, readlink, open, read, opendir, readdir, readdirplus, getxattr, listxattr, create, mknod, mkdir, symlink, link, unlink, rmdir, rename, setattr, write, flush, fsync, setxattr, removexattr, fallocate
}
