import AssetCatalog
import AssetStore

/// Reclaims space after `delete`: drops unreachable catalog rows, forgets packs with no live chunk, rewrites
/// packs that are mostly garbage, and deletes the objects of forgotten packs once their grace period is over.
///
/// Safety across hosts: gc holds a `gc` session, which it opens only when no import or commit session is live on
/// any host, and which keeps new ones from starting until it ends; on this host the store's flock does the same
/// for processes of older versions. A pack is deleted in two phases: the catalog forgets it (its row moves to
/// `doomed_packs`), and its object is deleted by a gc that runs `gracePeriod` later. A mount that still holds a
/// chunk's old location finds the pack gone and looks the chunk up again. Order of every step: new pack durable,
/// catalog updated, old pack object deleted; a crash between steps leaves only garbage that the next gc removes.
public struct GarbageCollector {
    public let repo: Repository
    /// Packs whose live fraction is below this are rewritten.
    public var rewriteThreshold = 0.5
    /// Seconds between a pack leaving the catalog and its object being deleted, and the age below which a pack
    /// the catalog never knew (an import on another host may be about to record it) is left alone. 0 on a
    /// local store, where every reader re-reads a moved chunk's location and no writer runs beside gc.
    public var gracePeriod = 0.0
    /// How long to wait for running imports and commits before giving up.
    public var waitForWriters = 600.0
    /// Told once when gc has to wait for imports or commits (on any host).
    public var waiting: (@Sendable ([SessionInfo]) -> Void)?

    public init(repo: Repository) { self.repo = repo }

    public struct Result: Sendable, Codable {
        public var chunkRowsRemoved = 0
        /// Packs with no live chunk, forgotten by the catalog in this run.
        public var packsForgotten = 0
        /// Pack objects deleted in this run (forgotten in this or an earlier run, their grace period over).
        public var packsDeleted = 0
        public var packsRewritten = 0
        public var orphanPacksDeleted = 0
        /// Forgotten packs (and young orphans) still stored because their grace period is not over.
        public var packsWaiting = 0
        public var bytesWaiting: UInt64 = 0
        public var stagingFilesRemoved = 0
        public var bytesBefore: UInt64 = 0
        public var bytesAfter: UInt64 = 0
    }

    public func run() throws -> Result {
        let lock = try repo.lock(exclusive: true)
        defer { lock.release() }
        let session = try StoreSession.open(repo, kind: .gc, excluding: SessionKind.writers.union([.gc]), wait: waitForWriters,
                                            waiting: waiting)
        defer { session.close() }
        var result = Result()
        result.stagingFilesRemoved = try PackWriter.removeAbandonedScratch(in: repo.storage.scratchDirectory)
        let onDisk = try repo.storage.list()
        result.bytesBefore = onDisk.reduce(0) { $0 + $1.size }
        result.chunkRowsRemoved = try repo.catalog.deleteUnreachable()

        let known = try repo.catalog.packs()
        let knownIDs = Set(known.map(\.id))
        let doomedIDs = Set(try repo.catalog.doomedPacks().map(\.id))
        let now = Clock.nowNanoseconds()
        for pack in onDisk where !knownIDs.contains(pack.id) && !doomedIDs.contains(pack.id) {
            // Written by an import that crashed before recording it, or by one that is about to record it: only
            // one older than the grace period (or of unknown age) is deleted.
            guard let written = pack.modifiedNs, !graceOver(since: written, now: now) else {
                try repo.storage.delete(pack.id)
                result.orphanPacksDeleted += 1
                continue
            }
            result.packsWaiting += 1
            result.bytesWaiting += pack.size
        }
        let live = try repo.catalog.liveBytesPerPack()
        var dead: [ContentHash] = []
        var sparse: [ContentHash] = []
        for pack in known {
            let liveBytes = live[pack.id] ?? 0
            if liveBytes == 0 {
                dead.append(pack.id)
            } else if Double(liveBytes) < Double(pack.size) * rewriteThreshold {
                sparse.append(pack.id)
            }
        }
        if !dead.isEmpty {
            try repo.catalog.forgetPacks(dead)
            result.packsForgotten = dead.count
        }
        if !sparse.isEmpty {
            result.packsRewritten = try rewrite(sparse)
        }
        try deleteDoomed(&result)
        result.bytesAfter = try repo.storage.list().reduce(0) { $0 + $1.size }
        return result
    }

    private func graceOver(since ns: Int64, now: Int64) -> Bool { Double(now - ns) / 1e9 >= gracePeriod }

    /// Deletes the objects of forgotten packs whose grace period is over, then their doomed rows (a crash in
    /// between leaves rows whose objects are gone: the next run's delete finds nothing and removes them).
    private func deleteDoomed(_ result: inout Result) throws {
        let now = Clock.nowNanoseconds()
        var deleted: [ContentHash] = []
        for pack in try repo.catalog.doomedPacks() {
            if graceOver(since: pack.doomedNs, now: now) {
                do {
                    try repo.storage.delete(pack.id)
                } catch let error as StoreError where error.code == .notFound {
                    // Deleted by an earlier run that stopped before removing the row.
                }
                deleted.append(pack.id)
            } else {
                result.packsWaiting += 1
                result.bytesWaiting += pack.size
            }
        }
        try repo.catalog.removeDoomedPacks(deleted)
        result.packsDeleted = deleted.count
    }

    /// Copies the live chunks of `packs` into new packs (the verified bytes of each, and the new pack verified
    /// again once sealed), then has the catalog forget the old packs.
    private func rewrite(_ packs: [ContentHash]) throws -> Int {
        let writer = PackWriter(storage: repo.storage)
        var moved: [ChunkLocation] = []
        var sources: [ContentHash] = []
        func sealAndSwap() throws {
            guard !writer.isEmpty else { return }
            let sealed = try writer.seal()
            // The new pack is read back and every chunk proven before the catalog points at it and the sources
            // go. If this fails the sources stay referenced and intact; the new pack is an orphan the next gc
            // removes.
            for location in sealed.chunks { _ = try repo.reader.read(location) }
            // A rewrite that reproduces a source byte for byte has that source's name: never drop it. The
            // sources are forgotten (doomed) here; `deleteDoomed` deletes their objects.
            let dropped = sources.filter { $0 != sealed.pack }
            try repo.catalog.relocate(sealed.chunks, newPack: sealed.pack, newPackSize: sealed.size, dropping: dropped)
            moved.removeAll()
            sources.removeAll()
        }
        for pack in packs {
            for chunk in try repo.catalog.chunks(inPack: pack) {
                // The very bytes that were verified are copied (never a second read), and a damaged chunk is
                // never copied: gc stops and `verify` names it.
                let record = try repo.reader.verifiedRecord(chunk)
                try writer.append(ChunkRecord.Encoded(id: chunk.id, rawLength: chunk.rawLength, bytes: record,
                                                      tableHash: chunk.tableHash, codec: chunk.codec))
                moved.append(chunk)
            }
            sources.append(pack)
            if writer.isFull { try sealAndSwap() }
        }
        try sealAndSwap()
        return packs.count
    }
}
