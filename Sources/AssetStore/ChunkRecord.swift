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

    public static func encode(_ plain: UnsafeRawBufferPointer, id: ContentHash, compressor: ZstdCompressor) -> Encoded {
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
                header.append(contentsOf: ContentHash.of(block).bytes)
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
        _ record: UnsafeRawBufferPointer, id: ContentHash, rawLength: Int, tableHash: ContentHash
    ) throws -> Range<Int>? {
        let blocks = try parseTable(record, id: id, rawLength: rawLength, recordLength: record.count, tableHash: tableHash)
        guard blocks.allSatisfy({ $0.codec == .raw && $0.storedLength == $0.rawLength }) else { return nil }
        // parseTable proved the blocks lie back to back from the end of the table to the end of the record.
        let payload = prefixLength(rawLength: rawLength)..<record.count
        guard payload.count == rawLength else { throw StoreError.corrupt("chunk \(id.short): record length mismatch") }
        guard ContentHash.of(UnsafeRawBufferPointer(rebasing: record[payload])) == id else {
            throw StoreError.corrupt("chunk \(id.short): content does not match its SHA-256")
        }
        return payload
    }

    /// Decodes a whole record and checks the plain bytes against the chunk id.
    public static func decode(
        _ record: UnsafeRawBufferPointer, id: ContentHash, rawLength: Int, tableHash: ContentHash,
        decompressor: ZstdDecompressor
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
            }
            return rawLength
        }
        guard ContentHash.of(out) == id else {
            throw StoreError.corrupt("chunk \(id.short): content does not match its SHA-256")
        }
        return out
    }
}
