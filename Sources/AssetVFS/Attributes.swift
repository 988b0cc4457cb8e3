import AssetCatalog
#if canImport(Glibc)
import Glibc
#endif

public enum NodeType: Sendable {
    case directory, file, symlink
    /// Special files (workspaces only): the kernel does their I/O, the file system keeps the inode.
    case fifo, socket, characterDevice, blockDevice

    var modeBits: UInt32 {
        switch self {
        case .directory: return UInt32(S_IFDIR)
        case .file: return UInt32(S_IFREG)
        case .symlink: return UInt32(S_IFLNK)
        case .fifo: return UInt32(S_IFIFO)
        case .socket: return UInt32(S_IFSOCK)
        case .characterDevice: return UInt32(S_IFCHR)
        case .blockDevice: return UInt32(S_IFBLK)
        }
    }

    init(_ kind: EntryKind) {
        switch kind {
        case .file: self = .file
        case .directory: self = .directory
        case .symlink: self = .symlink
        case .fifo: self = .fifo
        case .socket: self = .socket
        case .characterDevice: self = .characterDevice
        case .blockDevice: self = .blockDevice
        }
    }
}

/// What `stat` shows for a node, independent of any kernel interface.
public struct Attributes: Sendable {
    public var inode: UInt64
    public var type: NodeType
    public var permissions: UInt32
    public var linkCount: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtimeNs: Int64
    /// Device nodes: the device number.
    public var rdev: UInt64 = 0
    /// Access and status-change times where they are kept apart from the modification time (workspaces); nil
    /// reports the modification time (versions, whose inodes never change).
    public var atimeNs: Int64?
    public var ctimeNs: Int64?

    /// Type and permission bits together, as `st_mode`.
    public var mode: UInt32 { type.modeBits | (permissions & 0o7777) }
    /// 512-byte blocks, so `du` reports the data's real size.
    public var blocks: UInt64 { (size + 511) / 512 }
}

/// How long the kernel may cache an answer: long inside immutable versions, short where things change.
public struct CachePolicy: Sendable {
    public var entrySeconds: Double
    public var attributeSeconds: Double

    public static let immutable = CachePolicy(entrySeconds: 86_400, attributeSeconds: 86_400)
    /// Asset directories, `latest` and tags: new versions and tag moves show within a second.
    public static let changing = CachePolicy(entrySeconds: 1, attributeSeconds: 1)
}

public struct Entry: Sendable {
    public var attributes: Attributes
    public var cache: CachePolicy
}

public struct DirectoryItem: Sendable {
    public var name: [UInt8]
    public var entry: Entry
}
