#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error answer. The VFS speaks errno; the FUSE adapter passes it through unchanged.
public struct VFSError: Error, Equatable, CustomStringConvertible {
    public let errno: Int32
    public init(_ errno: Int32) { self.errno = errno }

    public static let notFound = VFSError(ENOENT)
    public static let readOnly = VFSError(EROFS)
    public static let io = VFSError(EIO)
    public static let notDirectory = VFSError(ENOTDIR)
    public static let isDirectory = VFSError(EISDIR)
    public static let invalid = VFSError(EINVAL)
    public static let noAttribute = VFSError(ENODATA)
    public static let range = VFSError(ERANGE)
    public static let badHandle = VFSError(EBADF)

    public var description: String { String(cString: strerror(errno)) }
}
