import AssetCatalog
import AssetStore
import Foundation

/// Fills this host's disk cache with the chunks of a version, or of a path inside it, before a job reads them:
/// `assetfs prefetch`. Chunks already cached (by an earlier prefetch, a mount or a command) are not fetched
/// again; the rest are fetched by `workers` threads at once, each one verified before it is cached, as every
/// read is. A mount reading the same version meanwhile shares the cache: what either has stored, the other
/// finds (two fetches of one chunk can only overlap while both are in flight).
public struct Prefetcher: Sendable {
    public let repo: Repository
    /// Fetches in flight: each mostly waits on a request's round trip.
    public var workers = 16

    public init(repo: Repository) { self.repo = repo }

    public struct Result: Sendable, Codable {
        public var ref = ""
        public var files = 0
        public var chunks = 0
        public var chunksFetched = 0
        public var bytesFetched: UInt64 = 0
        public var chunksCached = 0
        public var bytesCached: UInt64 = 0
        public var seconds = 0.0
        /// Bytes fetched per second.
        public var bytesPerSecond = 0.0
    }

    /// `progress(done, total)` in stored bytes, called from this thread about ten times a second.
    public func run(_ ref: Ref, progress: ((UInt64, UInt64) -> Void)? = nil) throws -> Result {
        guard let cache = repo.reader.diskCache else {
            throw RepositoryError(.usage, "\(repo.root) is a local store: its packs are on this host's disk already, so there is nothing to prefetch (prefetch fills the disk cache of a shared store)")
        }
        let started = Date()
        let version = try repo.catalog.resolve(ref)
        let tree = VersionTree(catalog: repo.catalog, version: version)
        let files = try tree.fileIDs(at: ref.path)
        let chunks = Self.inPackOrder(try tree.chunks(of: files))
        var result = Result()
        result.ref = "\(version.asset)@v\(version.number)" + (ref.path.isEmpty ? "" : ":" + ref.path.joined(separator: "/"))
        result.files = files.count
        result.chunks = chunks.count
        let total = chunks.reduce(UInt64(0)) { $0 + UInt64($1.length) }

        let state = PrefetchState()
        let group = DispatchGroup()
        for _ in 0..<max(1, min(workers, chunks.count)) {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                while let location = state.next(chunks) {
                    if cache.contains(location.id) {
                        state.record(location, fetched: false)
                        continue
                    }
                    do {
                        // Stored in the disk cache once proven; neighbours in the pack come in one request.
                        _ = try repo.reader.verifiedRecord(location, inOrder: true)
                        state.record(location, fetched: true)
                    } catch {
                        state.fail(error)
                    }
                }
            }
            thread.name = "assetfs-prefetch"
            thread.start()
        }
        while group.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            progress?(state.done, total)
        }
        progress?(state.done, total)
        if let failure = state.failure { throw failure }
        (result.chunksFetched, result.bytesFetched, result.chunksCached, result.bytesCached) = state.counts
        result.seconds = Date().timeIntervalSince(started)
        result.bytesPerSecond = result.seconds > 0 ? Double(result.bytesFetched) / result.seconds : 0
        return result
    }
}

extension Prefetcher {
    /// The chunks sorted by their place in the packs (packs in the order they first appear), so that the
    /// threads take neighbouring records together and share each segment request.
    static func inPackOrder(_ chunks: [ChunkLocation]) -> [ChunkLocation] {
        var rank: [ContentHash: Int] = [:]
        for chunk in chunks where rank[chunk.pack] == nil { rank[chunk.pack] = rank.count }
        return chunks.sorted { a, b in
            let ra = rank[a.pack]!, rb = rank[b.pack]!
            return ra != rb ? ra < rb : a.offset < b.offset
        }
    }
}

/// The work list and the tallies the prefetch threads share.
private final class PrefetchState: @unchecked Sendable {
    private let lock = Lock()
    // Protected by `lock`.
    private var index = 0
    private var fetched = (chunks: 0, bytes: UInt64(0))
    private var cached = (chunks: 0, bytes: UInt64(0))
    private var error: Error?

    /// The next chunk to look at; nil when all are taken or one fetch failed.
    func next(_ chunks: [ChunkLocation]) -> ChunkLocation? {
        lock.withLock {
            guard error == nil, index < chunks.count else { return nil }
            defer { index += 1 }
            return chunks[index]
        }
    }

    func record(_ location: ChunkLocation, fetched wasFetched: Bool) {
        lock.withLock {
            if wasFetched {
                fetched.chunks += 1
                fetched.bytes += UInt64(location.length)
            } else {
                cached.chunks += 1
                cached.bytes += UInt64(location.length)
            }
        }
    }

    func fail(_ failure: Error) { lock.withLock { if error == nil { error = failure } } }

    var failure: Error? { lock.withLock { error } }
    var done: UInt64 { lock.withLock { fetched.bytes + cached.bytes } }
    var counts: (Int, UInt64, Int, UInt64) { lock.withLock { (fetched.chunks, fetched.bytes, cached.chunks, cached.bytes) } }
}
