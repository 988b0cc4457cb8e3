import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// An open workspace: its registry row, its overlay metadata and its delta files, resolved against the base
/// tree. Read-side only; POSIX mutations live in AssetVFS's `WorkspaceOverlay`, commit in `WorkspaceCommitter`.
///
/// Inode numbers (local to the workspace): 1 is the root; [2, 2^40) are allocated to new nodes; untouched
/// base entries get `hashedInode(parent, name)` in [2^40, 2^62), which stays valid when the entry is later
/// persisted (moved, changed), because it is derived from where the entry was first seen.
public final class Workspace: @unchecked Sendable {
    public static let rootInode: UInt64 = 1
    public let info: WorkspaceInfo
    public let directory: String
    public let meta: WorkspaceMetadata
    public let repo: Repository

    init(info: WorkspaceInfo, directory: String, meta: WorkspaceMetadata, repo: Repository) {
        self.info = info
        self.directory = directory
        self.meta = meta
        self.repo = repo
    }

    public static func hashedInode(parent: UInt64, name: [UInt8]) -> UInt64 {
        var bytes = withUnsafeBytes(of: parent.littleEndian, Array.init)
        bytes += name
        return (1 << 40) + ContentHash.of(bytes).w0 % ((1 << 62) - (1 << 40))
    }

    public func deltaPath(_ ino: UInt64) -> String { "\(directory)/delta/\(ino)" }

    /// A node for an untouched base entry, as it would be persisted.
    public func synthesize(_ entry: TreeEntry, parent: UInt64) -> WorkspaceNode {
        WorkspaceNode(ino: Self.hashedInode(parent: parent, name: entry.name), kind: entry.kind, mode: entry.mode,
                      uid: entry.uid, gid: entry.gid, mtimeNs: entry.mtimeNs, ctimeNs: entry.mtimeNs,
                      size: entry.size, target: entry.target, baseFileID: entry.fileID,
                      baseLimit: entry.kind == .file ? entry.size : 0, baseTreeID: entry.subtreeID, hasDelta: false, nlink: 1)
    }

    public func root() throws -> WorkspaceNode {
        guard let root = try meta.node(Self.rootInode) else {
            throw RepositoryError(.corruption, "workspace \(info.asset)/\(info.name) has no root node in \(directory)/meta.sqlite")
        }
        return root
    }

    /// The node named `name` in directory `parent`: an override, else the base entry; nil if absent.
    public func lookup(_ parent: WorkspaceNode, _ name: [UInt8]) throws -> WorkspaceNode? {
        if let child = try meta.dirent(parent: parent.ino, name: name) {
            if child == WorkspaceMetadata.whiteout { return nil }
            return try meta.node(child)
        }
        guard let tree = parent.baseTreeID, let entry = try repo.catalog.entry(in: tree, named: name) else { return nil }
        return synthesize(entry, parent: parent.ino)
    }

    /// The merged listing of a directory, sorted by name bytes.
    public func listing(_ dir: WorkspaceNode) throws -> [(name: [UInt8], node: WorkspaceNode)] {
        var overrides: [[UInt8]: UInt64] = [:]
        for d in try meta.dirents(parent: dir.ino) { overrides[d.name] = d.child }
        var out: [(name: [UInt8], node: WorkspaceNode)] = []
        if let tree = dir.baseTreeID {
            for entry in try repo.catalog.entries(of: tree) where overrides[entry.name] == nil {
                out.append((entry.name, synthesize(entry, parent: dir.ino)))
            }
        }
        for (name, child) in overrides where child != WorkspaceMetadata.whiteout {
            if let node = try meta.node(child) { out.append((name, node)) }
        }
        return out.sorted { nameOrder($0.name, $1.name) }
    }

    /// The size a file shows: its delta's size when it has one.
    public func size(of node: WorkspaceNode) throws -> UInt64 {
        guard node.kind == .file, node.hasDelta else { return node.size }
        var st = stat()
        guard stat(deltaPath(node.ino), &st) == 0 else {
            // Committed and discarded (or rebased) while still open: the size recorded at the last flush is
            // the file's final size.
            return node.size
        }
        return UInt64(st.st_size)
    }

    /// Reads `count` bytes at `offset` of a file, merging delta, base and zero-filled regions.
    /// `base(offset, count)` reads the base file; `delta` is the open delta file if the node has one.
    public static func readMerged(_ node: WorkspaceNode, size: UInt64, delta: DeltaFile?, offset: UInt64, count: Int,
                                  base: (UInt64, Int) throws -> [UInt8]) throws -> [UInt8] {
        guard offset < size else { return [] }
        let n = Int(min(size, offset + UInt64(count)) - offset)
        return try uninitializedBytes(n) { try readMerged(node, size: size, delta: delta, offset: offset, into: $0, base: base) }
    }

    /// The merged bytes at `offset`, written straight into `buffer` (edited runs are pread into it, no copies);
    /// returns how many bytes were written: `buffer.count`, or fewer at end of file.
    public static func readMerged(_ node: WorkspaceNode, size: UInt64, delta: DeltaFile?, offset: UInt64,
                                  into buffer: UnsafeMutableRawBufferPointer,
                                  base: (UInt64, Int) throws -> [UInt8]) throws -> Int {
        guard offset < size else { return 0 }
        let end = min(size, offset + UInt64(buffer.count))
        var filled = 0
        func copy(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + $0.count)]).copyMemory(from: $0) }
            filled += bytes.count
        }
        func zeros(_ count: Int) {
            guard count > 0 else { return }
            UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + count)]).initializeMemory(as: UInt8.self, repeating: 0)
            filled += count
        }
        // Base bytes up to the base limit, zeros (a hole left by truncate-and-extend) after it.
        func fromBase(_ from: UInt64, _ to: UInt64) throws {
            let baseEnd = min(to, node.baseLimit)
            if from < baseEnd {
                let bytes = try base(from, Int(baseEnd - from))
                // The buffer is written through unchecked pointers: a short or long answer must not shift or
                // overrun it.
                guard bytes.count == Int(baseEnd - from) else {
                    throw StoreError(.corrupt, "base file of workspace inode \(node.ino) gave \(bytes.count) bytes at \(from), expected \(baseEnd - from)")
                }
                copy(bytes)
            }
            zeros(Int(to - max(from, baseEnd)))
        }
        guard let delta else {
            try fromBase(offset, end)
            return filled
        }
        for run in try delta.runs(from: offset, to: end) {
            let length = Int(run.end - run.start)
            if run.data {
                let n = try delta.descriptor.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + length)]),
                                                   at: run.start)
                filled += n
                zeros(length - n)  // the delta file ends early: the rest of the run reads as zeros
            } else {
                try fromBase(run.start, run.end)
            }
        }
        return filled
    }
}

/// Reads byte ranges of a stored file straight from packs (verified), remembering the last chunk: what the
/// committer and `workspace status` need; the mount uses its shared cache instead.
public final class StoredFileRangeReader {
    let repo: Repository
    let chunks: [FileChunk]
    private var lastChunk: (index: Int, bytes: [UInt8])?

    public init(repo: Repository, fileID: Int64) throws {
        self.repo = repo
        chunks = try repo.catalog.fileChunks(fileID)
    }

    public func read(_ offset: UInt64, _ count: Int) throws -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count)
        var position = offset
        let end = offset + UInt64(count)
        while position < end {
            var low = 0, high = chunks.count - 1
            while low < high {
                let mid = (low + high + 1) / 2
                if chunks[mid].offset <= position { low = mid } else { high = mid - 1 }
            }
            guard !chunks.isEmpty else { break }
            let chunk = chunks[low]
            let bytes: [UInt8]
            if let last = lastChunk, last.index == low {
                bytes = last.bytes
            } else {
                bytes = try repo.reader.read(chunk.location)
                lastChunk = (low, bytes)
            }
            let from = Int(position - chunk.offset)
            let to = min(bytes.count, Int(end - chunk.offset))
            guard from < to else { break }
            out += bytes[from..<to]
            position = chunk.offset + UInt64(to)
        }
        guard out.count == count else {
            throw RepositoryError(.corruption, "stored file is shorter than its catalog entry")
        }
        return out
    }
}
