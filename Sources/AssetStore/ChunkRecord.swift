/// What a chunk id is the hash of, fixed by the store's format version (Documentation/Format.md, "Hashes").
///
/// Format 1: SHA-256 of the chunk's plain bytes. Format 2: SHA-256 of `"assetfs-chunk-v2\n"`, the raw length
/// (u64 little-endian) and the chunk's 64 KiB block hashes in order. Both cover every plain byte; the second
/// needs no pass over the bytes beyond the block hashes that every record carries anyway, so an import hashes
/// new bytes twice (file hash, block hashes) instead of three times, and a full read checks each block against
/// its hash instead of hashing the chunk as a whole (the same work, and blocks can be checked apart).
public enum ChunkIdentity: Sendable, Equatable {
    /// Format 1.
    case plainBytes
    /// Format 2.
    case blockHashes

    /// The identity of a store of format `version` (nil for a version this build does not know).
    public init?(storeFormat version: Int) {
        switch version {
        case 1: self = .plainBytes
        case 2: self = .blockHashes
        default: return nil
        }
    }

    /// The format version whose chunk ids these are.
    public var storeFormat: Int { self == .plainBytes ? 1 : 2 }

    static let domain = Array("assetfs-chunk-v2\n".utf8)

    /// The format-2 id of a chunk of `rawLength` bytes with these block hashes.
    public static func chunkID(rawLength: Int, blockHashes: [ContentHash]) -> ContentHash {
        var input = domain
        input.reserveCapacity(domain.count + 8 + blockHashes.count * 32)
        input.appendLE(UInt64(rawLength))
        for hash in blockHashes { input.append(contentsOf: hash.bytes) }
        return ContentHash.of(input)
    }
}

/// The byte layout of one chunk inside a pack (Documentation/Format.md, "Chunk records").
///
/// A chunk is split into fixed 64 KiB blocks, each compressed on its own and hashed on its own, so a small
/// random read fetches and verifies one block instead of the whole ~1 MiB chunk. The header and block table
/// are covered by `tableHash`, kept in the catalog, so a partial read trusts nothing it did not check.
public enum ChunkRecord {
    public static let magic: UInt32 = 0x3152_4341  // "ACR1" little-endian
    public static let headerSize = 48
    public static let blockEntrySize = 40
    public static let blockSize = 64 << 10
    /// A block is kept raw unless zstd saves at least this fraction (1/8): incompressible data such as float
    /// tensors then costs no decompression on read.
    static let minimumSavingDivisor = 8

    public static func blockCount(rawLength: Int) -> Int { max(1, (rawLength + blockSize - 1) / blockSize) }
    public static func prefixLength(rawLength: Int) -> Int { headerSize + blockCount(rawLength: rawLength) * blockEntrySize }

    /// A chunk encoded for a pack, plus what the catalog records about it.
    public struct Encoded: Sendable {
        public let id: ContentHash
        public let rawLength: Int
        public let bytes: [UInt8]
        public let tableHash: ContentHash
        public let codec: CodecSummary

        public init(id: ContentHash, rawLength: Int, bytes: [UInt8], tableHash: ContentHash, codec: CodecSummary) {
            self.id = id
            self.rawLength = rawLength
            self.bytes = bytes
            self.tableHash = tableHash
            self.codec = codec
        }
    }

    /// Whether the blocks of a chunk are all raw, all zstd, or both.
    public enum CodecSummary: UInt8, Sendable {
        case raw = 0, zstd = 1, mixed = 2
    }

    /// The 64 KiB block hashes of a chunk's plain bytes, in order.
    public static func blockHashes(_ plain: UnsafeRawBufferPointer) -> [ContentHash] {
        (0..<blockCount(rawLength: plain.count)).map { b in
            ContentHash.of(UnsafeRawBufferPointer(rebasing: plain[(b * blockSize)..<min((b + 1) * blockSize, plain.count)]))
        }
    }

    /// The id of a chunk as `identity` defines it, and its block hashes when they were computed for it (format 2),
    /// to hand to `encode` so that nothing is hashed twice.
    public static func identify(_ plain: UnsafeRawBufferPointer, as identity: ChunkIdentity) -> (id: ContentHash, blockHashes: [ContentHash]?) {
        switch identity {
        case .plainBytes: return (ContentHash.of(plain), nil)
        case .blockHashes:
            let hashes = blockHashes(plain)
            return (ChunkIdentity.chunkID(rawLength: plain.count, blockHashes: hashes), hashes)
        }
    }

    /// `blockHashes`: the chunk's block hashes if the caller has them (from `identify`); computed here if nil.
    public static func encode(_ plain: UnsafeRawBufferPointer, id: ContentHash, blockHashes known: [ContentHash]? = nil,
                              compressor: ZstdCompressor) -> Encoded {
        let count = blockCount(rawLength: plain.count)
        let prefix = prefixLength(rawLength: plain.count)
        var header = [UInt8]()
        header.reserveCapacity(prefix)
        header.appendLE(magic)
        header.appendLE(UInt32(count))
        header.appendLE(UInt32(plain.count))
        header.appendLE(UInt32(blockSize))
        header.append(contentsOf: id.bytes)

        var sawRaw = false, sawZstd = false
        // The record is built in one buffer: each block is compressed (or copied) straight to its place after
        // the prefix, and the table, built alongside, is copied in front at the end. A block is kept only if it
        // fits what it replaces, so the record never outgrows prefix + plain.
        let record = [UInt8](unsafeUninitializedCapacity: prefix + plain.count) { buffer, initialized in
            let out = UnsafeMutableRawBufferPointer(buffer)
            var stored = prefix
            for b in 0..<count {
                let start = b * blockSize
                let block = UnsafeRawBufferPointer(rebasing: plain[start..<min(start + blockSize, plain.count)])
                // Incompressible data (float tensors, already-compressed files) shows it in its first block: skip
                // trying the rest of the chunk rather than paying zstd for nothing.
                let worthTrying = b == 0 || sawZstd
                // zstd must save at least 1/minimumSavingDivisor: a result that does not fit in this fails.
                let limit = block.count - block.count / minimumSavingDivisor - 1
                let compressed = worthTrying && limit > 0
                    ? compressor.compress(block, into: UnsafeMutableRawBufferPointer(rebasing: out[stored..<(stored + limit)]))
                    : nil
                let length: Int
                if let compressed {
                    length = compressed
                    sawZstd = true
                } else {
                    UnsafeMutableRawBufferPointer(rebasing: out[stored..<(stored + block.count)]).copyMemory(from: block)
                    length = block.count
                    sawRaw = true
                }
                stored += length
                header.appendLE(UInt32(length))
                header.append(compressed != nil ? BlockCodec.zstd.rawValue : BlockCodec.raw.rawValue)
                header.append(contentsOf: [0, 0, 0])
                header.append(contentsOf: (known?[b] ?? ContentHash.of(block)).bytes)
            }
            header.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[0..<prefix]).copyMemory(from: $0) }
            initialized = stored
        }
        let tableHash = ContentHash.of(header)
        let summary: CodecSummary = sawRaw && sawZstd ? .mixed : (sawZstd ? .zstd : .raw)
        return Encoded(id: id, rawLength: plain.count, bytes: record, tableHash: tableHash, codec: summary)
    }

    /// One block as described by the table.
    public struct Block: Sendable {
        public let storedOffset: Int  // from the start of the record
        public let storedLength: Int
        public let rawOffset: Int
        public let rawLength: Int
        public let codec: BlockCodec
        public let hash: ContentHash
    }

    /// Parses and checks the header and block table (`prefix` = the first `prefixLength` bytes of the record).
    public static func parseTable(
        _ prefix: UnsafeRawBufferPointer, id: ContentHash, rawLength: Int, recordLength: Int, tableHash: ContentHash
    ) throws -> [Block] {
        let expected = prefixLength(rawLength: rawLength)
        guard prefix.count >= expected else { throw StoreError.corrupt("chunk \(id.short): record header truncated") }
        let table = UnsafeRawBufferPointer(rebasing: prefix[0..<expected])
        guard ContentHash.of(table) == tableHash else {
            throw StoreError.corrupt("chunk \(id.short): block table does not match its hash")
        }
        // Safe to trust the fields from here: they are covered by tableHash from the catalog.
        guard table.loadLE(UInt32.self, at: 0) == magic,
            Int(table.loadLE(UInt32.self, at: 8)) == rawLength,
            Int(table.loadLE(UInt32.self, at: 12)) == blockSize
        else { throw StoreError.corrupt("chunk \(id.short): bad record header") }
        let count = blockCount(rawLength: rawLength)
        var blocks = [Block]()
        blocks.reserveCapacity(count)
        var stored = expected
        for b in 0..<count {
            let e = headerSize + b * blockEntrySize
            let len = Int(table.loadLE(UInt32.self, at: e))
            guard let codec = BlockCodec(rawValue: table[e + 4]) else {
                throw StoreError.corrupt("chunk \(id.short): unknown block codec \(table[e + 4])")
            }
            let rawOff = b * blockSize
            let hash = ContentHash(bytes: UnsafeRawBufferPointer(rebasing: table[(e + 8)..<(e + 40)]))
            blocks.append(Block(storedOffset: stored, storedLength: len, rawOffset: rawOff,
                                rawLength: min(blockSize, rawLength - rawOff), codec: codec, hash: hash))
            stored += len
        }
        guard stored == recordLength else { throw StoreError.corrupt("chunk \(id.short): record length mismatch") }
        return blocks
    }

    /// Decodes one block from its stored bytes into `output` (exactly `block.rawLength` bytes).
    public static func decodeBlock(
        _ block: Block, stored: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
        decompressor: ZstdDecompressor
    ) -> Bool {
        switch block.codec {
        case .raw:
            guard stored.count == block.rawLength else { return false }
            output.copyMemory(from: stored)
            return true
        case .zstd:
            return decompressor.decompress(stored, into: output)
        }
    }

    /// When every block of the record is raw, the range of the record that holds the plain bytes, checked
    /// against the chunk id; nil when some block is compressed (decode it instead).
    public static func rawPayload(
        _ record: UnsafeRawBufferPointer, id: ContentHash, rawLength: Int, tableHash: ContentHash,
        identity: ChunkIdentity = .plainBytes
    ) throws -> Range<Int>? {
        let blocks = try parseTable(record, id: id, rawLength: rawLength, recordLength: record.count, tableHash: tableHash)
        guard blocks.allSatisfy({ $0.codec == .raw && $0.storedLength == $0.rawLength }) else { return nil }
        // parseTable proved the blocks lie back to back from the end of the table to the end of the record.
        let payload = prefixLength(rawLength: rawLength)..<record.count
        guard payload.count == rawLength else { throw StoreError.corrupt("chunk \(id.short): record length mismatch") }
        try verify(UnsafeRawBufferPointer(rebasing: record[payload]), id: id, blocks: blocks, identity: identity)
        return payload
    }

    /// Checks a chunk's plain bytes against its id. Format 1 hashes them whole. Format 2 checks each block
    /// against its hash in the table and the id against the table's block hashes: a table that matches the
    /// catalog's table hash (parseTable checked it) with blocks that match it proves the id.
    static func verify(_ plain: UnsafeRawBufferPointer, id: ContentHash, blocks: [Block], identity: ChunkIdentity) throws {
        switch identity {
        case .plainBytes:
            guard ContentHash.of(plain) == id else {
                throw StoreError.corrupt("chunk \(id.short): content does not match its SHA-256")
            }
        case .blockHashes:
            for block in blocks {
                try verifyBlock(UnsafeRawBufferPointer(rebasing: plain[block.rawOffset..<(block.rawOffset + block.rawLength)]), block, of: id)
            }
            try verifyBlockTableMakes(id, rawLength: plain.count, blocks: blocks)
        }
    }

    /// One block's plain bytes against its hash in the table.
    static func verifyBlock(_ bytes: UnsafeRawBufferPointer, _ block: Block, of id: ContentHash) throws {
        guard ContentHash.of(bytes) == block.hash else {
            throw StoreError.corrupt("chunk \(id.short): block at \(block.rawOffset) does not match its SHA-256")
        }
    }

    /// Format 2: the table's block hashes (and the raw length) must make the chunk id.
    static func verifyBlockTableMakes(_ id: ContentHash, rawLength: Int, blocks: [Block]) throws {
        guard ChunkIdentity.chunkID(rawLength: rawLength, blockHashes: blocks.map(\.hash)) == id else {
            throw StoreError.corrupt("chunk \(id.short): block hashes do not make its id")
        }
    }

    /// Decodes a whole record and checks the plain bytes against the chunk id.
    public static func decode(
        _ record: UnsafeRawBufferPointer, id: ContentHash, rawLength: Int, tableHash: ContentHash,
        identity: ChunkIdentity = .plainBytes, decompressor: ZstdDecompressor
    ) throws -> [UInt8] {
        let blocks = try parseTable(record, id: id, rawLength: rawLength, recordLength: record.count, tableHash: tableHash)
        // Every byte is written by exactly one block (the table covers 0..<rawLength), so no zero-fill.
        let out = try uninitializedBytes(rawLength) { dst in
            for block in blocks {
                let src = UnsafeRawBufferPointer(rebasing: record[block.storedOffset..<(block.storedOffset + block.storedLength)])
                let target = UnsafeMutableRawBufferPointer(rebasing: dst[block.rawOffset..<(block.rawOffset + block.rawLength)])
                guard decodeBlock(block, stored: src, into: target, decompressor: decompressor) else {
                    throw StoreError.corrupt("chunk \(id.short): block at \(block.rawOffset) does not decode")
                }
                // Format 2: each block is checked while it is still in the CPU's cache.
                if identity == .blockHashes { try verifyBlock(UnsafeRawBufferPointer(target), block, of: id) }
            }
            return rawLength
        }
        switch identity {
        case .plainBytes: try out.withUnsafeBytes { try verify($0, id: id, blocks: blocks, identity: identity) }
        case .blockHashes: try verifyBlockTableMakes(id, rawLength: rawLength, blocks: blocks)
        }
        return out
    }
}
