import AssetCatalog
import AssetStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct CommitOptions: Sendable {
    public var message = ""
    public var tag: String?
    public var meta: [MetaItem] = []
    public var keep = false
    public var allowDiverge = false
    /// Inputs declared by hand (--input); observed ones come from the workspace (Documentation/Lineage.md).
    public var declaredInputs: [LineageInput] = []
    /// A JSON file in the workspace (e.g. metrics.json) whose keys become metadata (issue 19); `meta` wins.
    public var metricsFrom: String?
    public var author = currentUserName()
    public init() {}
}

/// Turns a workspace into the next version of its asset.
///
/// Consistency: the committer holds the workspace's lock exclusively, so the mount daemon (which takes it
/// shared around every change) cannot change anything mid-snapshot; and it refuses while any file is open for
/// writing, so no file is captured half-written. Only directories on the path to a change are rebuilt;
/// untouched subtrees and files are reused by id. Atomicity is the importer's: packs durable first, the
/// version row last, in one transaction.
public struct WorkspaceCommitter {
    public let repo: Repository
    public let workspace: Workspace
    public let options: CommitOptions

    public init(repo: Repository, workspace: Workspace, options: CommitOptions) {
        self.repo = repo
        self.workspace = workspace
        self.options = options
    }

    /// `warning` hears each special file (FIFO, socket, device node) left out of the version, as import says it.
    public func run(warning: (String) -> Void = { _ in }) throws -> VersionInfo {
        let info = workspace.info
        let spec = "\(info.asset)/\(info.name)"
        if let tag = options.tag, let problem = Names.tagProblem(tag) { throw RepositoryError(.usage, problem) }
        let storeLock = try repo.lock(exclusive: false)
        defer { storeLock.release() }
        let session = try StoreSession.open(repo, kind: .commit, excluding: [.gc])
        defer { session.close() }
        let wsLock = try WorkspaceLocks.exclusive(workspace.directory)
        defer { wsLock.release() }
        try refuseOpenWriters(spec)

        let latest = try repo.catalog.versions(of: info.asset).last?.number ?? 0
        if latest != info.baseVersion && !options.allowDiverge {
            throw RepositoryError(.conflict, "\(info.asset) has v\(latest), newer than v\(info.baseVersion) that workspace \(spec) is based on; committing would not include v\(latest)'s changes. Re-create the workspace from v\(latest), or commit anyway with --allow-diverge (parent stays v\(info.baseVersion))")
        }

        var importOptions = ImportOptions(asset: info.asset, source: workspace.directory)
        importOptions.author = options.author
        let importer = try Importer(repo: repo, options: importOptions)
        let root = try commitDirectory(try workspace.root(), persisted: true, path: spec, importer: importer, warning: warning)
        try importer.pipeline.finish()
        guard let rootID = importer.pipeline.treeID(root.hash) else {
            throw RepositoryError(.failure, "internal error: commit did not write its root tree")
        }
        var meta = try options.metricsFrom.map { path -> [MetaItem] in
            guard let bytes = try readFile(path) else {
                throw RepositoryError(.notFound, "--metrics-from \(path): no such file in workspace \(spec)")
            }
            return try MetaFile.items(Data(bytes), source: "\(spec)/\(path)")
        } ?? []
        meta += options.meta
        meta.append(MetaItem(key: "assetfs.workspace", value: spec))
        let lineage = try self.lineage()
        try session.requireValid("commit of \(spec)")
        let number = try repo.catalog.write { w -> Int in
            let version = NewVersion(rootTreeID: rootID, parent: info.baseVersion, author: options.author, message: options.message,
                                     fileCount: root.files, logicalBytes: root.size, newBytes: importer.pipeline.newBytes,
                                     meta: meta, tag: options.tag, lineage: lineage)
            let number = try w.createVersion(asset: info.asset, version, user: options.author)
            // Same transaction: a crash can never leave both the new version and the workspace it came from.
            if !options.keep { try w.removeWorkspace(id: info.id, user: options.author, reason: "commit-workspace") }
            return number
        }
        guard let version = try repo.catalog.version(of: info.asset, number: number) else {
            throw RepositoryError(.failure, "internal error: v\(number) vanished after commit")
        }
        // The version is complete here. A crash below leaves a workspace that still shows the right content
        // (its old base plus its changes); at worst the next commit asks for --allow-diverge.
        if options.keep {
            try workspace.meta.clearLineage()  // Recorded with the version; the next one starts afresh.
            try WorkspaceManager(repo: repo).rebase(workspace, onto: version)
        } else {
            removeTree(workspace.directory)  // Its registry row went with the version.
        }
        return version
    }

    /// The bytes of the regular file at `path` (relative, `/`-separated) in the workspace, or nil when there is
    /// none. At most 16 MiB: it is metadata.
    func readFile(_ path: String) throws -> [UInt8]? {
        var node = try workspace.root()
        for part in path.split(separator: "/") where !part.isEmpty {
            guard node.kind == .directory, let next = try workspace.lookup(node, Array(part.utf8)) else { return nil }
            node = next
        }
        guard node.kind == .file else { return nil }
        let size = try workspace.size(of: node)
        guard size <= 16 << 20 else { throw RepositoryError(.usage, "\(path) is \(size) bytes: a metrics file of at most 16 MiB is expected") }
        let (delta, base) = try mergedSources(node)
        defer { delta?.close() }
        return try Workspace.readMerged(node, size: size, delta: delta, offset: 0, count: Int(size), base: base)
    }

    /// What a workspace file's bytes are merged from: its delta file, open (the caller closes it), and a reader
    /// of its stored base (zeros when it has none).
    private func mergedSources(_ node: WorkspaceNode) throws -> (delta: DeltaFile?, base: (UInt64, Int) throws -> [UInt8]) {
        let delta = node.hasDelta ? try DeltaFile.open(workspace.deltaPath(node.ino), create: false) : nil
        let stored = try node.baseFileID.map { try StoredFileRangeReader(repo: repo, fileID: $0) }
        return (delta, { offset, count in
            guard let stored else { return [UInt8](repeating: 0, count: count) }
            return try stored.read(offset, count)
        })
    }

    /// What the mount observed the workspace's writers read, with the declared inputs.
    private func lineage() throws -> LineageRecord {
        var record = LineageRecord(inputs: options.declaredInputs)
        for text in try workspace.meta.lineageRecords() { record.merge(try LineageRecord.decode(text)) }
        return repo.localized(record)
    }

    private func refuseOpenWriters(_ spec: String) throws {
        let writers = try workspace.meta.openWriters()
        guard !writers.isEmpty else { return }
        if WorkspaceLocks.daemonAlive(workspace.directory) {
            let paths = writers.compactMap { try? WorkspacePaths(workspace: workspace).path(of: $0) }.prefix(20)
            throw RepositoryError(.conflict, "files in \(spec) are open for writing: \(paths.joined(separator: ", ")); close them (finish the writing program) and run commit again")
        }
        try workspace.meta.clearOpenWriters()  // Left by a daemon that died: nobody is writing.
    }

    /// Returns the tree hash of `dir` as it should be committed, queuing new trees and files on the importer.
    private func commitDirectory(_ dir: WorkspaceNode, persisted: Bool, path: String, importer: Importer,
                                 warning: (String) -> Void) throws -> (hash: ContentHash, files: Int, size: UInt64) {
        if !persisted, let treeID = dir.baseTreeID {
            let tree = try repo.catalog.tree(treeID)
            importer.pipeline.noteKnownTree(tree.hash, id: treeID)
            return (tree.hash, tree.fileCount, tree.totalSize)
        }
        var entries: [TreeEntry] = []
        var files: [FileBuild?] = []
        var subtrees: [ContentHash?] = []
        var fileTotal = 0
        var sizeTotal: UInt64 = 0
        for (name, node) in try workspace.listing(dir) {
            let childPath = path + "/" + String(decoding: name, as: UTF8.self)
            if node.kind.isSpecial {
                warning(EntryKind.skippedWarning(node.kind.description, path: childPath))
                continue
            }
            let isPersisted = try workspace.meta.node(node.ino) != nil
            var entry = TreeEntry(name: name, kind: node.kind, mode: node.mode, uid: node.uid, gid: node.gid, size: 0,
                                  mtimeNs: node.mtimeNs)
            switch node.kind {
            case .file:
                let file = try commitFile(node, importer: importer)
                entry.size = file.size
                files.append(file)
                subtrees.append(nil)
                fileTotal += 1
                sizeTotal += file.size
            case .directory:
                let sub = try commitDirectory(node, persisted: isPersisted, path: childPath, importer: importer, warning: warning)
                files.append(nil)
                subtrees.append(sub.hash)
                fileTotal += sub.files
                sizeTotal += sub.size
            case .symlink:
                entry.target = node.target ?? []
                entry.size = UInt64(entry.target!.count)
                files.append(nil)
                subtrees.append(nil)
            case .fifo, .socket, .characterDevice, .blockDevice:
                continue  // Skipped above.
            }
            entries.append(entry)
        }
        try importer.flushBatch()
        try importer.pipeline.drain()
        importer.fileHasher.drain()
        let hash = try importer.pipeline.enqueueTree(entries: entries, files: files, subtrees: subtrees,
                                                     fileCount: fileTotal, totalSize: sizeTotal)
        return (hash, fileTotal, sizeTotal)
    }

    private func commitFile(_ node: WorkspaceNode, importer: Importer) throws -> FileBuild {
        if !node.hasDelta, let baseID = node.baseFileID {
            let info = try repo.catalog.file(baseID)
            if node.baseLimit == info.size {
                let file = FileBuild(size: info.size)
                file.streamedHash = info.hash
                file.id = info.id
                importer.pipeline.noteKnownFile(info.hash, id: info.id)
                return file
            }
        }
        if node.hasDelta, let baseID = node.baseFileID {
            return try commitEditedFile(node, baseID: baseID, importer: importer)
        }
        let size = try workspace.size(of: node)
        let (delta, base) = try mergedSources(node)
        defer { delta?.close() }
        var position: UInt64 = 0
        let (file, length) = try importer.streamChunks(size: size) { buffer in
            let want = Int(min(UInt64(buffer.count), size - position))
            guard want > 0 else { return 0 }
            let n = try Workspace.readMerged(node, size: size, delta: delta, offset: position,
                                             into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), base: base)
            position += UInt64(n)
            return n
        }
        guard length == size else { throw RepositoryError(.failure, "workspace file changed size during commit") }
        return file
    }
}

extension WorkspaceCommitter {
    /// Commits a base file with edits, re-chunking only around them.
    ///
    /// Base chunks that lie wholly in unedited bytes and start where the new chunking stands are reused as
    /// they are. From the first edited chunk the merged bytes are cut afresh until a cut lands on a base chunk
    /// boundary followed by unedited bytes: from there content-defined chunking would repeat the base's cuts,
    /// so the base chunks are reused again. Every byte is still read once for the whole-file SHA-256 (on the
    /// importer's hasher thread, while this thread reads and verifies chunks).
    func commitEditedFile(_ node: WorkspaceNode, baseID: Int64, importer: Importer) throws -> FileBuild {
        let size = try workspace.size(of: node)
        let baseInfo = try repo.catalog.file(baseID)
        let baseChunks = try repo.catalog.fileChunks(baseID)
        let delta = try DeltaFile.open(workspace.deltaPath(node.ino), create: false)
        defer { delta.close() }
        let base = try StoredFileRangeReader(repo: repo, fileID: baseID)
        let cleanLimit = min(node.baseLimit, size, baseInfo.size)
        let edits = try delta.runs(from: 0, to: size).filter(\.data).map { ($0.start, $0.end) }
        func clean(_ a: UInt64, _ b: UInt64) -> Bool {
            b <= cleanLimit && !edits.contains { $0.0 < b && $0.1 > a }
        }
        var startIndex: [UInt64: Int] = [:]
        for (i, c) in baseChunks.enumerated() { startIndex[c.offset] = i }

        let file = FileBuild(size: size)
        let hash = FileHashTask(file: file, hasher: importer.fileHasher)
        let maxChunk = importer.chunker.parameters.maxSize
        var window: [UInt8] = []  // merged bytes from `position` on, read ahead for the chunker
        var position: UInt64 = 0
        while position < size {
            if let i = startIndex[position], case let c = baseChunks[i],
               clean(position, position + UInt64(c.location.rawLength)) {
                let bytes = try repo.reader.readSlice(c.location)
                hash.update(bytes)
                _ = file.appendChunk(offset: position, hash: c.location.id)
                position += UInt64(bytes.count)
                window.removeAll()
                continue
            }
            let want = Int(min(size - position, UInt64(maxChunk)))
            if window.count < want {
                let from = position + UInt64(window.count)
                window += try Workspace.readMerged(node, size: size, delta: delta, offset: from, count: want - window.count) { o, n in
                    try base.read(o, n)
                }
            }
            let cut = window.withUnsafeBytes { importer.chunker.cutPoint(UnsafeRawBufferPointer(rebasing: $0[0..<want])) }
            let chunk = Array(window[0..<cut])
            window.removeFirst(cut)
            hash.update(chunk)
            let index = file.appendChunk(offset: position, hash: nil)
            importer.addJob(ChunkJob(file: file, index: index, bytes: chunk))
            if importer.batchBytes >= importer.batchLimit { try importer.flushBatch() }
            position += UInt64(cut)
        }
        hash.finish()
        importer.pipeline.enqueue(.file(file))
        return file
    }
}

/// The two advisory locks of a workspace directory.
public enum WorkspaceLocks {
    /// Held exclusively by commit, shared by the daemon around each change.
    public static func exclusive(_ dir: String) throws -> StoreLock { try StoreLock(path: dir + "/lock", exclusive: true, wait: true) }
    public static func shared(_ dir: String) throws -> StoreLock { try StoreLock(path: dir + "/lock", exclusive: false, wait: true) }
    /// Held shared by every daemon serving the workspace, for as long as it serves it.
    public static func daemon(_ dir: String) throws -> StoreLock { try StoreLock(path: dir + "/daemon.lock", exclusive: false, wait: true) }

    public static func daemonAlive(_ dir: String) -> Bool {
        guard let probe = try? StoreLock(path: dir + "/daemon.lock", exclusive: true, wait: false) else { return true }
        probe.release()
        return false
    }
}

/// Finds paths of workspace inodes by walking overrides up to the root (for messages).
struct WorkspacePaths {
    let workspace: Workspace

    func path(of ino: UInt64) throws -> String {
        var components: [String] = []
        var current = ino
        var guardCount = 0
        while current != Workspace.rootInode, guardCount < 4096 {
            guard let (parent, name) = try workspace.meta.parentOf(current) else { return "inode \(ino)" }
            components.append(String(decoding: name, as: UTF8.self))
            current = parent
            guardCount += 1
        }
        return components.reversed().joined(separator: "/")
    }
}
