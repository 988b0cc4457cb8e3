import Dispatch

/// Reads chunks back from pack storage and proves every byte against its hash before returning it.
public struct ChunkReader: Sendable {
    public let storage: PackStorage
    /// Whole records fetched from a remote store, kept on this host's disk (nil for local packs).
    public let diskCache: DiskChunkCache?
    /// Large aligned reads for readers that go through a remote pack in order (nil: every read is exact, as
    /// suits a local disk).
    public let segments: SegmentedPackReader?
    /// What the store's chunk ids are hashes of (its format version).
    public let identity: ChunkIdentity
    private let decompressors = DecompressorPool()

    public init(storage: PackStorage, diskCache: DiskChunkCache? = nil, segments: SegmentedPackReader? = nil,
                identity: ChunkIdentity = .plainBytes) {
        self.storage = storage
        self.identity = identity
        self.diskCache = diskCache
        self.segments = segments
    }

    /// Whether this host's disk cache has an entry for chunk `id` (false without a disk cache).
    public func diskCacheHolds(_ id: ContentHash) -> Bool { diskCache?.contains(id) ?? false }

    /// The whole chunk, verified against its SHA-256.
    ///
    /// `inOrder` (here and below): the caller goes on to the chunks stored after this one (a sequential reader's
    /// read-ahead, a prefetch), so a remote record is read through `segments`.
    public func read(_ location: ChunkLocation, inOrder: Bool = false) throws -> [UInt8] {
        try withRecord(location, inOrder: inOrder) { _, raw in try decode(raw, location) }
    }

    /// The whole chunk, verified, as a slice of the buffer it was read into. For an all-raw record (float
    /// tensors, compressed files) the plain bytes are the record's payload, so they are verified and returned
    /// in place instead of being copied: a commit that streams a large base file through this saves one copy of
    /// every byte. Other records are decoded as by `read`.
    public func readSlice(_ location: ChunkLocation, inOrder: Bool = false) throws -> ArraySlice<UInt8> {
        try withRecord(location, inOrder: inOrder) { record, raw in
            if let payload = try ChunkRecord.rawPayload(raw, id: location.id, rawLength: location.rawLength,
                                                        tableHash: location.tableHash, identity: identity) {
                return record[payload]
            }
            return try decode(raw, location)[...]
        }
    }

    /// A chunk's stored record (compressed as it is in its pack), exactly the bytes that were proven against the
    /// chunk's hash. What gc copies into a new pack: copying a second read instead would copy bytes nobody checked.
    public func verifiedRecord(_ location: ChunkLocation, inOrder: Bool = false) throws -> [UInt8] {
        try withRecord(location, inOrder: inOrder) { record, raw in
            if try ChunkRecord.rawPayload(raw, id: location.id, rawLength: location.rawLength, tableHash: location.tableHash,
                                          identity: identity) == nil {
                _ = try decode(raw, location)
            }
            return record
        }
    }

    /// Reads a chunk's whole record and runs `body` on it; damage is reported with the pack and offset. Every
    /// `body` verifies the record against the chunk's hash (that is what makes a disk-cache entry trustworthy):
    /// a cached record is proven again before use, and a record from storage is cached only once proven.
    private func withRecord<T>(_ location: ChunkLocation, inOrder: Bool,
                               _ body: ([UInt8], UnsafeRawBufferPointer) throws -> T) throws -> T {
        guard let diskCache else { return try fetchRecord(location, inOrder: inOrder, body) }
        if let cached = diskCache.record(location.id, length: location.length) {
            do {
                let value = try cached.withUnsafeBytes { try body(cached, $0) }
                StoreMetrics.diskHits.increment()
                StoreMetrics.diskReadBytes.increment(by: cached.count)
                return value
            } catch let error as StoreError where error.code == .corrupt {
                StoreMetrics.diskDamaged.increment()
                diskCache.discard(location.id)  // Damaged on this host's disk: fetched again below, never served.
            }
        }
        StoreMetrics.diskMisses.increment()
        var verified: [UInt8]?
        let result = try fetchRecord(location, inOrder: inOrder) { record, raw in
            let value = try body(record, raw)
            verified = record
            return value
        }
        if let verified { diskCache.store(location.id, verified) }
        return result
    }

    private func fetchRecord<T>(_ location: ChunkLocation, inOrder: Bool,
                                _ body: ([UInt8], UnsafeRawBufferPointer) throws -> T) throws -> T {
        let record = try uninitializedBytes(location.length) {
            if inOrder, let segments { return try segments.read(location.pack, at: location.offset, into: $0) }
            return try storage.read(location.pack, at: location.offset, into: $0)
        }
        guard record.count == location.length else {
            throw StoreError.corrupt("chunk \(location.id.short) in pack \(storage.describe(location.pack)): pack is truncated")
        }
        do {
            return try record.withUnsafeBytes { try body(record, $0) }
        } catch let error as StoreError {
            throw StoreError(error.code, "\(error.message) (pack \(storage.describe(location.pack)), offset \(location.offset))",
                             cause: error.cause)
        }
    }

    private func decode(_ raw: UnsafeRawBufferPointer, _ location: ChunkLocation) throws -> [UInt8] {
        try decompressors.withDecompressor { d in
            try ChunkRecord.decode(raw, id: location.id, rawLength: location.rawLength, tableHash: location.tableHash,
                                   identity: identity, decompressor: d)
        }
    }

    /// The block table of a chunk, verified against the catalog's table hash: what a partial read needs.
    public func blockTable(_ location: ChunkLocation) throws -> [ChunkRecord.Block] {
        let prefixLength = ChunkRecord.prefixLength(rawLength: location.rawLength)
        var prefix = [UInt8](repeating: 0, count: prefixLength)
        _ = try prefix.withUnsafeMutableBytes { try storage.read(location.pack, at: location.offset, into: $0) }
        return try prefix.withUnsafeBytes {
            try ChunkRecord.parseTable($0, id: location.id, rawLength: location.rawLength,
                                       recordLength: location.length, tableHash: location.tableHash)
        }
    }

    /// The block table of an all-raw chunk and one of its blocks, read at the same time.
    ///
    /// In an all-raw record a block's bytes sit at a known place (after the table, at the block's raw offset),
    /// so a cold small read need not wait for the table before fetching the block: both preads are in flight
    /// together, one disk latency instead of two. The block is verified against the table before it is returned.
    public func tableAndRawBlock(_ location: ChunkLocation, index: Int) throws -> (table: [ChunkRecord.Block], block: [UInt8]) {
        let rawOffset = index * ChunkRecord.blockSize
        guard location.codec == .raw, rawOffset >= 0, rawOffset < location.rawLength else {
            let table = try blockTable(location)
            return (table, try readBlock(table[index], of: location))
        }
        let storedOffset = ChunkRecord.prefixLength(rawLength: location.rawLength) + rawOffset
        let pending = PendingRead(count: min(ChunkRecord.blockSize, location.rawLength - rawOffset))
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { [storage] in
            pending.run { try storage.read(location.pack, at: location.offset + UInt64(storedOffset), into: $0) }
        }
        let table: [ChunkRecord.Block]
        do { table = try blockTable(location) } catch { group.wait(); throw error }
        group.wait()
        let block = table[index]
        let bytes = try pending.result()
        guard block.codec == .raw, block.storedOffset == storedOffset, block.storedLength == bytes.count,
              ContentHash.of(bytes) == block.hash else {
            throw StoreError.corrupt("chunk \(location.id.short) block at \(block.rawOffset) in pack \(storage.describe(location.pack)) is damaged")
        }
        return (table, bytes)
    }

    /// One block's plain bytes, verified against the block's hash.
    public func readBlock(_ block: ChunkRecord.Block, of location: ChunkLocation) throws -> [UInt8] {
        var stored = [UInt8](repeating: 0, count: block.storedLength)
        let n = try stored.withUnsafeMutableBytes {
            try storage.read(location.pack, at: location.offset + UInt64(block.storedOffset), into: $0)
        }
        var out = [UInt8](repeating: 0, count: block.rawLength)
        let ok = n == block.storedLength && stored.withUnsafeBytes { src in
            decompressors.withDecompressor { d in
                out.withUnsafeMutableBytes { ChunkRecord.decodeBlock(block, stored: src, into: $0, decompressor: d) }
            }
        }
        guard ok, ContentHash.of(out) == block.hash else {
            throw StoreError.corrupt("chunk \(location.id.short) block at \(block.rawOffset) in pack \(storage.describe(location.pack)) is damaged")
        }
        return out
    }
}

/// A pread run on another thread: its buffer and outcome, read by the caller after the thread is done.
private final class PendingRead: @unchecked Sendable {
    // Written by `run` only, read by `result` only after the DispatchGroup wait (which orders the two).
    private var bytes: [UInt8]
    private var error: Error?

    init(count: Int) { bytes = [UInt8](repeating: 0, count: count) }

    func run(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) {
        do {
            let n = try bytes.withUnsafeMutableBytes { try read($0) }
            if n < bytes.count { bytes.removeLast(bytes.count - n) }
        } catch {
            self.error = error
        }
    }

    func result() throws -> [UInt8] {
        if let error { throw error }
        return bytes
    }
}
