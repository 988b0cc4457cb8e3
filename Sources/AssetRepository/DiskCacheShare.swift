import AssetStore

/// The part of this host's disk cache that holds one store's chunks: what `assetfs cache` shows per store and
/// `assetfs cache clear --store` deletes.
///
/// The disk cache is content-addressed and shared by every store the host uses (a chunk two stores hold is
/// kept once), so which store an entry belongs to is a question for each store's catalog: the cached chunk ids
/// are looked up in it, 1,000 per query. A chunk that two stores hold counts for both.
public struct DiskCacheShare: Sendable, Codable {
    public var store: String
    public var chunks = 0
    public var bytes: UInt64 = 0

    /// The cached chunks that `repo`'s catalog knows.
    public static func of(_ repo: Repository, in cache: DiskChunkCache) throws -> (share: DiskCacheShare, ids: [ContentHash]) {
        let held = cache.chunks()
        var share = DiskCacheShare(store: repo.root)
        var ids: [ContentHash] = []
        for start in stride(from: 0, to: held.count, by: 1_000) {
            let batch = held[start..<min(held.count, start + 1_000)]
            let known = try repo.catalog.existingChunks(batch.map(\.id))
            for entry in batch where known.contains(entry.id) {
                ids.append(entry.id)
                share.chunks += 1
                share.bytes += entry.bytes
            }
        }
        return (share, ids)
    }
}
