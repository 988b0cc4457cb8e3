import AssetTestSupport
import AssetStore
import Testing

private func encode(_ plain: [UInt8], _ identity: ChunkIdentity = .plainBytes) -> ChunkRecord.Encoded {
    plain.withUnsafeBytes {
        let (id, blockHashes) = ChunkRecord.identify($0, as: identity)
        return ChunkRecord.encode($0, id: id, blockHashes: blockHashes, compressor: ZstdCompressor())
    }
}

private func decode(_ record: [UInt8], _ encoded: ChunkRecord.Encoded, _ identity: ChunkIdentity = .plainBytes) throws -> [UInt8] {
    try record.withUnsafeBytes {
        try ChunkRecord.decode($0, id: encoded.id, rawLength: encoded.rawLength, tableHash: encoded.tableHash,
                               identity: identity, decompressor: ZstdDecompressor())
    }
}

extension ChunkIdentity: CustomTestStringConvertible {
    public var testDescription: String { "format \(storeFormat)" }
}

private let identities: [ChunkIdentity] = [.plainBytes, .blockHashes]

private func table(_ encoded: ChunkRecord.Encoded) throws -> [ChunkRecord.Block] {
    try encoded.bytes.withUnsafeBytes {
        try ChunkRecord.parseTable($0, id: encoded.id, rawLength: encoded.rawLength, recordLength: encoded.bytes.count,
                                   tableHash: encoded.tableHash)
    }
}

enum Sample: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case text, random, oneByte, oneBlock, twoBlocks, sixteenBlocks, textThenRandom, randomThenText

    var bytes: [UInt8] {
        let block = ChunkRecord.blockSize
        switch self {
        case .text: return textBytes(300_000, seed: 1)
        case .random: return randomBytes(200_000, seed: 2)
        case .oneByte: return [0x5A]
        case .oneBlock: return randomBytes(block, seed: 3)
        case .twoBlocks: return textBytes(2 * block, seed: 4)
        case .sixteenBlocks: return randomBytes(16 * block, seed: 5)
        case .textThenRandom: return textBytes(block, seed: 6) + randomBytes(100_000, seed: 7)
        case .randomThenText: return randomBytes(block, seed: 8) + textBytes(100_000, seed: 9)
        }
    }

    var testDescription: String { rawValue }
}

@Suite("ChunkRecord")
struct ChunkRecordTests {
    @Test("encode/decode round trip", arguments: Sample.allCases, identities)
    func roundTrip(sample: Sample, identity: ChunkIdentity) throws {
        let plain = sample.bytes
        let encoded = encode(plain, identity)
        switch identity {
        case .plainBytes: #expect(encoded.id == ContentHash.of(plain))
        case .blockHashes:
            // Format 2: the hash of the domain, the length and the block hashes, computed here independently.
            var input = Array("assetfs-chunk-v2\n".utf8)
            withUnsafeBytes(of: UInt64(plain.count).littleEndian) { input += $0 }
            for start in stride(from: 0, to: max(plain.count, 1), by: ChunkRecord.blockSize) {
                input += ContentHash.of(Array(plain[start..<min(plain.count, start + ChunkRecord.blockSize)])).bytes
            }
            #expect(encoded.id == ContentHash.of(input))
            #expect(encoded.id != ContentHash.of(plain))
            // The record differs from format 1's only in the id in its header (bytes 16..<48).
            let formatOne = encode(plain).bytes
            #expect(encoded.bytes.prefix(16) == formatOne.prefix(16) && encoded.bytes.dropFirst(48) == formatOne.dropFirst(48))
        }
        #expect(encoded.rawLength == plain.count)
        #expect(encoded.bytes.count >= ChunkRecord.prefixLength(rawLength: plain.count))
        #expect(encoded.tableHash == ContentHash.of(Array(encoded.bytes[0..<ChunkRecord.prefixLength(rawLength: plain.count)])))
        let decoded = try decode(encoded.bytes, encoded, identity)
        #expect(decoded == plain)
        // A record is only proven under its own store's identity: the other format's check refuses it.
        let other: ChunkIdentity = identity == .plainBytes ? .blockHashes : .plainBytes
        #expect(throws: StoreError.self) { try decode(encoded.bytes, encoded, other) }

        // The block table describes exactly the plain bytes, block by block.
        let blocks = try table(encoded)
        #expect(blocks.count == (plain.count + ChunkRecord.blockSize - 1) / ChunkRecord.blockSize)
        var stored = ChunkRecord.prefixLength(rawLength: plain.count)
        for (i, block) in blocks.enumerated() {
            #expect(block.rawOffset == i * ChunkRecord.blockSize)
            #expect(block.rawLength == min(ChunkRecord.blockSize, plain.count - block.rawOffset))
            #expect(block.storedOffset == stored)
            #expect(block.hash == ContentHash.of(Array(plain[block.rawOffset..<(block.rawOffset + block.rawLength)])))
            if block.codec == .raw { #expect(block.storedLength == block.rawLength) }
            if block.codec == .zstd { #expect(block.storedLength < block.rawLength) }
            stored += block.storedLength
        }
        #expect(stored == encoded.bytes.count)
    }

    @Test("codecs: text is compressed, random bytes are kept raw, the first block decides for the chunk")
    func codecChoice() throws {
        let text = encode(Sample.text.bytes)
        #expect(text.codec == .zstd)
        #expect(text.bytes.count < Sample.text.bytes.count / 2)
        #expect(try table(text).allSatisfy { $0.codec == .zstd })

        let random = encode(Sample.random.bytes)
        #expect(random.codec == .raw)
        #expect(try table(random).allSatisfy { $0.codec == .raw })

        let mixed = encode(Sample.textThenRandom.bytes)
        #expect(mixed.codec == .mixed)
        #expect(try table(mixed).map(\.codec) == [.zstd, .raw, .raw])

        // Format.md: if the first block does not compress, the whole chunk is stored raw.
        let rawFirst = encode(Sample.randomThenText.bytes)
        #expect(rawFirst.codec == .raw)
        #expect(try table(rawFirst).allSatisfy { $0.codec == .raw })
    }

    @Test("a flipped byte anywhere in the record is detected, never returned as data",
          arguments: [Sample.text, Sample.random, Sample.textThenRandom, Sample.oneByte], identities)
    func flippedByteIsDetected(sample: Sample, identity: ChunkIdentity) throws {
        let plain = sample.bytes
        let encoded = encode(plain, identity)
        let prefix = ChunkRecord.prefixLength(rawLength: plain.count)
        let blocks = try table(encoded)
        // Every byte of the header and block table, and a spread of payload bytes in every block.
        var positions = Array(0..<prefix)
        for block in blocks {
            let step = max(1, block.storedLength / 23)
            positions += stride(from: block.storedOffset, to: block.storedOffset + block.storedLength, by: step)
            positions.append(block.storedOffset + block.storedLength - 1)
        }
        var detected = 0
        for position in positions {
            var damaged = encoded.bytes
            damaged[position] ^= 0x41
            do {
                let out = try decode(damaged, encoded, identity)
                // Not detected: acceptable only if the bytes are still exactly right (a zstd frame bit that does not matter).
                #expect(out == plain, "byte \(position) flipped: decode returned wrong bytes")
                let block = blocks.first { position >= $0.storedOffset && position < $0.storedOffset + $0.storedLength }
                #expect(block?.codec == .zstd, "byte \(position) flipped in header, table or raw payload went unnoticed")
            } catch let error as StoreError {
                #expect(error.code == .corrupt)
                detected += 1
            }
        }
        #expect(detected * 10 >= positions.count * 9, "only \(detected) of \(positions.count) flips detected")

        // Truncation, a wrong table hash, a wrong id and a wrong length are refused too.
        #expect(throws: StoreError.self) { try decode(Array(encoded.bytes.dropLast()), encoded, identity) }
        #expect(throws: StoreError.self) { try decode(encoded.bytes + [0], encoded, identity) }
        #expect(throws: StoreError.self) {
            try encoded.bytes.withUnsafeBytes {
                try ChunkRecord.decode($0, id: encoded.id, rawLength: encoded.rawLength,
                                       tableHash: ContentHash.of([1, 2, 3]), identity: identity, decompressor: ZstdDecompressor())
            }
        }
        #expect(throws: StoreError.self) {
            try encoded.bytes.withUnsafeBytes {
                try ChunkRecord.decode($0, id: ContentHash.of([9]), rawLength: encoded.rawLength,
                                       tableHash: encoded.tableHash, identity: identity, decompressor: ZstdDecompressor())
            }
        }
        #expect(throws: StoreError.self) {
            try encoded.bytes.withUnsafeBytes {
                try ChunkRecord.decode($0, id: encoded.id, rawLength: encoded.rawLength + 1,
                                       tableHash: encoded.tableHash, identity: identity, decompressor: ZstdDecompressor())
            }
        }
    }

    @Test("the same plain bytes always encode to the same record")
    func encodingIsDeterministic() {
        for sample in Sample.allCases {
            let a = encode(sample.bytes), b = encode(sample.bytes)
            #expect(a.bytes == b.bytes)
            #expect(a.tableHash == b.tableHash)
        }
    }

    @Test("an all-raw record's payload is its plain bytes, verified in place; a flipped payload byte is refused",
          arguments: Sample.allCases, identities)
    func rawPayload(sample: Sample, identity: ChunkIdentity) throws {
        let plain = sample.bytes
        let encoded = encode(plain, identity)
        func payload(_ record: [UInt8]) throws -> Range<Int>? {
            try record.withUnsafeBytes {
                try ChunkRecord.rawPayload($0, id: encoded.id, rawLength: encoded.rawLength, tableHash: encoded.tableHash,
                                           identity: identity)
            }
        }
        let allRaw = try table(encoded).allSatisfy { $0.codec == .raw }
        guard let range = try payload(encoded.bytes) else {
            #expect(!allRaw, "an all-raw record must be served in place")
            return
        }
        #expect(allRaw)
        #expect(Array(encoded.bytes[range]) == plain)
        var damaged = encoded.bytes
        damaged[range.lowerBound + range.count / 2] ^= 0x01
        #expect(throws: StoreError.self) { _ = try payload(damaged) }
    }
}
