import AssetCatalog
import AssetStore

/// Reclaims space after `delete`: drops unreachable catalog rows, deletes packs with no live chunk, and
/// rewrites packs that are mostly garbage.
///
/// Runs under the store's exclusive lock, so no import or commit is between writing a pack and recording its
/// version: a chunk they still need is never deleted. Order of every step: new pack durable, catalog updated,
/// old pack file removed; a crash between steps leaves only garbage that the next gc removes.
public struct GarbageCollector {
    public let repo: Repository
    /// Packs whose live fraction is below this are rewritten.
    public var rewriteThreshold = 0.5

    public init(repo: Repository) { self.repo = repo }

    public struct Result: Sendable, Codable {
        public var chunkRowsRemoved = 0
        public var packsDeleted = 0
        public var packsRewritten = 0
        public var orphanPacksDeleted = 0
        public var stagingFilesRemoved = 0
        public var bytesBefore: UInt64 = 0
        public var bytesAfter: UInt64 = 0
    }

    public func run() throws -> Result {
        let lock = try repo.lock(exclusive: true)
        defer { lock.release() }
        var result = Result()
        result.stagingFilesRemoved = try PackWriter.removeAbandonedScratch(in: repo.storage.scratchDirectory)
        let onDisk = try repo.storage.list()
        result.bytesBefore = onDisk.reduce(0) { $0 + $1.size }
        result.chunkRowsRemoved = try repo.catalog.deleteUnreachable()

        let known = try repo.catalog.packs()
        let knownIDs = Set(known.map(\.id))
        for id in onDisk.map(\.id) where !knownIDs.contains(id) {
            // Written by an import that crashed before recording it: nothing refers to it.
            try repo.storage.delete(id)
            result.orphanPacksDeleted += 1
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
            for id in dead { try repo.storage.delete(id) }
            result.packsDeleted = dead.count
        }
        if !sparse.isEmpty {
            result.packsRewritten = try rewrite(sparse)
        }
        result.bytesAfter = try repo.storage.list().reduce(0) { $0 + $1.size }
        return result
    }

    /// Copies the live chunks of `packs` into new packs (the verified bytes of each, and the new pack verified
    /// again once sealed), then drops the old packs.
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
            // A rewrite that reproduces a source byte for byte has that source's name: never delete it.
            let dropped = sources.filter { $0 != sealed.pack }
            try repo.catalog.relocate(sealed.chunks, newPack: sealed.pack, newPackSize: sealed.size, dropping: dropped)
            for id in dropped { try repo.storage.delete(id) }
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
