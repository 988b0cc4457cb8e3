import AssetCatalog
import AssetStore

/// The Merkle hash of a directory (Documentation/Format.md, "Tree hashes"): over its entries sorted by name
/// bytes, each with its attributes and the hash of its content (file SHA-256, subtree hash or link target).
/// A version's root hash is the hash of its root tree, so equal roots prove equal versions.
public enum TreeHasher {
    public static let domain = Array("assetfs-tree-v1\n".utf8)

    public struct Item {
        public let entry: TreeEntry
        /// File SHA-256 for files, subtree hash for directories, nil for symlinks.
        public let contentHash: ContentHash?
        public init(entry: TreeEntry, contentHash: ContentHash?) {
            self.entry = entry
            self.contentHash = contentHash
        }
    }

    /// `items` must be sorted by name bytes.
    public static func hash(_ items: [Item]) -> ContentHash {
        var hasher = StreamingHasher()
        hasher.update(domain)
        var buf = [UInt8]()
        for item in items {
            let e = item.entry
            buf.removeAll(keepingCapacity: true)
            buf.appendLE32(UInt32(e.name.count))
            buf.append(contentsOf: e.name)
            buf.append(e.kind.rawValue)
            buf.appendLE32(e.mode)
            buf.appendLE32(e.uid)
            buf.appendLE32(e.gid)
            buf.appendLE64(e.size)
            buf.appendLE64(UInt64(bitPattern: e.mtimeNs))
            switch e.kind {
            case .file, .directory: buf.append(contentsOf: item.contentHash?.bytes ?? [UInt8](repeating: 0, count: 32))
            case .symlink:
                let target = e.target ?? []
                buf.appendLE32(UInt32(target.count))
                buf.append(contentsOf: target)
            case .fifo, .socket, .characterDevice, .blockDevice:
                break  // Never in a version (import and commit skip them); the kind byte above is all there is.
            }
            hasher.update(buf)
        }
        return hasher.finalize()
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func appendLE64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
}

/// Byte-wise lexicographic order of names, the order of trees on disk and in hashes.
public func nameOrder(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }
