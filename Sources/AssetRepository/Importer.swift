import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

public struct ImportOptions: Sendable {
    public var asset: String
    public var source: String
    public var message: String = ""
    public var tag: String?
    public var meta: [MetaItem] = []
    public var rehash = false
    /// Inputs of the new version (declared with --input, or a run's record with --lineage-from).
    public var lineage: LineageRecord?
    public var author: String = currentUserName()
    /// Called on the importing thread about five times a second.
    public var progress: (@Sendable (ImportProgress) -> Void)?
    /// Told once when the import has to wait for a gc (on any host) to finish.
    public var waiting: (@Sendable ([SessionInfo]) -> Void)?

    public init(asset: String, source: String) {
        self.asset = asset
        self.source = source
    }
}

public struct ImportProgress: Sendable {
    public let bytesDone: UInt64
    public let bytesTotal: UInt64?
    public let filesDone: Int
    public let filesTotal: Int?
    public let elapsed: Double
}

public struct ImportResult: Sendable {
    public let version: VersionInfo
    public let warnings: [String]
    public let filesRead: Int
    public let filesReused: Int
}

/// Snapshots a directory tree as the next version of an asset.
///
/// Reads each changed file once, streaming (memory does not grow with file size): the reader thread reads and
/// chunks, `FileHasher` hashes whole files on its own thread, and `ImportPipeline` hashes, compresses and packs
/// the chunks on both cores.
/// Crash-atomic: the version row is written last, in one transaction, after every pack is durable.
public final class Importer {
    let repo: Repository
    let options: ImportOptions
    let chunker: Chunker
    let pipeline: ImportPipeline
    let fileHasher = FileHasher()
    var warnings: [String] = []
    var statRows: [(path: [UInt8], stat: StatCacheEntry, file: FileBuild?)] = []
    var filesRead = 0
    var filesReused = 0
    var fileCount = 0
    var logicalBytes: UInt64 = 0
    var batch: [ChunkJob] = []
    var batchBytes = 0
    let batchLimit = 16 << 20
    var buffer: UnsafeMutableRawBufferPointer
    var bytesTotal: UInt64?
    var filesTotal: Int?
    let started = Clock.nowNanoseconds()
    var lastProgress: Int64 = 0
    var bytesRead: UInt64 = 0

    public init(repo: Repository, options: ImportOptions) throws {
        if let problem = Names.assetProblem(options.asset) { throw RepositoryError(.usage, problem) }
        if let tag = options.tag, let problem = Names.tagProblem(tag) { throw RepositoryError(.usage, problem) }
        self.repo = repo
        self.options = options
        chunker = Chunker(parameters: repo.config.chunker)
        pipeline = ImportPipeline(repo: repo)
        buffer = .allocate(byteCount: max(8 << 20, repo.config.chunker.maxSize * 2), alignment: 64)
    }

    deinit { buffer.deallocate() }

    public func run() throws -> ImportResult {
        let lock = try repo.lock(exclusive: false)
        defer { lock.release() }
        let session = try StoreSession.open(repo, kind: .import, excluding: [.gc], waiting: options.waiting)
        defer { session.close() }
        let rootFD = Glibc.open(options.source, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 {
            throw RepositoryError(.usage, "cannot read source directory \(options.source): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(rootFD) }
        var counted: (files: Int, bytes: UInt64)?
        if options.progress != nil {
            counted = measure(rootFD, path: [])
            bytesTotal = counted?.bytes
            filesTotal = counted?.files
        }
        let root = try importDirectory(rootFD, path: [])
        if let counted, counted.files != fileCount {
            // The walk and the count read the same tree: a difference means it changed meanwhile, or a bug.
            warnings.append("\(options.source) held \(counted.files) files when counted before the import, but \(fileCount) were imported: the directory changed while it was read; re-run the import once it is stable")
        }
        try pipeline.finish()
        guard let rootHash = root.tree.hash, let rootID = pipeline.treeID(rootHash) else {
            throw RepositoryError(.failure, "internal error: root tree was not written")
        }
        let statEntries = statRows.compactMap { row -> (path: [UInt8], entry: StatCacheEntry)? in
            let id = row.file.flatMap { $0.id ?? $0.readyHash.flatMap(pipeline.fileID) } ?? row.stat.fileID
            guard id > 0 else { return nil }
            return (row.path, StatCacheEntry(size: row.stat.size, mtimeNs: row.stat.mtimeNs, ctimeNs: row.stat.ctimeNs,
                                             inode: row.stat.inode, fileID: id))
        }
        try session.requireValid("import")
        let number = try repo.catalog.write { w -> Int in
            let parent = try w.latestVersionNumber(asset: options.asset)
            let version = NewVersion(rootTreeID: rootID, parent: parent, author: options.author, message: options.message,
                                     fileCount: fileCount, logicalBytes: logicalBytes, newBytes: pipeline.newBytes,
                                     meta: options.meta, tag: options.tag, lineage: options.lineage.map { repo.localized($0) })
            let number = try w.createVersion(asset: options.asset, version, user: options.author)
            try w.replaceStatCache(asset: options.asset, entries: statEntries)
            return number
        }
        guard let info = try repo.catalog.version(of: options.asset, number: number) else {
            throw RepositoryError(.failure, "internal error: version v\(number) vanished after commit")
        }
        return ImportResult(version: info, warnings: warnings, filesRead: filesRead, filesReused: filesReused)
    }

    // MARK: Walking

    /// Imports one directory (already open as `fd`) and returns its totals and where its tree hash will be.
    func importDirectory(_ fd: Int32, path: [UInt8]) throws -> (tree: PendingTreeHash, files: Int, size: UInt64) {
        let names = try readDirectoryNames(fd, path: path).sorted(by: nameOrder)
        // How the files here looked at the last import: unchanged ones are reused without reading them.
        let previous = options.rehash ? [:] : try repo.catalog.statCache(asset: options.asset, directory: path)
        var entries: [TreeEntry] = []
        var files: [FileBuild?] = []
        var subtrees: [PendingTreeHash?] = []
        var fileTotal = 0
        var sizeTotal: UInt64 = 0
        for name in names {
            let childPath = path.isEmpty ? name : path + [UInt8(ascii: "/")] + name
            var st = stat()
            if fstatat(fd, cString(name), &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if errno == ENOENT { throw vanished(childPath) }
                throw RepositoryError(.failure, "cannot stat \(display(childPath)): \(String(cString: strerror(errno)))")
            }
            var entry = TreeEntry(name: name, kind: .file, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                                  size: 0, mtimeNs: nanoseconds(st.st_mtim))
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let file = try importFile(fd, name: name, path: childPath, stat: st, previous: previous)
                entry.size = file.size
                entries.append(entry)
                files.append(file)
                subtrees.append(nil)
                fileTotal += 1
                sizeTotal += file.size
            case S_IFDIR:
                let child = openat(fd, cString(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child < 0 {
                    if errno == ENOENT { throw vanished(childPath) }
                    throw RepositoryError(.failure, "cannot open directory \(display(childPath)): \(String(cString: strerror(errno)))")
                }
                let sub: (tree: PendingTreeHash, files: Int, size: UInt64)
                do {
                    defer { Glibc.close(child) }
                    sub = try importDirectory(child, path: childPath)
                }
                entry.kind = .directory
                entries.append(entry)
                files.append(nil)
                subtrees.append(sub.tree)
                fileTotal += sub.files
                sizeTotal += sub.size
            case S_IFLNK:
                entry.kind = .symlink
                entry.target = try readLink(fd, name: name, path: childPath, size: Int(st.st_size))
                entry.size = UInt64(entry.target!.count)
                entries.append(entry)
                files.append(nil)
                subtrees.append(nil)
            default:
                let kind = EntryKind(fileType: UInt32(st.st_mode))?.description ?? "special file"
                warnings.append(EntryKind.skippedWarning(kind, path: display(childPath)))
            }
        }
        // The tree hash needs every file hash of this directory, which the pipeline and the file hasher finish
        // asynchronously: it is computed on the pipeline's queue after this directory's batches, while the reader
        // goes on. Subdirectories were queued earlier, so their hashes are known by then.
        try flushBatch()
        let tree = PendingTreeHash()
        let hasher = fileHasher, pipeline = self.pipeline
        pipeline.afterSubmitted { [entries, files, subtrees, fileTotal, sizeTotal] in
            hasher.drain()
            let subtreeHashes = try subtrees.map { box -> ContentHash? in
                guard let box else { return nil }
                guard let hash = box.hash else { throw RepositoryError(.failure, "internal error: a subtree was hashed after its parent") }
                return hash
            }
            tree.hash = try pipeline.enqueueTree(entries: entries, files: files, subtrees: subtreeHashes,
                                                 fileCount: fileTotal, totalSize: sizeTotal)
        }
        return (tree, fileTotal, sizeTotal)
    }

    func display(_ path: [UInt8]) -> String {
        options.source + "/" + String(decoding: path, as: UTF8.self)
    }

    func vanished(_ path: [UInt8]) -> RepositoryError {
        RepositoryError(.failure, "\(display(path)) vanished while being imported; nothing was stored, re-run the import when the directory is stable")
    }

    func readLink(_ fd: Int32, name: [UInt8], path: [UInt8], size: Int) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: max(size, 255) + 1)
        let n = buf.withUnsafeMutableBufferPointer { p in
            readlinkat(fd, cString(name), UnsafeMutableRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), p.count)
        }
        if n < 0 { throw RepositoryError(.failure, "cannot read symlink \(display(path)): \(String(cString: strerror(errno)))") }
        return Array(buf[0..<n])
    }

    func reportProgress(force: Bool = false) {
        guard let progress = options.progress else { return }
        let now = Clock.nowNanoseconds()
        guard force || now - lastProgress > 200_000_000 else { return }
        lastProgress = now
        progress(ImportProgress(bytesDone: bytesRead, bytesTotal: bytesTotal, filesDone: fileCount, filesTotal: filesTotal,
                                elapsed: Double(now - started) / 1e9))
    }
}

/// A directory's tree hash, set on the pipeline's queue once its files are hashed; read after `finish`.
final class PendingTreeHash: @unchecked Sendable {
    var hash: ContentHash?
}

/// NUL-terminated copy of a raw name for the C calls.
func cString(_ name: [UInt8]) -> [CChar] { name.map { CChar(bitPattern: $0) } + [0] }

public func currentUserName() -> String {
    if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { return String(cString: name) }
    return "uid \(geteuid())"
}
