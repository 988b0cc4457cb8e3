import AssetVFS
import CFUSE3
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The lowlevel operations table: each callback turns one kernel request into one VFS call and sends
/// exactly one reply. Callbacks are capture-free C functions; the VFS comes from the session's userdata.
private func fs(_ req: fuse_req_t?) -> AssetFileSystem {
    Unmanaged<AssetFileSystem>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
}

/// Runs `body`; a thrown VFSError becomes its errno, anything else EIO.
private func answer(_ req: fuse_req_t?, _ body: () throws -> Void) {
    do {
        try body()
    } catch let error as VFSError {
        fuse_reply_err(req, error.errno)
    } catch {
        fuse_reply_err(req, EIO)
    }
}

enum FUSEOperations {
    static func make() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.lookup = { req, parent, name in
            answer(req) {
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
            answer(req) {
                let e = try fs(req).attributes(UInt64(ino))
                var st = KernelTypes.stat(e.attributes)
                fuse_reply_attr(req, &st, e.cache.attributeSeconds)
            }
        }
        ops.readlink = { req, ino in
            answer(req) {
                let target = try fs(req).readlink(UInt64(ino)).map { CChar(bitPattern: $0) } + [0]
                fuse_reply_readlink(req, target)
            }
        }
        ops.open = { req, ino, fi in
            answer(req) {
                fi!.pointee.fh = try fs(req).open(UInt64(ino), flags: fi!.pointee.flags)
                // Version files never change: keep the page cache across opens.
                fi!.pointee.keep_cache = 1
                fuse_reply_open(req, fi)
            }
        }
        ops.read = { req, _, size, offset, fi in
            answer(req) {
                let bytes = try fs(req).read(fi!.pointee.fh, offset: UInt64(offset), count: size)
                bytes.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
            }
        }
        ops.release = { req, _, fi in
            fs(req).release(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.opendir = { req, ino, fi in
            answer(req) {
                fi!.pointee.fh = try fs(req).openDirectory(UInt64(ino))
                fi!.pointee.cache_readdir = 0
                fuse_reply_open(req, fi)
            }
        }
        ops.readdir = { req, _, size, offset, fi in
            answer(req) { try FUSEOperations.readDirectory(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: false) }
        }
        ops.readdirplus = { req, _, size, offset, fi in
            answer(req) { try FUSEOperations.readDirectory(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: true) }
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
            answer(req) {
                let value = try fs(req).extendedAttribute(UInt64(ino), name: String(cString: name!))
                try FUSEOperations.replyXattr(req, value, size: size)
            }
        }
        ops.listxattr = { req, ino, size in
            answer(req) {
                let names = try fs(req).extendedAttributeNames(UInt64(ino))
                try FUSEOperations.replyXattr(req, names.flatMap { Array($0.utf8) + [0] }, size: size)
            }
        }
        installWriteRefusals(&ops)
        return ops
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
        let items = try vfs.readDirectory(handle, from: Int(offset))
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

    /// Every modifying call answers EROFS on version paths (and ENOENT for unknown inodes).
    static func installWriteRefusals(_ ops: inout fuse_lowlevel_ops) {
        ops.setattr = { req, ino, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(ino)) } }
        ops.mknod = { req, parent, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.mkdir = { req, parent, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.unlink = { req, parent, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.rmdir = { req, parent, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.symlink = { req, _, parent, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.rename = { req, parent, _, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.link = { req, ino, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(ino)) } }
        ops.create = { req, parent, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(parent)) } }
        ops.write = { req, ino, _, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(ino)) } }
        ops.setxattr = { req, ino, _, _, _, _ in answer(req) { try fs(req).refuseWrite(UInt64(ino)) } }
        ops.removexattr = { req, ino, _ in answer(req) { try fs(req).refuseWrite(UInt64(ino)) } }
    }
}
