#if canImport(Glibc)
import Glibc
#endif

/// Where a chunk's record lives: what the chunk index in the catalog stores for each chunk id.
public struct ChunkLocation: Sendable, Hashable {
    public let id: ContentHash
    public let pack: ContentHash
    public let offset: UInt64
    public let length: Int
    public let rawLength: Int
    public let codec: ChunkRecord.CodecSummary
    public let tableHash: ContentHash

    public init(id: ContentHash, pack: ContentHash, offset: UInt64, length: Int, rawLength: Int,
                codec: ChunkRecord.CodecSummary, tableHash: ContentHash) {
        self.id = id
        self.pack = pack
        self.offset = offset
        self.length = length
        self.rawLength = rawLength
        self.codec = codec
        self.tableHash = tableHash
    }
}

/// A pack as a backend lists it.
public struct StoredPack: Sendable, Hashable {
    public let id: ContentHash
    public let size: UInt64
    /// When the object was written (ns since the epoch), where the backend says: gc leaves younger orphans alone.
    public let modifiedNs: Int64?

    public init(id: ContentHash, size: UInt64, modifiedNs: Int64? = nil) {
        self.id = id
        self.size = size
        self.modifiedNs = modifiedNs
    }
}

/// A complete pack in local scratch space, handed to `PackStorage.put`. It can be read any number of times
/// from any offset, with ordinary reads into any buffer (pread only, no shared file offset; the descriptor is not
/// in direct-I/O mode), so a backend that must retry an upload reads it again from the start. It belongs to the writer: a backend never closes, moves or deletes it.
public struct PackSource: Sendable {
    public let path: String
    public let descriptor: FileDescriptor
    public let size: UInt64

    public init(path: String, descriptor: FileDescriptor, size: UInt64) {
        self.path = path
        self.descriptor = descriptor
        self.size = size
    }

    /// The whole pack (for backends that send it in one piece; packs are tens of MiB).
    public func readAll() throws -> [UInt8] {
        let bytes = try descriptor.pread(count: Int(size), at: 0)
        guard bytes.count == Int(size) else {
            throw StoreError(.failure, "scratch pack \(path) ended after \(bytes.count) of its \(size) bytes")
        }
        return bytes
    }
}

extension PackSource {
    /// A source holding `contents` in a new file of `directory`, for a small object written beside the packs
    /// (a store's marker). The caller removes it with `discard()`.
    public static func scratch(in directory: String, contents: [UInt8]) throws -> PackSource {
        var template = Array("\(directory)/object-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if fd < 0 { throw StoreError.syscall("create", path: path, errno: errno) }
        let descriptor = FileDescriptor(raw: fd, path: path)
        do {
            try contents.withUnsafeBytes { try descriptor.pwrite($0, at: 0) }
        } catch {
            descriptor.close()
            unlink(path)
            throw error
        }
        return PackSource(path: path, descriptor: descriptor, size: UInt64(contents.count))
    }

    /// Closes and deletes a `scratch` source.
    public func discard() {
        descriptor.close()
        unlink(path)
    }
}

/// Storage of immutable, content-named pack files. The local directory is the first backend; an S3-compatible
/// object store is meant to be a second implementation of this protocol (`put` uploads, `read` becomes a ranged
/// GET). Writers build packs in local scratch space (`PackWriter`); a backend only stores finished ones.
public protocol PackStorage: Sendable {
    /// Human-readable place of the storage, for messages.
    var location: String { get }
    /// A local directory where writers build packs before `put`. The local backend's is on the packs' file
    /// system, so that `put` links the file into place instead of copying it. Files there belong to running
    /// writers; those of crashed writers are removed by gc (`PackWriter.removeAbandonedScratch`).
    var scratchDirectory: String { get }
    /// Makes the complete pack in `source` durable under its content name: afterwards it survives a crash.
    /// Leaves `source` as it was, so a failed call can be retried with the same source; storing a pack that
    /// already exists is not an error (names are content: the bytes are the same).
    func put(_ id: ContentHash, from source: PackSource) throws
    /// Reads up to `buffer.count` bytes at `offset` of pack `id`; returns how many were read.
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// The size of a pack, or nil if it does not exist.
    func size(of id: ContentHash) throws -> UInt64?
    func delete(_ id: ContentHash) throws
    /// Every stored pack with its size, in one listing (no request per pack).
    func list() throws -> [StoredPack]
    /// A readable description of the pack's place (a path for the local backend).
    func describe(_ id: ContentHash) -> String
}
