import AssetCatalog
import AssetStore
import Dispatch

/// Fetches ahead across the files of a directory that a reader goes through in name order (a data loader over
/// shard files, `cp -r`, `tar c`, `diff -r`): when a lookup names a file at or after the one looked up last in
/// that directory, the first chunks of the next `depth` files are fetched into the memory cache in the
/// background, so their round trips overlap instead of queueing one file after another. Worth it where each
/// fetch pays a request's latency (object storage); a local store sets `depth` 0 and this does nothing.
final class DirectoryReadAhead: @unchecked Sendable {
    let depth: Int
    /// Files whose chunk lists are asked for in one catalog query, ahead of the walk.
    static let listBatch = 256
    private let lock = Lock()
    // Protected by `lock`: per directory tree, the index looked up last, how far fetches were started, and how
    // far chunk lists were asked for.
    private var scans: [Int64: (last: Int, startedTo: Int, listedTo: Int)] = [:]

    init(depth: Int) { self.depth = depth }

    /// Called for each file a lookup finds in tree `treeID`.
    func noteLookup(treeID: Int64, name: [UInt8], in fs: AssetFileSystem) {
        guard depth > 0, let entries = try? fs.catalog.entries(of: treeID), let index = Self.index(of: name, in: entries) else { return }
        let plan: (fetch: Range<Int>, lists: Range<Int>?)? = lock.withLock {
            let previous = scans[treeID]
            // Only a forward walk: a reader that jumps around gets no read-ahead (and costs no requests).
            guard let previous, index > previous.last, index <= previous.last + 2 else {
                if scans.count > 1024 { scans.removeAll() }
                scans[treeID] = (index, index, index)
                return nil
            }
            let upper = min(entries.count, index + 1 + depth)
            let from = max(index + 1, previous.startedTo + 1)
            // Chunk lists come ahead of the fetches, many per query: a query per file cost a catalog round trip
            // (and the database's CPU) for every small file.
            var lists: Range<Int>?
            var listedTo = previous.listedTo
            if upper > listedTo {
                lists = max(index + 1, listedTo)..<min(entries.count, index + 1 + Self.listBatch)
                listedTo = lists!.upperBound
            }
            scans[treeID] = (index, max(previous.startedTo, upper - 1), listedTo)
            return from < upper ? (from..<upper, lists) : nil
        }
        guard let plan else { return }
        let fetch = { [entries] in
            for entry in entries[plan.fetch] where entry.kind == .file {
                guard let fileID = entry.fileID else { continue }
                fs.fetchPool.run {
                    // Safe to drop errors: the reader that opens the file loads it again and reports the error.
                    guard let chunks = try? fs.chunkLists.value(fileID, make: { try fs.catalog.fileChunks(fileID) }),
                          let first = chunks.first, !fs.cache.contains(.chunk(first.location.id)),
                          fs.cache.reservePrefetch(first.location.rawLength, limit: fs.cache.prefetchLimit) else { return }
                    fs.fetchReserved(first.location)
                }
            }
        }
        guard let lists = plan.lists else { return fetch() }
        fs.fetchPool.run {
            let ids = entries[lists].compactMap { $0.kind == .file ? $0.fileID : nil }.filter { fs.chunkLists.cached($0) == nil }
            // Safe to drop errors: each file's fetch (or open) asks for its own list again.
            if !ids.isEmpty, let found = try? fs.catalog.fileChunks(ids) {
                for (id, chunks) in found { fs.chunkLists.set(id, chunks) }
            }
            fetch()
        }
    }

    /// The position of `name` in `entries` (sorted by name, bytewise, as both catalogs return them).
    static func index(of name: [UInt8], in entries: [TreeEntry]) -> Int? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].name.lexicographicallyPrecedes(name) { low = mid + 1 } else { high = mid }
        }
        return low < entries.count && entries[low].name == name ? low : nil
    }
}
