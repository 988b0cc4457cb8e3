import AssetTestSupport
@testable import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func sealedPack(_ storage: PackStorage, _ payloads: [[UInt8]]) throws -> [ChunkLocation] {
    let writer = PackWriter(storage: storage)
    let compressor = ZstdCompressor()
    for p in payloads { try writer.append(p.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of(p), compressor: compressor) }) }
    return try writer.seal().chunks
}

@Suite("DiskChunkCache")
struct DiskChunkCacheTests {
    @Test("a verified record is kept and served when the pack is gone; a damaged entry is fetched again, never served")
    func verifiedNotTrusted() throws {
        try withTemporaryDirectory("disk-cache") { dir in
            try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
            let storage = LocalPackStorage(root: dir + "/store")
            try storage.createLayout()
            let payloads = [textBytes(300_000, seed: 1), randomBytes(200_000, seed: 2)]
            let chunks = try sealedPack(storage, payloads)
            let cache = try DiskChunkCache(directory: dir + "/cache", capacity: 64 << 20)
            let reader = ChunkReader(storage: storage, diskCache: cache)
            for (i, c) in chunks.enumerated() { #expect(try reader.read(c) == payloads[i]) }
            for c in chunks { #expect(FileManager.default.fileExists(atPath: cache.path(c.id)), "not cached") }

            // Another process on the host (another cache object on the same directory), with the pack deleted:
            // served from the cache, verified.
            let packPath = storage.path(of: chunks[0].pack)
            let packBytes = try readWhole(packPath)
            #expect(unlink(packPath) == 0)
            let other = ChunkReader(storage: LocalPackStorage(root: dir + "/store"),
                                    diskCache: try DiskChunkCache(directory: dir + "/cache", capacity: 64 << 20))
            #expect(try other.readSlice(chunks[1]) == payloads[1][...])
            #expect(try other.read(chunks[0]) == payloads[0])

            // A byte of an entry flipped on disk: not served; with the pack gone the read fails (notFound).
            try flipByte(in: cache.path(chunks[1].id), at: 5000)
            let refused = #expect(throws: StoreError.self) { _ = try other.read(chunks[1]) }
            #expect(refused?.code == .notFound, "\(String(describing: refused))")
            #expect(!FileManager.default.fileExists(atPath: cache.path(chunks[1].id)), "the damaged entry was kept")

            // With the pack back, the damaged entry is replaced by a good one.
            try flipByte(in: cache.path(chunks[0].id), at: 100)
            try Data(packBytes).write(to: URL(fileURLWithPath: packPath))
            #expect(try other.read(chunks[0]) == payloads[0])
            #expect(try other.read(chunks[1]) == payloads[1])
            #expect(try readWhole(cache.path(chunks[0].id)) == Array(packBytes[Int(chunks[0].offset)..<(Int(chunks[0].offset) + chunks[0].length)]))
        }
    }

    @Test("the cache stays within its capacity and evicts the least recently used entries first")
    func boundedLRU() throws {
        try withTemporaryDirectory("disk-cache-lru") { dir in
            try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
            let storage = LocalPackStorage(root: dir + "/store")
            try storage.createLayout()
            let payloads = (0..<12).map { randomBytes(200_000, seed: UInt64(10 + $0)) }
            let chunks = try sealedPack(storage, payloads)
            let capacity: UInt64 = 1_000_000
            let cache = try DiskChunkCache(directory: dir + "/cache", capacity: capacity)
            let reader = ChunkReader(storage: storage, diskCache: cache)
            _ = try reader.read(chunks[0])
            for i in 1..<12 {
                usleep(20_000)  // Distinct mtimes.
                _ = try reader.read(chunks[i])
                _ = try reader.read(chunks[0])  // Chunk 0 stays the most recently used.
            }
            let files = regularFiles(under: dir + "/cache")
            let total = try files.reduce(0) { $0 + (try readWhole($1).count) }
            #expect(total <= Int(capacity), "\(total) bytes cached, capacity \(capacity)")
            #expect(FileManager.default.fileExists(atPath: cache.path(chunks[0].id)), "the most recently used entry was evicted")
            #expect(FileManager.default.fileExists(atPath: cache.path(chunks[11].id)), "the newest entry was evicted")
            #expect(!FileManager.default.fileExists(atPath: cache.path(chunks[1].id)), "the least recently used entry stayed")
        }
    }

    @Test("a cache opened over entries another process left counts them at its first store: the bound holds across processes")
    func boundAcrossOpens() throws {
        try withTemporaryDirectory("disk-cache-reopen") { dir in
            try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
            let storage = LocalPackStorage(root: dir + "/store")
            try storage.createLayout()
            let chunks = try sealedPack(storage, (0..<8).map { randomBytes(200_000, seed: UInt64(40 + $0)) })
            // A first "process" fills the cache with 6 entries under a generous bound.
            let first = ChunkReader(storage: storage, diskCache: try DiskChunkCache(directory: dir + "/cache", capacity: 10_000_000))
            for i in 0..<6 { _ = try first.read(chunks[i]) }
            // A second one, bounded at 700 kB, stores two more: it must count the six already there.
            let cache = try DiskChunkCache(directory: dir + "/cache", capacity: 700_000)
            #expect(cache.usage().entries == 6)
            let second = ChunkReader(storage: storage, diskCache: cache)
            for i in 6..<8 { _ = try second.read(chunks[i]) }
            let total = regularFiles(under: dir + "/cache").reduce(0) { $0 + ((try? readWhole($1).count) ?? 0) }
            #expect(total <= 700_000, "\(total) bytes cached, capacity 700000")
        }
    }
}
