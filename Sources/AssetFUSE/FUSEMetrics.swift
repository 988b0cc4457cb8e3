import AssetStore
import Metrics
#if canImport(Glibc)
import Glibc
#endif

/// FUSE requests by operation: `assetfs_fuse_request_duration_seconds{operation}` (a histogram, so its
/// `_count` is the number of requests) and `assetfs_fuse_errors_total{operation,errno}`; bytes answered to
/// reads in `assetfs_fuse_read_bytes_total`. Made once (on first use, after the mount bootstrapped its
/// metrics backend), so a request costs two clock reads and an atomic add, not a registry lookup.
enum FUSEMetrics {
    static let durations: [Timer] = FUSEOperation.allCases.map {
        Timer(label: "assetfs_fuse_request_duration_seconds", dimensions: [("operation", "\($0)")], preferredDisplayUnit: .seconds)
    }
    static let readBytes = Counter(label: "assetfs_fuse_read_bytes_total")

    static func failed(_ operation: FUSEOperation, errno: Int32) { errors.increment(ErrorKey(operation: operation.rawValue, errno: errno)) }

    struct ErrorKey: Hashable, Sendable {
        let operation: Int
        let errno: Int32
    }

    static let errors = KeyedCounters<ErrorKey> { key in
        Counter(label: "assetfs_fuse_errors_total",
                dimensions: [("operation", "\(FUSEOperation(rawValue: key.operation)!)"), ("errno", name(of: key.errno))])
    }

    static func name(of errno: Int32) -> String {
        switch errno {
        case ENOENT: return "ENOENT"
        case EIO: return "EIO"
        case EACCES: return "EACCES"
        case EPERM: return "EPERM"
        case EROFS: return "EROFS"
        case ENOSPC: return "ENOSPC"
        case EEXIST: return "EEXIST"
        case ENOTEMPTY: return "ENOTEMPTY"
        case ENODATA: return "ENODATA"
        case ENOSYS: return "ENOSYS"
        case EISDIR: return "EISDIR"
        case ENOTDIR: return "ENOTDIR"
        case EINVAL: return "EINVAL"
        case EBADF: return "EBADF"
        default: return "\(errno)"
        }
    }
}
