// libFuzzer harness for assetfs's on-disk parsers: ChunkRecord.parseTable / ChunkRecord.decode and
// PackIndexReader.read (through an in-memory PackStorage) plus ChunkReader over what the footer claims.
//
// Compiled by Fuzz/run.sh in one module together with Sources/AssetStore/*.swift (so the parsers carry the
// fuzzer's coverage instrumentation), linked against the Crypto objects of the debug build.
//
// The first input byte selects the target:
//   0  record, self-consistent metadata: rawLength and id from the record's own header, table hash recomputed
//      over its prefix (as if a catalog agreed with whatever the record says). decode must throw or return bytes
//      whose SHA-256 is the id.
//   1  record, parseTable only, with the same self-consistent metadata; every block it returns must lie inside
//      the record and be decodable without trapping.
//   2  pack bytes: PackIndexReader.read, then ChunkReader.read of every location it returns (at most 64); a
//      returned chunk must hash to its id.
//   3  record, trusted metadata of a fixed valid record (the catalog's view): decode must throw unless the
//      input is exactly that record.
// Any trap (overflow, out-of-bounds slice, precondition) or a wrong-bytes check is a finding.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class FuzzPackStorage: PackStorage, @unchecked Sendable {
    var packs: [ContentHash: [UInt8]] = [:]
    var location: String { "memory" }

    var scratchDirectory: String { "/tmp" }

    func put(_ id: ContentHash, from source: PackSource) throws {
        packs[id] = try source.readAll()
    }

    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let bytes = packs[id] else { throw StoreError(.notFound, "missing") }
        guard offset < UInt64(bytes.count) else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
        return n
    }

    func size(of id: ContentHash) throws -> UInt64? { packs[id].map { UInt64($0.count) } }
    func delete(_ id: ContentHash) throws { packs[id] = nil }
    func list() throws -> [StoredPack] { packs.map { StoredPack(id: $0.key, size: UInt64($0.value.count)) } }
    func describe(_ id: ContentHash) -> String { "memory" }
}

/// Deterministic sample chunk contents: raw, compressible (zstd), mixed, tiny, block-aligned.
func sampleChunks() -> [[UInt8]] {
    var state: UInt64 = 0x6173_7365_7466_7331
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    let random = (0..<20_000).map { _ in UInt8(truncatingIfNeeded: next()) }
    let text = Array(String(repeating: "id,label,score\n1,cat,0.5\n2,dog,0.25\n", count: 3000).utf8)
    // raw, one zstd block, two zstd blocks, raw, mixed (zstd block then a raw block), one byte
    return [Array(random[0..<100]), Array(text[0..<65_536]), Array(text[0..<80_000]), random,
            Array(text[0..<65_536]) + Array(random[0..<3_000]), [7]]
}

/// The fixed valid record of target 3 (the "catalog" knows its id, raw length and table hash).
let trusted: ChunkRecord.Encoded = {
    let plain = sampleChunks()[4]  // mixed: a zstd block and a raw block
    return plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of(plain), compressor: ZstdCompressor()) }
}()

let decompressor = ZstdDecompressor()

@inline(never) func finding(_ what: String) -> Never {
    fatalError("FUZZ FINDING: \(what)")
}

/// Metadata as the record's own header states it, bounded so the harness itself stays within memory.
func selfConsistent(_ record: UnsafeRawBufferPointer) -> (ContentHash, Int, ContentHash)? {
    guard record.count >= 48 else { return nil }
    let rawLength = Int(record.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
    guard rawLength <= 4 << 20 else { return nil }
    let id = ContentHash(bytes: UnsafeRawBufferPointer(rebasing: record[16..<48]))
    let prefix = ChunkRecord.prefixLength(rawLength: rawLength)
    let table = record.count >= prefix ? ContentHash.of(UnsafeRawBufferPointer(rebasing: record[0..<prefix])) : ContentHash.of(record)
    return (id, rawLength, table)
}

/// ASSETFS_FUZZ_SKIP_KNOWN=1: skip inputs that trigger findings already kept as regression tests, so a long run
/// looks for new ones. Known finding 1: PackIndexReader.read traps ("arithmetic overflow") on a footer entry whose
/// offset + length overflows UInt64 (Sources/AssetStore/PackIndexReader.swift, `offset + UInt64(length) <= size`).
let skipKnown = ProcessInfo.processInfo.environment["ASSETFS_FUZZ_SKIP_KNOWN"] == "1"

func hitsKnownOverflow(_ pack: UnsafeRawBufferPointer) -> Bool {
    guard pack.count >= 32 else { return false }
    let count = Int(pack.loadUnaligned(fromByteOffset: pack.count - 16, as: UInt32.self).littleEndian)
    let footer = count * 88
    guard footer + 32 <= pack.count else { return false }
    let start = pack.count - 16 - footer
    for i in 0..<count {
        let e = start + i * 88
        let offset = pack.loadUnaligned(fromByteOffset: e + 32, as: UInt64.self).littleEndian
        let length = UInt64(pack.loadUnaligned(fromByteOffset: e + 40, as: UInt32.self).littleEndian)
        if offset > UInt64.max - length { return true }
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 4 {
    case 0:
        guard let (id, rawLength, table) = selfConsistent(input) else { return 0 }
        if let plain = try? ChunkRecord.decode(input, id: id, rawLength: rawLength, tableHash: table, decompressor: decompressor) {
            if plain.count != rawLength || ContentHash.of(plain) != id { finding("decode returned bytes that do not match the id") }
        }
    case 1:
        guard let (id, rawLength, table) = selfConsistent(input) else { return 0 }
        guard let blocks = try? ChunkRecord.parseTable(input, id: id, rawLength: rawLength, recordLength: input.count, tableHash: table) else { return 0 }
        var out = [UInt8](repeating: 0, count: ChunkRecord.blockSize)
        for b in blocks {
            guard b.storedOffset >= 0, b.storedLength >= 0, b.storedOffset + b.storedLength <= input.count,
                b.rawLength >= 0, b.rawLength <= ChunkRecord.blockSize
            else { finding("parseTable returned a block outside the record: \(b)") }
            let stored = UnsafeRawBufferPointer(rebasing: input[b.storedOffset..<(b.storedOffset + b.storedLength)])
            out.withUnsafeMutableBytes { dst in
                _ = ChunkRecord.decodeBlock(b, stored: stored, into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<b.rawLength]), decompressor: decompressor)
            }
        }
    case 2:
        if skipKnown && hitsKnownOverflow(input) { return 0 }
        let storage = FuzzPackStorage()
        let packID = ContentHash(bytes: [UInt8](repeating: 0xAB, count: 32))
        storage.packs[packID] = Array(input)
        guard let locations = try? PackIndexReader.read(packID, from: storage) else { return 0 }
        let reader = ChunkReader(storage: storage)
        for loc in locations.prefix(64) {
            guard loc.offset + UInt64(loc.length) <= UInt64(input.count) else { finding("footer location outside the pack: \(loc)") }
            guard loc.rawLength <= 4 << 20, loc.length <= 8 << 20 else { continue }
            if let plain = try? reader.read(loc), ContentHash.of(plain) != loc.id { finding("ChunkReader returned bytes that do not match the id") }
            if let blocks = try? reader.blockTable(loc) {
                for b in blocks.prefix(8) {
                    if let plain = try? reader.readBlock(b, of: loc), ContentHash.of(plain) != b.hash { finding("readBlock returned bytes that do not match the block hash") }
                }
            }
        }
    default:
        if let plain = try? ChunkRecord.decode(input, id: trusted.id, rawLength: trusted.rawLength, tableHash: trusted.tableHash, decompressor: decompressor) {
            if !input.elementsEqual(trusted.bytes) && ContentHash.of(plain) != trusted.id { finding("a damaged record decoded to wrong bytes") }
        }
    }
    return 0
}

/// Writes the seed corpus (valid records and packs) into $ASSETFS_FUZZ_SEEDS when it is set.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    guard let dir = ProcessInfo.processInfo.environment["ASSETFS_FUZZ_SEEDS"] else { return 0 }
    let compressor = ZstdCompressor()
    var seeds: [[UInt8]] = []
    let storage = FuzzPackStorage()
    let writer = PackWriter(storage: storage)
    for plain in sampleChunks() {
        let encoded = plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of(plain), compressor: compressor) }
        for target: UInt8 in [0, 1, 3] { seeds.append([target] + encoded.bytes) }
        _ = try? writer.append(encoded)
        // A one-chunk pack per sample, too.
        let single = PackWriter(storage: storage)
        _ = try? single.append(encoded)
        if let sealed = try? single.seal(), let bytes = storage.packs[sealed.pack] { seeds.append([2] + bytes) }
    }
    if let sealed = try? writer.seal(), let bytes = storage.packs[sealed.pack] { seeds.append([2] + bytes) }
    for (i, s) in seeds.enumerated() {
        _ = FileManager.default.createFile(atPath: "\(dir)/seed-\(i)", contents: Data(s))
    }
    return 0
}
