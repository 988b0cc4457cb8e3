import AssetCatalog
import AssetStore
import Dispatch

/// A file being imported: its chunk hashes arrive from the pipeline, its whole-file hash from the reader.
final class FileBuild: @unchecked Sendable {
    let size: UInt64
    /// Set by the reader for files of two or more chunks; single-chunk files reuse their chunk's hash.
    var streamedHash: ContentHash?
    var id: Int64?
    private let lock = Lock()
    // Protected by `lock`: the reader appends chunks while the pipeline thread fills in the hashes of earlier
    // ones (a large file spans many batches), so neither array may be touched without it.
    private var offsets: [UInt64] = []
    private var chunkHashes: [ContentHash?] = []

    init(size: UInt64) { self.size = size }

    static let emptyHash = ContentHash.of([UInt8]())

    var chunkCount: Int { lock.withLock { offsets.count } }

    /// Adds the next chunk (its hash if already known); returns its index.
    func appendChunk(offset: UInt64, hash: ContentHash?) -> Int {
        lock.withLock {
            offsets.append(offset)
            chunkHashes.append(hash)
            return offsets.count - 1
        }
    }

    func setHash(_ hash: ContentHash, at index: Int) { lock.withLock { chunkHashes[index] = hash } }

    /// The chunk list so far: offsets and hashes (nil where a batch is not processed yet).
    func chunks() -> (offsets: [UInt64], hashes: [ContentHash?]) { lock.withLock { (offsets, chunkHashes) } }

    /// Valid once every batch holding the file's chunks has been processed.
    var hash: ContentHash {
        if let streamedHash { return streamedHash }
        return lock.withLock { chunkHashes.isEmpty ? Self.emptyHash : chunkHashes[0]! }
    }
}

/// A directory waiting to be written to the catalog after the files and subtrees it names.
struct PendingTree {
    let hash: ContentHash
    var entries: [TreeEntry]
    let fileHashes: [ContentHash?]  // per entry, for files
    let subtreeHashes: [ContentHash?]  // per entry, for directories
    let fileCount: Int
    let totalSize: UInt64
}

enum PendingItem {
    case file(FileBuild)
    case tree(PendingTree)
}

struct ChunkJob {
    let file: FileBuild
    let index: Int
    let bytes: [UInt8]
}

/// Hashes, deduplicates, compresses and packs chunks on both cores while the reader reads ahead, and writes
/// catalog rows only once the packs they depend on are durable.
///
/// Threads: the importer's reader thread calls `submit`, `enqueue` and `drain`; batches run one at a time on
/// `queue`, fanning out with `concurrentPerform`. Lock order: `lock` only; it is never held during pack I/O
/// by the reader.
final class ImportPipeline: @unchecked Sendable {
    private let repo: Repository
    private let queue = DispatchQueue(label: "assetfs.import.pipeline")
    /// Bounds the batches queued or in flight, so the reader reads ahead while earlier batches are processed
    /// (and while a pack is fsynced) without buffering more than a few batches.
    private let inFlight = DispatchSemaphore(value: 2)
    private let lock = Lock()
    private let compressors = CompressorPool()

    // Protected by `lock`.
    private var packWriter: PackWriter
    /// New chunks of this import whose pack is not yet durable.
    private var unsealed = Set<ContentHash>()
    private var known = Set<ContentHash>()
    private var pending: [PendingItem] = []
    private var pendingHead = 0
    private(set) var fileIDs: [ContentHash: Int64] = [:]
    private(set) var treeIDs: [ContentHash: Int64] = [:]
    private(set) var newBytes: UInt64 = 0
    private(set) var processedBytes: UInt64 = 0
    private var failure: Error?

    init(repo: Repository) {
        self.repo = repo
        packWriter = PackWriter(storage: repo.storage)
    }

    var bytesDone: UInt64 { lock.withLock { processedBytes } }

    func submit(_ jobs: [ChunkJob]) throws {
        guard !jobs.isEmpty else { return }
        inFlight.wait()
        if let failure = lock.withLock({ self.failure }) {
            inFlight.signal()
            throw failure
        }
        queue.async {
            defer { self.inFlight.signal() }
            do {
                try self.process(jobs)
            } catch {
                self.lock.withLock { if self.failure == nil { self.failure = error } }
            }
        }
    }

    /// Waits until every submitted batch is processed; rethrows the first failure.
    func drain() throws {
        queue.sync {}
        if let failure = lock.withLock({ self.failure }) { throw failure }
    }

    func enqueue(_ item: PendingItem) {
        lock.withLock { pending.append(item) }
    }

    func noteKnownTree(_ hash: ContentHash, id: Int64) {
        lock.withLock { treeIDs[hash] = id }
    }

    func noteKnownFile(_ hash: ContentHash, id: Int64) {
        lock.withLock { fileIDs[hash] = id }
    }

    private func process(_ jobs: [ChunkJob]) throws {
        let hashes = parallelMap(count: jobs.count) { i in jobs[i].bytes.withUnsafeBytes { ContentHash.of($0) } }
        var fresh = [Int]()
        try lock.withLock {
            for (i, job) in jobs.enumerated() {
                job.file.setHash(hashes[i], at: job.index)
                if known.contains(hashes[i]) { continue }
                known.insert(hashes[i])
                if try repo.catalog.chunkLocation(hashes[i]) == nil {
                    fresh.append(i)
                    // Not durable until its pack is sealed: files using it must wait, even if a seal of an
                    // earlier pack happens before this chunk is appended.
                    unsealed.insert(hashes[i])
                }
            }
        }
        let encoded = parallelMap(count: fresh.count) { k in
            compressors.withCompressor { compressor in
                jobs[fresh[k]].bytes.withUnsafeBytes { ChunkRecord.encode($0, id: hashes[fresh[k]], compressor: compressor) }
            }
        }
        try lock.withLock {
            for chunk in encoded {
                try packWriter.append(chunk)
                newBytes += UInt64(chunk.bytes.count)
                if packWriter.isFull { try sealLocked() }
            }
            processedBytes += jobs.reduce(0) { $0 + UInt64($1.bytes.count) }
            if pending.count - pendingHead > 4096 { try flushLocked() }
        }
    }

    private func sealLocked() throws {
        let sealed = try packWriter.seal()
        try repo.catalog.write { w in
            try w.recordPack(sealed.pack, size: sealed.size, chunks: sealed.chunks)
            for chunk in sealed.chunks { unsealed.remove(chunk.id) }
            try flushPending(w)
        }
    }

    private func flushLocked() throws {
        try repo.catalog.write { w in try flushPending(w) }
    }

    /// Writes pending files and trees in order, stopping at the first one that still needs an unsealed chunk.
    private func flushPending(_ w: CatalogWriter) throws {
        while pendingHead < pending.count {
            switch pending[pendingHead] {
            case .file(let f):
                // A file is enqueued when its last chunk is cut, possibly before that chunk's batch is processed.
                let (offsets, hashes) = f.chunks()
                let chunkHashes = hashes.compactMap { $0 }
                if chunkHashes.count < hashes.count || chunkHashes.contains(where: unsealed.contains) { return }
                let id = try w.insertFile(hash: f.hash, size: f.size, chunks: Array(zip(offsets, chunkHashes)).map { ($0, $1) })
                f.id = id
                fileIDs[f.hash] = id
            case .tree(var t):
                for i in t.entries.indices {
                    if let h = t.fileHashes[i] { t.entries[i].fileID = fileIDs[h] }
                    if let h = t.subtreeHashes[i] { t.entries[i].subtreeID = treeIDs[h] }
                }
                treeIDs[t.hash] = try w.insertTree(hash: t.hash, entries: t.entries, fileCount: t.fileCount, totalSize: t.totalSize)
            }
            pendingHead += 1
            if pendingHead > 65536 {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
        }
    }

    /// Seals the last pack and writes everything pending. Afterwards every tree of the import is in the catalog.
    func finish() throws {
        try drain()
        try lock.withLock {
            if !packWriter.isEmpty { try sealLocked() }
            try flushLocked()
            guard pendingHead == pending.count else {
                throw RepositoryError(.failure, "internal error: import left catalog rows unwritten")
            }
        }
    }

    func treeID(_ hash: ContentHash) -> Int64? { lock.withLock { treeIDs[hash] } }
    func fileID(_ hash: ContentHash) -> Int64? { lock.withLock { fileIDs[hash] } }
}
