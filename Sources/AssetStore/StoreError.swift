#if canImport(Glibc)
import Glibc
#endif

/// A failure in the byte store, with the object it concerns and what to do about it.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        case io(errno: Int32)
        case corrupt
        case missing
        case format
        case invalidArgument
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The errno a file system should answer for this error.
    public var errno: Int32 {
        switch code {
        case .io(let e): return e
        case .corrupt, .missing, .format: return EIO
        case .invalidArgument: return EINVAL
        }
    }

    public var isNoSpace: Bool { code == .io(errno: ENOSPC) || code == .io(errno: EDQUOT) }

    public static func syscall(_ op: String, path: String, errno e: Int32) -> StoreError {
        var text = "\(op) \(path): \(String(cString: strerror(e)))"
        if e == ENOSPC || e == EDQUOT {
            text += " (the disk holding the store is full: free space and retry; the store is unchanged)"
        } else if e == EACCES || e == EPERM {
            text += " (check the permissions of the store directory)"
        }
        return StoreError(.io(errno: e), text)
    }

    static func corrupt(_ what: String) -> StoreError { StoreError(.corrupt, what) }
}
