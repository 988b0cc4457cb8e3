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

/// A pack being written in local scratch space, not yet visible to readers.
public struct StagingPack: Sendable {
    public let path: String
    public let descriptor: FileDescriptor
}

/// Storage of immutable, content-named pack files. The local directory is the first backend; an S3-compatible
/// object store is meant to be a second implementation of this protocol (staging stays local, `publish` uploads,
/// `read` becomes a ranged GET).
public protocol PackStorage: Sendable {
    /// Human-readable place of the storage, for messages.
    var location: String { get }
    /// Opens a new private staging file for a pack under construction. `PackWriter` writes it only in whole,
    /// page-aligned pages (then cuts it to size), so it may be opened for direct I/O.
    func makeStagingPack() throws -> StagingPack
    /// Makes a complete, fsynced staging pack durable under its content name; afterwards it survives a crash.
    /// Consumes `staging` on every path: closes its descriptor, and on failure removes its file.
    func publish(_ staging: StagingPack, as id: ContentHash) throws
    /// Reads up to `buffer.count` bytes at `offset` of pack `id`; returns how many were read.
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// The size of a pack, or nil if it does not exist.
    func size(of id: ContentHash) throws -> UInt64?
    func delete(_ id: ContentHash) throws
    func list() throws -> [ContentHash]
    /// Removes staging files left by crashed writers. Callers hold the store's exclusive maintenance lock.
    func removeStaging() throws -> Int
    /// A readable description of the pack's place (a path for the local backend).
    func describe(_ id: ContentHash) -> String
}
