#if canImport(Glibc)
import Glibc
#endif

/// A failure in the byte store, with the object it concerns, what to do about it, and what the backend saw.
///
/// The code is backend-neutral: a local directory, an object store and a test double all say `.notFound`,
/// `.transient` or `.noSpace` in the same words, so retries, the CLI and the VFS decide on the code alone. The
/// errno of a local system call, an HTTP status or a library's code is kept as the `cause`, for messages and
/// for the VFS (which answers the kernel with the local errno when there is one).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// The pack or object does not exist.
        case notFound
        /// May succeed if tried again: a timeout, a reset connection, a server that is busy or restarting.
        case transient
        /// The disk or quota holding the store (or its scratch space) is full.
        case noSpace
        /// Bytes that do not match their hash or format.
        case corrupt
        /// It exists already, or a condition of the request no longer holds.
        case conflict
        /// A request the backend cannot serve as asked (a caller's bug, or a file system's refusal).
        case invalidArgument
        /// A store written in a format this build does not read.
        case format
        /// Anything else, permanent: permission denied, an I/O error, a refused request.
        case failure
    }

    /// What the backend reported, kept for messages and for the VFS's answer.
    public enum Cause: Sendable, Equatable {
        /// A local system call's errno.
        case errno(Int32)
        /// An HTTP status from an object store.
        case http(Int)
    }

    public let code: Code
    public let message: String
    public let cause: Cause?

    public init(_ code: Code, _ message: String, cause: Cause? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    public var isNoSpace: Bool { code == .noSpace }

    /// The code of a local system call's errno.
    public static func code(ofErrno e: Int32) -> Code {
        switch e {
        case ENOENT: return .notFound
        case ENOSPC, EDQUOT: return .noSpace
        case EEXIST: return .conflict
        case EINVAL: return .invalidArgument
        case EINTR, EAGAIN, ETIMEDOUT: return .transient
        default: return .failure
        }
    }

    /// A failed local system call on `path`, with a hint for the person when there is one.
    public static func syscall(_ op: String, path: String, errno e: Int32) -> StoreError {
        var text = "\(op) \(path): \(String(cString: strerror(e)))"
        if e == ENOSPC || e == EDQUOT {
            text += " (the disk holding the store is full: free space and retry; the store is unchanged)"
        } else if e == EACCES || e == EPERM {
            text += " (check the permissions of the store directory)"
        }
        return StoreError(code(ofErrno: e), text, cause: .errno(e))
    }

    static func corrupt(_ what: String) -> StoreError { StoreError(.corrupt, what) }
}
