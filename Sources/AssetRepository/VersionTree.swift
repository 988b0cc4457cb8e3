import AssetCatalog
import AssetStore

/// Navigation inside one version's tree: path lookup and depth-first walks, loading one directory at a time.
public struct VersionTree: Sendable {
    public let catalog: Catalog
    public let version: VersionInfo

    public init(catalog: Catalog, version: VersionInfo) {
        self.catalog = catalog
        self.version = version
    }

    /// The entry at `path` (nil for the root itself), or an error naming the missing component.
    public func lookup(_ path: [String]) throws -> TreeEntry? {
        var treeID = version.rootTreeID
        var found: TreeEntry?
        for (i, component) in path.enumerated() {
            guard let entry = try catalog.entry(in: treeID, named: Array(component.utf8)) else {
                throw RepositoryError(.notFound, "\(version.asset)@v\(version.number) has no \(path[0...i].joined(separator: "/"))")
            }
            found = entry
            if i < path.count - 1 {
                guard entry.kind == .directory, let sub = entry.subtreeID else {
                    throw RepositoryError(.notFound, "\(version.asset)@v\(version.number): \(path[0...i].joined(separator: "/")) is not a directory")
                }
                treeID = sub
            }
        }
        return found
    }

    /// Calls `visit` for every entry below `treeID`, depth-first in name order, with its slash-separated path.
    public func walk(_ treeID: Int64? = nil, prefix: [UInt8] = [], _ visit: ([UInt8], TreeEntry) throws -> Void) throws {
        for entry in try catalog.entries(of: treeID ?? version.rootTreeID) {
            let path = prefix.isEmpty ? entry.name : prefix + [UInt8(ascii: "/")] + entry.name
            try visit(path, entry)
            if entry.kind == .directory, let sub = entry.subtreeID { try walk(sub, prefix: path, visit) }
        }
    }

    /// The ids of the files at or below `path` (the whole version when empty), each once, in walk order.
    public func fileIDs(at path: [String] = []) throws -> [Int64] { try files(at: path).map(\.id) }

    /// The files at or below `path` (the whole version when empty) with their sizes, each file once, in walk order.
    public func files(at path: [String] = []) throws -> [(id: Int64, size: UInt64)] {
        var out: [(id: Int64, size: UInt64)] = []
        var seen = Set<Int64>()
        func add(_ entry: TreeEntry?) {
            if let entry, let id = entry.fileID, seen.insert(id).inserted { out.append((id, entry.size)) }
        }
        let start = try lookup(path)
        switch start?.kind {
        case .file?: add(start)
        case .symlink?, .fifo?, .socket?, .characterDevice?, .blockDevice?: break
        case .directory?, nil:
            guard let tree = start.map({ $0.subtreeID }) ?? version.rootTreeID else { return [] }
            try walk(tree) { _, entry in add(entry) }
        }
        return out
    }

    /// The distinct chunks of `files`, in file order (chunk lists asked for 1,000 files at a time).
    public func chunks(of files: [Int64]) throws -> [ChunkLocation] {
        var seen = Set<ContentHash>()
        var out: [ChunkLocation] = []
        for start in stride(from: 0, to: files.count, by: 1_000) {
            let batch = Array(files[start..<min(start + 1_000, files.count)])
            let lists = try catalog.fileChunks(batch)
            for file in batch {
                for c in lists[file] ?? [] where seen.insert(c.location.id).inserted { out.append(c.location) }
            }
        }
        return out
    }
}

/// Reads a stored file's bytes in order, chunk by chunk, each verified against its hash, and checks the
/// whole-file SHA-256 at the end.
public struct FileContentReader: Sendable {
    public let repo: Repository

    public init(repo: Repository) { self.repo = repo }

    /// Streams the content to `sink`; throws on any damaged chunk or a whole-file hash mismatch.
    public func stream(fileID: Int64, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let info = try repo.catalog.file(fileID)
        var hasher = StreamingHasher()
        var total: UInt64 = 0
        for chunk in try repo.catalog.fileChunks(fileID) {
            let bytes = try repo.reader.read(chunk.location, inOrder: true)
            try bytes.withUnsafeBytes { raw in
                hasher.update(raw)
                try sink(raw)
            }
            total += UInt64(bytes.count)
        }
        guard total == info.size, hasher.finalize() == info.hash else {
            throw RepositoryError(.corruption, "file \(info.hash.short) does not match its SHA-256 after reading: the store is damaged (run `assetfs verify`)")
        }
    }
}
