import AssetTestSupport
import Foundation
import Testing
@testable import AssetStore

/// Local packs behind a counter of the reads that reach them, and a switch that makes reads fail.
private final class CountingStorage: PackStorage, @unchecked Sendable {
    let inner: LocalPackStorage
    private let lock = NSLock()
    private var reads: [(offset: UInt64, count: Int)] = []  // Protected by `lock`.
    private var failing = false  // Protected by `lock`.

    init(inner: LocalPackStorage) { self.inner = inner }

    var readsSeen: [(offset: UInt64, count: Int)] { lock.withLock { reads } }
    func setFailing(_ value: Bool) { lock.withLock { failing = value } }

    var location: String { inner.location }
    var scratchDirectory: String { inner.scratchDirectory }
    func put(_ id: ContentHash, from source: PackSource) throws { try inner.put(id, from: source) }
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let fail = lock.withLock {
            reads.append((offset, buffer.count))
            return failing
        }
        if fail { throw StoreError(.transient, "test: the server is down") }
        return try inner.read(id, at: offset, into: buffer)
    }
    func size(of id: ContentHash) throws -> UInt64? { try inner.size(of: id) }
    func delete(_ id: ContentHash) throws { try inner.delete(id) }
    func list() throws -> [StoredPack] { try inner.list() }
    func describe(_ id: ContentHash) -> String { inner.describe(id) }
}

/// A sealed pack of `count` random chunks of about `size` bytes each, behind a counting storage.
private func pack(in dir: String, count: Int, size: Int) throws -> (CountingStorage, (pack: ContentHash, size: UInt64, chunks: [ChunkLocation]), [[UInt8]]) {
    let local = LocalPackStorage(root: dir + "/store")
    try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
    try local.createLayout()
    let writer = PackWriter(storage: local)
    var plains: [[UInt8]] = []
    for i in 0..<count {
        let plain = randomBytes(size + i * 977, seed: UInt64(500 + i))
        plains.append(plain)
        try writer.append(plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of($0), compressor: ZstdCompressor()) })
    }
    return (CountingStorage(inner: local), try writer.seal(), plains)
}

@Suite("SegmentedPackReader")
struct SegmentedPackReaderTests {
    @Test("reading a pack's chunks in order costs one request per 1 MiB segment; every chunk is exact; only the last segment (the pack index) may stay held")
    func inOrder() throws {
        try withTemporaryDirectory("segments") { dir in
            let (storage, sealed, plains) = try pack(in: dir, count: 24, size: 200_000)
            let segments = SegmentedPackReader(storage: storage, segmentSize: 1 << 20, capacity: 4)
            let reader = ChunkReader(storage: storage, segments: segments)
            for (i, location) in sealed.chunks.enumerated() {
                #expect(try reader.read(location, inOrder: true) == plains[i])
            }
            let lastRecordEnd = sealed.chunks.map { $0.offset + UInt64($0.length) }.max()!
            let expected = Int((lastRecordEnd - 1) / UInt64(1 << 20)) + 1
            #expect(storage.readsSeen.count == expected)
            #expect(storage.readsSeen.allSatisfy { $0.offset % UInt64(1 << 20) == 0 && $0.count == 1 << 20 })
            #expect(segments.fetchedFromStorage.requests == expected)
            // The index after the records was never handed out, so the last segment may stay; no other does.
            #expect(segments.held <= 1)
        }
    }

    @Test("reads across segment boundaries, at the pack's end and past it return what a direct read returns")
    func sameBytes() throws {
        try withTemporaryDirectory("segments-bytes") { dir in
            let (storage, sealed, _) = try pack(in: dir, count: 6, size: 150_000)
            let segments = SegmentedPackReader(storage: storage, segmentSize: 64 << 10, capacity: 3)
            let total = Int(try storage.size(of: sealed.pack)!)
            var generator = SystemRandomNumberGenerator()
            var cases = [(0, 1), (65_535, 2), (65_530, 200_000), (total - 10, 10), (total - 10, 100), (total, 5), (total + 70_000, 5)]
            for _ in 0..<200 { cases.append((Int.random(in: 0..<total, using: &generator), Int.random(in: 1...300_000, using: &generator))) }
            for (offset, count) in cases {
                var viaSegments = [UInt8](repeating: 0, count: count), direct = [UInt8](repeating: 0, count: count)
                let a = try viaSegments.withUnsafeMutableBytes { try segments.read(sealed.pack, at: UInt64(offset), into: $0) }
                let b = try direct.withUnsafeMutableBytes { try storage.read(sealed.pack, at: UInt64(offset), into: $0) }
                #expect(a == b, "count at \(offset)+\(count)")
                #expect(viaSegments[..<a] == direct[..<b], "bytes at \(offset)+\(count)")
            }
            #expect(segments.held <= 3)
        }
    }

    @Test("readers on many threads share one request per segment and get exact chunks; held segments stay within capacity")
    func concurrent() throws {
        try withTemporaryDirectory("segments-threads") { dir in
            let (storage, sealed, plains) = try pack(in: dir, count: 40, size: 100_000)
            let segments = SegmentedPackReader(storage: storage, segmentSize: 1 << 20, capacity: 2)
            let reader = ChunkReader(storage: storage, segments: segments)
            let wrong = Counter()
            DispatchQueue.concurrentPerform(iterations: sealed.chunks.count) { i in
                if (try? reader.read(sealed.chunks[i], inOrder: true)) != plains[i] { wrong.add() }
                #expect(segments.held <= 2 + 8)  // capacity plus loads in flight (at most one per thread)
            }
            #expect(wrong.value == 0)
            // Without sharing, 40 chunk reads would be 40 requests; with 2 held, a segment may be read twice.
            #expect(storage.readsSeen.count < sealed.chunks.count)
        }
    }

    @Test("a failed segment read is not kept: the reader that asks again gets the bytes once the storage is back")
    func failureNotKept() throws {
        try withTemporaryDirectory("segments-fail") { dir in
            let (storage, sealed, plains) = try pack(in: dir, count: 3, size: 100_000)
            let reader = ChunkReader(storage: storage, segments: SegmentedPackReader(storage: storage, segmentSize: 1 << 20))
            storage.setFailing(true)
            #expect(throws: StoreError.self) { try reader.read(sealed.chunks[0], inOrder: true) }
            storage.setFailing(false)
            #expect(try reader.read(sealed.chunks[0], inOrder: true) == plains[0])
            #expect(try reader.read(sealed.chunks[1], inOrder: true) == plains[1])
            #expect(storage.readsSeen.count == 2)
        }
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
