import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// A workspace file's changed bytes: a sparse file of the file's full logical size in which exactly the
/// 4 KiB blocks that override the base are allocated (Documentation/Format.md, "Workspaces").
///
/// The file system's own hole map (SEEK_DATA/SEEK_HOLE) is the extent map, so a 4 KiB edit of a 10 GiB file
/// costs one block, and no separate index can disagree with the data. Partial blocks are filled from the
/// base before being written, so an allocated block never holds bytes that should have come from the base.
public struct DeltaFile: Sendable {
    public static let blockSize: UInt64 = 4096
    public let descriptor: FileDescriptor

    public init(descriptor: FileDescriptor) { self.descriptor = descriptor }

    public static func open(_ path: String, create: Bool) throws -> DeltaFile {
        DeltaFile(descriptor: try FileDescriptor.open(path, O_RDWR | (create ? O_CREAT : 0), mode: 0o600))
    }

    public func close() { descriptor.close() }

    public var size: UInt64 {
        get throws { UInt64(try descriptor.stat().st_size) }
    }

    /// The runs of [from, to): (start, end, isData). Holes are bytes the delta does not override.
    public func runs(from: UInt64, to: UInt64) throws -> [(start: UInt64, end: UInt64, data: Bool)] {
        var out: [(UInt64, UInt64, Bool)] = []
        var position = from
        while position < to {
            let data = lseek(descriptor.raw, off_t(position), 3 /* SEEK_DATA */)
            if data < 0 {
                if errno == ENXIO {  // No data at or after `position`: the rest is a hole.
                    out.append((position, to, false))
                    break
                }
                throw StoreError.syscall("seek", path: descriptor.path, errno: errno)
            }
            if UInt64(data) > position {
                out.append((position, min(UInt64(data), to), false))
                position = min(UInt64(data), to)
                continue
            }
            let hole = lseek(descriptor.raw, off_t(position), 4 /* SEEK_HOLE */)
            if hole < 0 { throw StoreError.syscall("seek", path: descriptor.path, errno: errno) }
            let end = min(UInt64(hole), to)
            out.append((position, end, true))
            position = end
        }
        return out
    }

    /// Checks once per store that its file system reports holes precisely; otherwise deltas would be read as
    /// data and base bytes would show as zeros.
    public static func probeHoles(in directory: String) throws {
        let path = directory + "/.hole-probe"
        let delta = try open(path, create: true)
        defer {
            delta.close()
            unlink(path)
        }
        try [UInt8](repeating: 1, count: Int(blockSize)).withUnsafeBytes { try delta.descriptor.pwrite($0, at: 1 << 20) }
        let first = lseek(delta.descriptor.raw, 0, 3 /* SEEK_DATA */)
        guard first == 1 << 20 else {
            throw StoreError(.invalidArgument, "the file system holding \(directory) does not report sparse-file holes (SEEK_DATA); workspaces need ext4, xfs, btrfs or tmpfs")
        }
    }
}
