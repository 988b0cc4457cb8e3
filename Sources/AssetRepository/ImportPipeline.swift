import AssetCatalog
import AssetStore
import Dispatch

/// A file being imported: its chunk hashes arrive from the pipeline, its whole-file hash from the reader.
final class FileBuild: @unchecked Sendable {
    let size: UInt64
    var id: Int64?
    private let lock = Lock()
    // Protected by `lock`: the reader appends chunks while the pipeline thread fills in the hashes of earlier
    // ones (a large file spans many batches), so neither array may be touched without it; the file hasher's
    // thread sets `streamed` while the pipeline thread may be asking for `readyHash`.
    private var offsets: [UInt64] = []
    private var chunkHashes: [ContentHash?] = []
    private var streamed: ContentHash?

    /// Whether a file of one chunk has that chunk's id as its hash: true in a format-1 store, where a chunk id is
    /// the SHA-256 of its bytes (the importer then skips hashing such files twice); false in format 2, where the
    /// file hasher hashes every file.
    let chunkIDIsFileHash: Bool

    init(size: UInt64, chunkIDIsFileHash: Bool = false) {
        self.size = size
        self.chunkIDIsFileHash = chunkIDIsFileHash
    }

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

    /// The whole-file hash, set by the file hasher (in a format-1 store for files of two or more chunks only) and
    /// by the importer for a file reused from the parent version; see `chunkIDIsFileHash`.
    var streamedHash: ContentHash? {
        get { lock.withLock { streamed } }
        set { lock.withLock { streamed = newValue } }
    }

    /// The whole-file hash once it is known: nil while a batch holding one of the file's chunks is unprocessed
    /// or, for a file of two or more chunks, while the file hasher has not finished it.
    var readyHash: ContentHash? {
        lock.withLock {
            if let streamed { return streamed }
            switch chunkHashes.count {
            case 0: return Self.emptyHash
            case 1: return chunkIDIsFileHash ? chunkHashes[0] : nil
            default: return nil
            }
        }
    }

    /// The whole-file hash, for callers that have waited for the pipeline and the file hasher.
    func finalHash() throws -> ContentHash {
        guard let hash = readyHash else {
            throw RepositoryError(.failure, "internal error: a file's hash was needed before it was computed")
        }
        return hash
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
/// Threads: the importer's reader thread calls `submit`, `afterSubmitted`, `enqueue` and `drain`. A batch's
/// chunks are hashed, looked up in the catalog (one query per batch) and compressed on `queue`, fanning out
/// with `concurrentPerform`, then appended to the pack
/// in order on `appendQueue` while the next batch is hashed. A full pack is fsynced and stored on
/// `sealQueue`. Lock order: `lock`, then a `FileBuild`'s own lock; `lock` is never held during pack I/O.
final class ImportPipeline: @unchecked Sendable {
    private let repo: Repository
    private let queue = DispatchQueue(label: "assetfs.import.pipeline")
    private let appendQueue = DispatchQueue(label: "assetfs.import.append")
    /// Bounds the batches submitted and not yet appended, so the reader reads ahead while earlier batches are
    /// processed without buffering more than a few batches.
    private let inFlight = DispatchSemaphore(value: 2)
    private let sealQueue = DispatchQueue(label: "assetfs.import.seal")
    /// One pack sealing while the next one fills: at most two packs' records are held in memory.
    private let sealSlots = DispatchSemaphore(value: 1)
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
            let encoded: [ChunkRecord.Encoded]
            do {
                encoded = try self.hashAndEncode(jobs)
            } catch {
                self.fail(error)
                self.inFlight.signal()
                return
            }
            self.appendQueue.async {
                defer { self.inFlight.signal() }
                do {
                    try self.append(encoded, bytes: jobs.reduce(0) { $0 + UInt64($1.bytes.count) })
                } catch {
                    self.fail(error)
                }
            }
        }
    }

    /// Runs `work` on the pipeline's queue once every batch submitted so far is processed, without making the
    /// reader wait for that; an error it throws fails the import. Skipped after a failure.
    func afterSubmitted(_ work: @escaping @Sendable () throws -> Void) {
        queue.async {
            guard self.lock.withLock({ self.failure == nil }) else { return }
            do {
                try work()
            } catch {
                self.fail(error)
            }
        }
    }

    private func fail(_ error: Error) {
        lock.withLock { if failure == nil { failure = error } }
    }

    /// Waits until every submitted batch is processed (not for packs still being sealed); rethrows the first
    /// failure.
    func drain() throws {
        queue.sync {}
        appendQueue.sync {}
        if let failure = lock.withLock({ self.failure }) { throw failure }
    }

    func enqueue(_ item: PendingItem) {
        lock.withLock { pending.append(item) }
    }

    /// Hashes a directory whose files' hashes are all known and queues its tree for the catalog; returns the
    /// tree hash. `subtrees` holds the hash of each subdirectory entry.
    func enqueueTree(entries: [TreeEntry], files: [FileBuild?], subtrees: [ContentHash?], fileCount: Int,
                     totalSize: UInt64) throws -> ContentHash {
        let fileHashes = try files.map { try $0?.finalHash() }
        let items = zip(entries.indices, entries).map { i, e in
            TreeHasher.Item(entry: e, contentHash: fileHashes[i] ?? subtrees[i])
        }
        let hash = TreeHasher.hash(items)
        enqueue(.tree(PendingTree(hash: hash, entries: entries, fileHashes: fileHashes, subtreeHashes: subtrees,
                                  fileCount: fileCount, totalSize: totalSize)))
        return hash
    }

    func noteKnownTree(_ hash: ContentHash, id: Int64) {
        lock.withLock { treeIDs[hash] = id }
    }

    func noteKnownFile(_ hash: ContentHash, id: Int64) {
        lock.withLock { fileIDs[hash] = id }
    }

    /// Hashes every chunk of a batch, asks the catalog once which of them the store has, and compresses the
    /// ones it lacks (two fan-outs over both cores). Returns the new records in batch order.
    /// In a format-2 store the chunk id is made from the block hashes, which `encode` then reuses: new bytes are
    /// hashed once here instead of twice (ChunkIdentity).
    private func hashAndEncode(_ jobs: [ChunkJob]) throws -> [ChunkRecord.Encoded] {
        let identity = repo.reader.identity
        let identified = parallelMap(count: jobs.count) { i in jobs[i].bytes.withUnsafeBytes { ChunkRecord.identify($0, as: identity) } }
        let claimed = try claim(identified.map(\.id), for: jobs)
        return parallelMap(count: claimed.count) { k -> ChunkRecord.Encoded in
            let i = claimed[k]
            return compressors.withCompressor { compressor in
                jobs[i].bytes.withUnsafeBytes {
                    ChunkRecord.encode($0, id: identified[i].id, blockHashes: identified[i].blockHashes, compressor: compressor)
                }
            }
        }
    }

    /// Records each chunk's hash in its file and returns the indexes of the chunks this import must store (first
    /// sighting, not in the store): one catalog query for the whole batch. All under `lock`, so a file never
    /// looks complete while one of its new chunks is not yet marked unsealed: a new chunk is not durable until
    /// its pack is sealed, and files using it must wait.
    private func claim(_ hashes: [ContentHash], for jobs: [ChunkJob]) throws -> [Int] {
        try lock.withLock {
            for (i, job) in jobs.enumerated() { job.file.setHash(hashes[i], at: job.index) }
            var firstSighting: [Int] = []
            var seen = Set<ContentHash>()
            for (i, hash) in hashes.enumerated() where !known.contains(hash) && seen.insert(hash).inserted {
                firstSighting.append(i)
            }
            let stored = try repo.catalog.existingChunks(firstSighting.map { hashes[$0] })
            var claimed: [Int] = []
            for i in firstSighting {
                known.insert(hashes[i])
                if stored.contains(hashes[i]) { continue }
                unsealed.insert(hashes[i])
                claimed.append(i)
            }
            return claimed
        }
    }

    /// Appends a batch's new records to the pack in order; a full pack goes to the seal queue.
    private func append(_ encoded: [ChunkRecord.Encoded], bytes: UInt64) throws {
        let full: [PackWriter] = try lock.withLock {
            var full: [PackWriter] = []
            for chunk in encoded {
                try packWriter.append(chunk)
                newBytes += UInt64(chunk.bytes.count)
                if packWriter.isFull {
                    full.append(packWriter)
                    packWriter = PackWriter(storage: repo.storage)
                }
            }
            processedBytes += bytes
            if pending.count - pendingHead > 4096 { try flushLocked() }
            return full
        }
        for writer in full { sealInBackground(writer) }
    }

    private func sealInBackground(_ writer: PackWriter) {
        sealSlots.wait()
        sealQueue.async {
            defer { self.sealSlots.signal() }
            do {
                try self.seal(writer)
            } catch {
                self.fail(error)
            }
        }
    }

    /// Makes a full pack durable (outside the lock: the fsync is the slow part), then records it and writes the
    /// rows that were waiting for it. Packs are recorded in the order they filled (`sealQueue` is serial).
    private func seal(_ writer: PackWriter) throws {
        let sealed = try writer.seal()
        try lock.withLock {
            let stillUnsealed = unsealed.subtracting(sealed.chunks.map(\.id))
            let written = try repo.catalog.write { w -> Flushed in
                try w.recordPack(sealed.pack, size: sealed.size, chunks: sealed.chunks)
                return try flushPending(w, unsealed: stillUnsealed)
            }
            unsealed = stillUnsealed
            apply(written)
        }
    }

    private func flushLocked() throws {
        let written = try repo.catalog.write { w in try flushPending(w, unsealed: unsealed) }
        apply(written)
    }

    /// What one catalog transaction wrote of the pending rows. It is applied to the pipeline's state only after
    /// the transaction commits, so a transaction that fails, or that the catalog runs again, changes nothing here.
    private struct Flushed {
        var files: [(file: FileBuild, hash: ContentHash, id: Int64)] = []
        var trees: [(hash: ContentHash, id: Int64)] = []
        var head: Int
    }

    /// Writes pending files and trees in order, stopping at the first one that still needs an unsealed chunk.
    /// Reads the pipeline's state, changes none of it (see `Flushed`).
    private func flushPending(_ w: CatalogWriter, unsealed: Set<ContentHash>) throws -> Flushed {
        var out = Flushed(head: pendingHead)
        var newFiles: [ContentHash: Int64] = [:]
        var newTrees: [ContentHash: Int64] = [:]
        // Files ready to write, gathered until a tree needs their ids (or one is not ready): one insertFiles
        // per run, so a server catalog writes a directory's files in a few statements.
        var run: [(file: FileBuild, row: NewFile)] = []
        func writeRun() throws {
            guard !run.isEmpty else { return }
            let ids = try w.insertFiles(run.map(\.row))
            for (item, id) in zip(run, ids) {
                out.files.append((item.file, item.row.hash, id))
                newFiles[item.row.hash] = id
            }
            out.head += run.count
            run.removeAll()
        }
        while out.head + run.count < pending.count {
            switch pending[out.head + run.count] {
            case .file(let f):
                // A file is enqueued when its last chunk is cut, possibly before that chunk's batch is processed.
                // Its whole-file hash may still be with the file hasher, which can lag behind the pipeline.
                let (offsets, hashes) = f.chunks()
                let chunkHashes = hashes.compactMap { $0 }
                guard chunkHashes.count == hashes.count, !chunkHashes.contains(where: unsealed.contains),
                      let fileHash = f.readyHash else {
                    try writeRun()
                    return out
                }
                run.append((f, NewFile(hash: fileHash, size: f.size, chunks: Array(zip(offsets, chunkHashes)).map { ($0, $1) })))
                if run.count >= 1000 { try writeRun() }
            case .tree(var t):
                try writeRun()
                for i in t.entries.indices {
                    if let h = t.fileHashes[i] { t.entries[i].fileID = newFiles[h] ?? fileIDs[h] }
                    if let h = t.subtreeHashes[i] { t.entries[i].subtreeID = newTrees[h] ?? treeIDs[h] }
                }
                let id = try w.insertTree(hash: t.hash, entries: t.entries, fileCount: t.fileCount, totalSize: t.totalSize)
                out.trees.append((t.hash, id))
                newTrees[t.hash] = id
                out.head += 1
            }
        }
        try writeRun()
        return out
    }

    private func apply(_ written: Flushed) {
        for (file, hash, id) in written.files {
            file.id = id
            fileIDs[hash] = id
        }
        for (hash, id) in written.trees { treeIDs[hash] = id }
        pendingHead = written.head
        if pendingHead > 65536 {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
    }

    /// Seals the last pack and writes everything pending. Afterwards every tree of the import is in the catalog.
    func finish() throws {
        try drain()
        sealQueue.sync {}
        if let failure = lock.withLock({ self.failure }) { throw failure }
        let last = lock.withLock { packWriter }
        if !last.isEmpty { try seal(last) }
        try lock.withLock {
            try flushLocked()
            guard pendingHead == pending.count else {
                throw RepositoryError(.failure, "internal error: import left catalog rows unwritten")
            }
        }
    }

    func treeID(_ hash: ContentHash) -> Int64? { lock.withLock { treeIDs[hash] } }
    func fileID(_ hash: ContentHash) -> Int64? { lock.withLock { fileIDs[hash] } }
}
