@testable import AssetVFS
import AssetStore
import Testing

private func key(_ n: Int) -> ChunkCache.Key { .chunk(ContentHash.of([UInt8(n & 0xFF), UInt8(n >> 8)])) }
private func bytes(_ count: Int) -> ChunkCache.Value { .bytes([UInt8](repeating: 7, count: count)[...]) }

@Suite("ChunkCache: what the daemon's memory holds")
struct ChunkCacheTests {
    @Test("read-ahead is refused past its budget; a read or an eviction gives the reservation back; unread evictions are counted")
    func prefetchBudget() throws {
        let cache = ChunkCache(capacity: 1000 + 4 * 64)
        #expect(cache.reservePrefetch(300, limit: 500))
        #expect(!cache.reservePrefetch(300, limit: 500), "600 bytes fetched ahead would pass the 500-byte limit")
        cache.prefetch(key(1), reserved: 300) { bytes(300) }
        #expect(cache.prefetchFigures.pending == 300)
        // A reader takes it: the budget is free again.
        _ = try cache.value(key(1)) { Issue.record("a prefetched value was loaded again"); return bytes(300) }
        #expect(cache.prefetchFigures.pending == 0)
        // A second prefetch nobody reads, pushed out by other values: counted as wasted, reservation released.
        #expect(cache.reservePrefetch(300, limit: 500))
        cache.prefetch(key(2), reserved: 300) { bytes(300) }
        for n in 10..<14 { _ = try cache.value(key(n)) { bytes(300) } }
        #expect(cache.cached(key(2)) == nil)
        #expect(cache.prefetchFigures == (pending: 0, wasted: 1))
        // A prefetch of a value already held loads nothing and gives its reservation back.
        #expect(cache.reservePrefetch(300, limit: 500))
        cache.prefetch(key(13), reserved: 300) { Issue.record("loaded a value already held"); return bytes(300) }
        #expect(cache.prefetchFigures.pending == 0)
    }

    @Test("read-ahead nobody reads gives its budget back once a cache's worth of other chunks came in, though sequential readers' finished chunks are evicted before it")
    func stalePrefetchIsReclaimed() throws {
        let cache = ChunkCache(capacity: 10 * (100 + 64))
        #expect(cache.reservePrefetch(100, limit: 150))
        cache.prefetch(key(1), reserved: 100) { bytes(100) }  // a reader that stopped early never asks for it
        // Sequential readers go through 30 chunks, each sent to the cold end when finished: key(1) is never the
        // one evicted, so only its age can free its reservation.
        for n in 10..<40 {
            _ = try cache.value(key(n)) { bytes(100) }
            cache.consumed(key(n))
        }
        #expect(cache.prefetchFigures == (pending: 100, wasted: 0))
        #expect(cache.reservePrefetch(100, limit: 150), "the stale reservation should have been given back")
        #expect(cache.prefetchFigures == (pending: 100, wasted: 1))
        // A fresh prefetch is not reclaimed: it has not aged a cache's worth yet.
        cache.prefetch(key(2), reserved: 100) { bytes(100) }
        #expect(!cache.reservePrefetch(100, limit: 150))
    }

    @Test("the list of read-ahead in arrival order stays bounded on a mount whose read-ahead never runs out of budget")
    func readAheadOrderStaysBounded() throws {
        let cache = ChunkCache(capacity: 1 << 20)
        for n in 0..<20_000 {
            #expect(cache.reservePrefetch(100, limit: 1 << 19))
            cache.prefetch(key(n), reserved: 100) { bytes(100) }
            _ = try cache.value(key(n)) { bytes(100) }  // read at once: nothing stale, no reclaim ever runs
        }
        #expect(cache.prefetchFigures == (pending: 0, wasted: 0))
        #expect(cache.unreadOrderCount <= 1025, "\(cache.unreadOrderCount) entries kept for 20,000 read-ahead chunks all read")
    }

    @Test("a chunk read to its end goes first when room is needed; the others stay in LRU order")
    func consumedGoesFirst() throws {
        let cache = ChunkCache(capacity: 3 * (100 + 64))
        for n in 1...3 { _ = try cache.value(key(n)) { bytes(100) } }
        cache.consumed(key(3))  // the newest, but read through
        _ = try cache.value(key(4)) { bytes(100) }
        #expect(cache.cached(key(3)) == nil, "the consumed chunk should have been evicted")
        #expect(cache.cached(key(1)) != nil && cache.cached(key(2)) != nil && cache.cached(key(4)) != nil)
    }

    @Test("block tables within their budget outlive a stream of blocks that fills the cache many times over")
    func tablesSurviveBlocks() throws {
        let cache = ChunkCache(capacity: 64 * 1024)
        // A real table: 8 blocks of a 512 KiB chunk.
        let plain = (0..<(512 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let encoded = plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of($0), compressor: ZstdCompressor()) }
        let table = try encoded.bytes.withUnsafeBytes {
            try ChunkRecord.parseTable($0, id: encoded.id, rawLength: plain.count, recordLength: encoded.bytes.count,
                                       tableHash: encoded.tableHash)
        }
        #expect(table.count == 8)
        let tables = (0..<8).map { ChunkCache.Key.table(ContentHash.of([UInt8($0), 0xAA])) }
        for k in tables { _ = try cache.value(k) { .table(table) } }  // 8 x 704 bytes, under 64 KiB / 8
        for n in 0..<200 { _ = try cache.value(.block(ContentHash.of([UInt8(n & 0xFF)]), n)) { bytes(4000) } }
        for k in tables { #expect(cache.cached(k) != nil, "table \(k) was evicted by blocks") }
        #expect(cache.usedBytes <= cache.capacity)
    }
}
