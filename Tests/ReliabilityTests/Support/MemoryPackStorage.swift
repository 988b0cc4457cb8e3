import AssetStore
import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Packs held in memory: lets the parsers read arbitrary (mutated) pack bytes. Writing goes through a real
/// scratch file (PackWriter writes to a descriptor); `put` copies its bytes into memory.
final class MemoryPackStorage: PackStorage, @unchecked Sendable {
    private let lock = NSLock()
    private var packs: [ContentHash: [UInt8]] = [:]  // Protected by `lock`.
    init() {}

    var location: String { "memory" }

    func set(_ id: ContentHash, _ bytes: [UInt8]) { lock.withLock { packs[id] = bytes } }
    func bytes(_ id: ContentHash) -> [UInt8]? { lock.withLock { packs[id] } }

    /// Writers build packs in the system's temporary directory; `put` copies a finished one into memory.
    var scratchDirectory: String { NSTemporaryDirectory() }

    func put(_ id: ContentHash, from source: PackSource) throws {
        set(id, try source.readAll())
    }

    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let bytes = bytes(id) else { throw StoreError(.notFound, "pack \(id.short) is missing") }
        guard offset < UInt64(bytes.count) else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + Int(offset), byteCount: n)
        }
        return n
    }

    func size(of id: ContentHash) throws -> UInt64? { bytes(id).map { UInt64($0.count) } }
    func delete(_ id: ContentHash) throws { _ = lock.withLock { packs.removeValue(forKey: id) } }
    func list() throws -> [StoredPack] { lock.withLock { packs.map { StoredPack(id: $0.key, size: UInt64($0.value.count)) } } }
    func describe(_ id: ContentHash) -> String { "memory:\(id.short)" }
}

/// A valid pack (bytes and chunk locations) built with PackWriter from `chunks` plain contents.
func buildPack(_ chunks: [[UInt8]], storage: MemoryPackStorage) throws -> (id: ContentHash, bytes: [UInt8], chunks: [ChunkLocation], plain: [ContentHash: [UInt8]]) {
    let writer = PackWriter(storage: storage)
    let compressor = ZstdCompressor()
    var plain: [ContentHash: [UInt8]] = [:]
    for c in chunks {
        let id = ContentHash.of(c)
        plain[id] = c
        let encoded = c.withUnsafeBytes { ChunkRecord.encode($0, id: id, compressor: compressor) }
        try writer.append(encoded)
    }
    let sealed = try writer.seal()
    return (sealed.pack, storage.bytes(sealed.pack)!, sealed.chunks, plain)
}

/// Seeded mutations of a byte string.
struct Mutator {
    var rng: SplitMix64

    static let interesting: [UInt32] = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF]

    mutating func mutate(_ input: [UInt8]) -> (bytes: [UInt8], how: String) {
        var b = input
        let kind = rng.next() % 8
        let pos = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
        switch kind {
        case 0 where !b.isEmpty:
            let bit = UInt8(1) << UInt8(rng.next() % 8)
            b[pos] ^= bit
            return (b, "flip bit \(bit) at \(pos)")
        case 1 where !b.isEmpty:
            let v = UInt8(truncatingIfNeeded: rng.next())
            b[pos] = v
            return (b, "set byte \(pos) = \(v)")
        case 2:
            let n = Int(rng.next() % UInt64(b.count + 1))
            return (Array(b[0..<n]), "truncate to \(n)")
        case 3:
            let extra = randomBytes(Int(rng.next() % 300), seed: rng.next())
            return (b + extra, "append \(extra.count) bytes")
        case 4 where b.count >= 4:
            let at = Int(rng.next() % UInt64(b.count - 3))
            let v = Self.interesting[Int(rng.next() % UInt64(Self.interesting.count))]
            withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { b[at + i] = $0[i] } }
            return (b, "u32 \(v) at \(at)")
        case 5 where b.count >= 8:
            let at = Int(rng.next() % UInt64(b.count - 7))
            let v: UInt64 = [0, UInt64.max, UInt64.max - 1, 1 << 63, UInt64(b.count)][Int(rng.next() % 5)]
            withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { b[at + i] = $0[i] } }
            return (b, "u64 \(v) at \(at)")
        case 6 where b.count > 2:
            // Delete a range.
            let at = Int(rng.next() % UInt64(b.count - 1))
            let n = 1 + Int(rng.next() % UInt64(min(64, b.count - at)))
            b.removeSubrange(at..<(at + n))
            return (b, "delete \(n) at \(at)")
        default:
            // Several flips.
            var how: [String] = []
            for _ in 0..<(2 + Int(rng.next() % 6)) where !b.isEmpty {
                let p = Int(rng.next() % UInt64(b.count))
                b[p] ^= UInt8(truncatingIfNeeded: rng.next()) | 1
                how.append("\(p)")
            }
            return (b, "xor bytes at \(how.joined(separator: ","))")
        }
    }
}
