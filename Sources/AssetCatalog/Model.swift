import AssetStore
#if canImport(Glibc)
import Glibc
#endif

public enum Clock {
    public static func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return nanoseconds(ts)
    }
}

public enum EntryKind: UInt8, Sendable, Codable {
    case file = 0
    case directory = 1
    case symlink = 2
    // Special files: only in workspaces, where programs make them (the kernel does their I/O). Versions hold
    // files, directories and symlinks; import and commit skip these, each with a warning that names it.
    case fifo = 3
    case socket = 4
    case characterDevice = 5
    case blockDevice = 6

    /// The kind of a `st_mode`'s file type, nil for an unknown type.
    public init?(fileType mode: UInt32) {
        switch mode & UInt32(S_IFMT) {
        case UInt32(S_IFREG): self = .file
        case UInt32(S_IFDIR): self = .directory
        case UInt32(S_IFLNK): self = .symlink
        case UInt32(S_IFIFO): self = .fifo
        case UInt32(S_IFSOCK): self = .socket
        case UInt32(S_IFCHR): self = .characterDevice
        case UInt32(S_IFBLK): self = .blockDevice
        default: return nil
        }
    }

    /// FIFOs, sockets and device nodes: what a version cannot hold.
    public var isSpecial: Bool { rawValue >= EntryKind.fifo.rawValue }

    /// As people name it ("fifo", "character device"), for messages.
    public var description: String {
        switch self {
        case .file: return "file"
        case .directory: return "directory"
        case .symlink: return "symlink"
        case .fifo: return "fifo"
        case .socket: return "socket"
        case .characterDevice: return "character device"
        case .blockDevice: return "block device"
        }
    }

    /// The warning import and commit give for a special file they leave out of a version.
    public static func skippedWarning(_ kind: String, path: String) -> String {
        "skipped \(kind) \(path): only files, directories and symlinks are stored"
    }
}

/// One name in a directory of a version. Names are raw bytes: non-UTF-8 names round-trip.
public struct TreeEntry: Sendable, Equatable {
    public var name: [UInt8]
    public var kind: EntryKind
    public var mode: UInt32  // permission bits only (07777)
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtimeNs: Int64
    public var target: [UInt8]?  // symlink target
    public var fileID: Int64?
    public var subtreeID: Int64?

    public init(name: [UInt8], kind: EntryKind, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, mtimeNs: Int64,
                target: [UInt8]? = nil, fileID: Int64? = nil, subtreeID: Int64? = nil) {
        self.name = name
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtimeNs = mtimeNs
        self.target = target
        self.fileID = fileID
        self.subtreeID = subtreeID
    }

    public var displayName: String { String(decoding: name, as: UTF8.self) }
}

public struct TreeInfo: Sendable, Equatable {
    public let id: Int64
    public let hash: ContentHash
    public let entryCount: Int
    public let fileCount: Int
    public let totalSize: UInt64

    public init(id: Int64, hash: ContentHash, entryCount: Int, fileCount: Int, totalSize: UInt64) {
        self.id = id
        self.hash = hash
        self.entryCount = entryCount
        self.fileCount = fileCount
        self.totalSize = totalSize
    }
}

public struct FileInfo: Sendable {
    public let id: Int64
    public let hash: ContentHash
    public let size: UInt64
    public let chunkCount: Int

    public init(id: Int64, hash: ContentHash, size: UInt64, chunkCount: Int) {
        self.id = id
        self.hash = hash
        self.size = size
        self.chunkCount = chunkCount
    }
}

/// A chunk of a file at its offset; the ordered list allows binary search for any read offset.
public struct FileChunk: Sendable {
    public let offset: UInt64
    public let location: ChunkLocation

    public init(offset: UInt64, location: ChunkLocation) {
        self.offset = offset
        self.location = location
    }
}

public struct AssetInfo: Sendable, Codable {
    public let id: Int64
    public let name: String
    public let createdNs: Int64
    public let versionCount: Int
    public let latest: Int?

    public init(id: Int64, name: String, createdNs: Int64, versionCount: Int, latest: Int?) {
        self.id = id
        self.name = name
        self.createdNs = createdNs
        self.versionCount = versionCount
        self.latest = latest
    }
}

public struct MetaItem: Sendable, Codable, Equatable {
    public let key: String
    public let value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

public struct VersionInfo: Sendable {
    public let id: Int64
    public let asset: String
    public let number: Int
    public let parent: Int?
    public let createdNs: Int64
    public let author: String
    public let message: String
    public let rootTreeID: Int64
    public let rootHash: ContentHash
    public let fileCount: Int
    public let logicalBytes: UInt64
    public let newBytes: UInt64
    public let meta: [MetaItem]
    public var tags: [String]

    public init(id: Int64, asset: String, number: Int, parent: Int?, createdNs: Int64, author: String, message: String, rootTreeID: Int64, rootHash: ContentHash, fileCount: Int, logicalBytes: UInt64, newBytes: UInt64, meta: [MetaItem], tags: [String]) {
        self.id = id
        self.asset = asset
        self.number = number
        self.parent = parent
        self.createdNs = createdNs
        self.author = author
        self.message = message
        self.rootTreeID = rootTreeID
        self.rootHash = rootHash
        self.fileCount = fileCount
        self.logicalBytes = logicalBytes
        self.newBytes = newBytes
        self.meta = meta
        self.tags = tags
    }
}

/// What a new version records; the catalog assigns the number.
public struct NewVersion: Sendable {
    public var rootTreeID: Int64
    public var parent: Int?
    public var author: String
    public var message: String
    public var fileCount: Int
    public var logicalBytes: UInt64
    public var newBytes: UInt64
    public var meta: [MetaItem]
    public var tag: String?
    /// Written in the same transaction as the version (Documentation/Lineage.md); nil or empty: none.
    public var lineage: LineageRecord?

    public init(rootTreeID: Int64, parent: Int?, author: String, message: String, fileCount: Int,
                logicalBytes: UInt64, newBytes: UInt64, meta: [MetaItem], tag: String?, lineage: LineageRecord? = nil) {
        self.lineage = lineage
        self.rootTreeID = rootTreeID
        self.parent = parent
        self.author = author
        self.message = message
        self.fileCount = fileCount
        self.logicalBytes = logicalBytes
        self.newBytes = newBytes
        self.meta = meta
        self.tag = tag
    }
}

public struct AuditEntry: Sendable, Codable {
    public let id: Int64
    public let atNs: Int64
    public let user: String
    public let action: String
    public let asset: String
    public let subject: String
    public let from: String?
    public let to: String?
    public let detail: String

    public init(id: Int64, atNs: Int64, user: String, action: String, asset: String, subject: String, from: String?, to: String?, detail: String) {
        self.id = id
        self.atNs = atNs
        self.user = user
        self.action = action
        self.asset = asset
        self.subject = subject
        self.from = from
        self.to = to
        self.detail = detail
    }
}

/// A row of the stat cache: how the source file looked when it was last imported, and what it was.
public struct StatCacheEntry: Sendable {
    public let size: UInt64
    public let mtimeNs: Int64
    public let ctimeNs: Int64
    public let inode: UInt64
    public let fileID: Int64
    public init(size: UInt64, mtimeNs: Int64, ctimeNs: Int64, inode: UInt64, fileID: Int64) {
        self.size = size
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
        self.inode = inode
        self.fileID = fileID
    }
}

public struct StoreStatistics: Sendable, Codable {
    public var assets = 0
    public var versions = 0
    public var logicalBytes: UInt64 = 0
    public var uniqueFileBytes: UInt64 = 0
    public var chunkRawBytes: UInt64 = 0
    public var chunkStoredBytes: UInt64 = 0
    public var chunks = 0
    public var packs = 0
    public var packBytes: UInt64 = 0
    public init() {}
}

public struct WorkspaceInfo: Sendable, Codable {
    public let id: Int64
    public let asset: String
    public let name: String
    /// The version the next commit names as its parent.
    public let baseVersion: Int
    /// The tree the overlay's changes are relative to (the version it was created from).
    public let baseTreeID: Int64
    public let createdNs: Int64
    public let createdBy: String
    /// The host whose disk holds the workspace's changes ("" when created before hosts were recorded).
    public let host: String

    public init(id: Int64, asset: String, name: String, baseVersion: Int, baseTreeID: Int64, createdNs: Int64, createdBy: String, host: String) {
        self.id = id
        self.asset = asset
        self.name = name
        self.baseVersion = baseVersion
        self.baseTreeID = baseTreeID
        self.createdNs = createdNs
        self.createdBy = createdBy
        self.host = host
    }
}

/// What a session does: import and commit write new rows that may reuse chunks, gc deletes what nothing uses,
/// a mount only reads.
public enum SessionKind: String, Sendable, Codable, CaseIterable {
    case `import`, commit, gc, mount

    /// Kinds that gc must never run beside (they may reuse a chunk gc is about to drop).
    public static let writers: Set<SessionKind> = [.import, .commit]
}

public struct NewSession: Sendable {
    public var host: String
    public var pid: Int32
    public var kind: SessionKind
    public var expiresNs: Int64

    public init(host: String, pid: Int32, kind: SessionKind, expiresNs: Int64) {
        self.host = host
        self.pid = pid
        self.kind = kind
        self.expiresNs = expiresNs
    }
}

public struct SessionInfo: Sendable, Equatable {
    public let id: Int64
    public let host: String
    public let pid: Int32
    public let kind: SessionKind
    public let startedNs: Int64
    public let expiresNs: Int64

    public init(id: Int64, host: String, pid: Int32, kind: SessionKind, startedNs: Int64, expiresNs: Int64) {
        self.id = id
        self.host = host
        self.pid = pid
        self.kind = kind
        self.startedNs = startedNs
        self.expiresNs = expiresNs
    }

    /// "gc on host-b (pid 4242)", for messages.
    public var summary: String { "\(kind.rawValue) on \(host) (pid \(pid))" }
}

public enum SessionOpening: Sendable {
    case opened(SessionInfo)
    /// The live sessions that prevent it.
    case blocked([SessionInfo])
}

public struct DoomedPack: Sendable, Equatable {
    public let id: ContentHash
    public let size: UInt64
    public let doomedNs: Int64

    public init(id: ContentHash, size: UInt64, doomedNs: Int64) {
        self.id = id
        self.size = size
        self.doomedNs = doomedNs
    }
}
