import AssetStore
import AssetVFS
import CFUSE3
#if canImport(Glibc)
import Glibc
#endif

/// Conversions from VFS values to the kernel's structures. Nothing here decides anything.
enum KernelTypes {
    static func stat(_ a: Attributes) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.inode)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.linkCount)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = off_t(clamping: a.size)
        st.st_blocks = blkcnt_t(clamping: a.blocks)
        st.st_blksize = 4096
        st.st_rdev = dev_t(a.rdev)
        st.st_mtim = timespec(nanoseconds: a.mtimeNs)
        st.st_ctim = timespec(nanoseconds: a.ctimeNs ?? a.mtimeNs)
        st.st_atim = timespec(nanoseconds: a.atimeNs ?? a.mtimeNs)
        return st
    }

    static func entryParam(_ e: Entry) -> fuse_entry_param {
        var p = fuse_entry_param()
        p.ino = fuse_ino_t(e.attributes.inode)
        p.generation = 1
        p.attr = stat(e.attributes)
        p.attr_timeout = e.cache.attributeSeconds
        p.entry_timeout = e.cache.entrySeconds
        return p
    }

    /// A C string argument as raw name bytes (names need not be UTF-8).
    static func name(_ p: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }
}
