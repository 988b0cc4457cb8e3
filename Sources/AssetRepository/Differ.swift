import AssetCatalog
import AssetStore

/// Compares two versions tree by tree; identical subtrees (same id, hence same hash) are skipped unread.
/// Directories are reported when added or removed (as `path/`) and when their mode or owner changes; a
/// directory's own mtime is not reported, since it changes with every change inside it.
public struct Differ {
    public let catalog: Catalog
    public init(catalog: Catalog) { self.catalog = catalog }

    public struct Change: Sendable, Codable {
        public enum Kind: String, Sendable, Codable { case added, removed, modified }
        public let kind: Kind
        public let path: String
        public let oldSize: UInt64?
        public let newSize: UInt64?
    }

    public func diff(_ a: VersionInfo, _ b: VersionInfo) throws -> [Change] {
        var out: [Change] = []
        try compare(a.rootTreeID, b.rootTreeID, prefix: "", into: &out)
        return out
    }

    private func compare(_ a: Int64?, _ b: Int64?, prefix: String, into out: inout [Change]) throws {
        if a == b { return }
        let left = try a.map { try catalog.entries(of: $0) } ?? []
        let right = try b.map { try catalog.entries(of: $0) } ?? []
        var i = 0, j = 0
        while i < left.count || j < right.count {
            let l = i < left.count ? left[i] : nil
            let r = j < right.count ? right[j] : nil
            if let l, r == nil || nameOrder(l.name, r!.name) {
                try report(l, prefix: prefix, kind: .removed, into: &out)
                i += 1
            } else if let r, l == nil || nameOrder(r.name, l!.name) {
                try report(r, prefix: prefix, kind: .added, into: &out)
                j += 1
            } else if let l, let r {
                let path = prefix + l.displayName
                if l.kind == .directory && r.kind == .directory {
                    if l.mode != r.mode || l.uid != r.uid || l.gid != r.gid {
                        out.append(Change(kind: .modified, path: path + "/", oldSize: 0, newSize: 0))
                    }
                    try compare(l.subtreeID, r.subtreeID, prefix: path + "/", into: &out)
                } else if l.kind != r.kind {
                    try report(l, prefix: prefix, kind: .removed, into: &out)
                    try report(r, prefix: prefix, kind: .added, into: &out)
                } else if l != r {
                    out.append(Change(kind: .modified, path: path, oldSize: l.size, newSize: r.size))
                }
                i += 1
                j += 1
            }
        }
    }

    private func report(_ entry: TreeEntry, prefix: String, kind: Change.Kind, into out: inout [Change]) throws {
        let path = prefix + entry.displayName
        if entry.kind == .directory {
            // The directory itself, then what it holds (an empty directory is a change too).
            out.append(Change(kind: kind, path: path + "/", oldSize: kind == .removed ? 0 : nil, newSize: kind == .added ? 0 : nil))
            try compare(kind == .removed ? entry.subtreeID : nil, kind == .added ? entry.subtreeID : nil,
                        prefix: path + "/", into: &out)
            return
        }
        out.append(Change(kind: kind, path: path, oldSize: kind == .removed ? entry.size : nil,
                          newSize: kind == .added ? entry.size : nil))
    }
}
