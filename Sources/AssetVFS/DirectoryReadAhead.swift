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
    private let lock = Lock()
    // Protected by `lock`: per directory tree, the index looked up last and how far fetches were started.
    private var scans: [Int64: (last: Int, startedTo: Int)] = [:]

    init(depth: Int) { self.depth = depth }

    /// Called for each file a lookup finds in tree `treeID`.
    func noteLookup(treeID: Int64, name: [UInt8], in fs: AssetFileSystem) {
        guard depth > 0, let entries = try? fs.catalog.entries(of: treeID), let index = Self.index(of: name, in: entries) else { return }
        let range: Range<Int>? = lock.withLock {
            let previous = scans[treeID]
            // Only a forward walk: a reader that jumps around gets no read-ahead (and costs no requests).
            guard let previous, index > previous.last, index <= previous.last + 2 else {
                if scans.count > 1024 { scans.removeAll() }
                scans[treeID] = (index, index)
                return nil
            }
            let upper = min(entries.count, index + 1 + depth)
            let from = max(index + 1, previous.startedTo + 1)
            scans[treeID] = (index, max(previous.startedTo, upper - 1))
            return from < upper ? from..<upper : nil
        }
        guard let range else { return }
        for entry in entries[range] where entry.kind == .file {
            guard let fileID = entry.fileID else { continue }
            fs.fetchPool.run {
                // Safe to drop errors: the reader that opens the file loads it again and reports the error.
                guard let chunks = try? fs.chunkLists.value(fileID, make: { try fs.catalog.fileChunks(fileID) }),
                      let first = chunks.first, !fs.cache.contains(.chunk(first.location.id)) else { return }
                _ = try? fs.cache.value(.chunk(first.location.id)) { .bytes(try fs.repo.reader.readSlice(first.location, inOrder: true)) }
            }
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
