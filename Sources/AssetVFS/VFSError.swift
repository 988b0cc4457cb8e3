import AssetStore
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

    /// The answer to the kernel for a store failure. Damaged or missing store data is EIO (a missing pack must
    /// never look like a missing file); otherwise a local system call's own errno when there was one (a
    /// workspace's files are local files: EFBIG, EDQUOT, ENOSPC pass through as they are), else one errno per code.
    public init(_ error: StoreError) {
        switch error.code {
        case .corrupt, .notFound, .format:
            self.init(EIO)
        case .noSpace, .conflict, .invalidArgument, .transient, .failure:
            if case .errno(let e)? = error.cause {
                self.init(e)
                return
            }
            switch error.code {
            case .noSpace: self.init(ENOSPC)
            case .conflict: self.init(EEXIST)
            case .invalidArgument: self.init(EINVAL)
            default: self.init(EIO)
            }
        }
    }
}
