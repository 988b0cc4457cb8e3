import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// Materialises a version (or a directory in it) into a destination directory.
///
/// Every byte is verified against its hash. Nothing is written outside DEST: each directory is opened relative
/// to its parent with O_NOFOLLOW, names are checked to be single components, and files are created with
/// O_EXCL, so a symlink planted in DEST is never followed.
public struct Exporter {
    public let repo: Repository
    public init(repo: Repository) { self.repo = repo }

    public struct Result: Sendable {
        public var files = 0
        public var bytes: UInt64 = 0
        public var directories = 0
        public var symlinks = 0
    }

    public func export(_ ref: Ref, to destination: String) throws -> Result {
        let version = try repo.catalog.resolve(ref)
        let tree = VersionTree(catalog: repo.catalog, version: version)
        let start = try tree.lookup(ref.path)
        try makeParents(destination)
        if mkdir(destination, 0o755) != 0 && errno != EEXIST {
            throw RepositoryError(.failure, "cannot create \(destination): \(String(cString: strerror(errno)))")
        }
        let root = Glibc.open(destination, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if root < 0 { throw RepositoryError(.failure, "cannot open \(destination) as a directory: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(root) }
        var result = Result()
        if let start, start.kind != .directory {
            try writeEntry(start, in: root, display: destination, result: &result)
        } else {
            let contents: [[UInt8]]
            do {
                contents = try directoryNames(root, display: destination)
            } catch let error as StoreError {
                throw RepositoryError(.failure, error.message)
            }
            guard contents.isEmpty else {
                throw RepositoryError(.conflict, "\(destination) is not empty: export into a new or empty directory")
            }
            try exportTree(start?.subtreeID ?? version.rootTreeID, into: root, display: destination, result: &result)
        }
        return result
    }

    private func exportTree(_ treeID: Int64, into dirFD: Int32, display: String, result: inout Result) throws {
        var dirTimes: [(Int32, [UInt8], TreeEntry)] = []
        for entry in try repo.catalog.entries(of: treeID) {
            try writeEntry(entry, in: dirFD, display: display, result: &result)
            if entry.kind == .directory { dirTimes.append((dirFD, entry.name, entry)) }
        }
        // Directory modes and times last: writing children would change the mtime, and a read-only mode would block them.
        for (fd, name, entry) in dirTimes { try setAttributes(fd, name: name, entry: entry, display: display, follow: true) }
    }

    private func writeEntry(_ entry: TreeEntry, in dirFD: Int32, display: String, result: inout Result) throws {
        let name = entry.name
        let path = display + "/" + entry.displayName
        guard !name.isEmpty, !name.contains(0x2F), !name.contains(0), name != [0x2E], name != [0x2E, 0x2E] else {
            throw RepositoryError(.corruption, "refusing to export entry with unsafe name \(Names.quoted(entry.displayName)) under \(display)")
        }
        let cname = cString(name)
        switch entry.kind {
        case .fifo, .socket, .characterDevice, .blockDevice:
            throw RepositoryError(.corruption, "\(path) is a \(entry.kind.description) in the catalog: versions hold only files, directories and symlinks")
        case .directory:
            if mkdirat(dirFD, cname, 0o700) != 0 { throw fail("create directory", path) }
            let child = openat(dirFD, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child < 0 { throw fail("open directory", path) }
            defer { Glibc.close(child) }
            result.directories += 1
            try exportTree(entry.subtreeID ?? -1, into: child, display: path, result: &result)
        case .symlink:
            if symlinkat(cString(entry.target ?? []), dirFD, cname) != 0 { throw fail("create symlink", path) }
            result.symlinks += 1
            try setAttributes(dirFD, name: name, entry: entry, display: display, follow: false)
        case .file:
            let fd = openat(dirFD, cname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd < 0 { throw fail("create", path) }
            let out = FileDescriptor(raw: fd, path: path)
            defer { out.close() }
            var offset: UInt64 = 0
            do {
                try FileContentReader(repo: repo).stream(fileID: entry.fileID ?? -1) { raw in
                    try out.pwrite(raw, at: offset)
                    offset += UInt64(raw.count)
                }
            } catch let error as StoreError where error.code == .corrupt || error.code == .notFound {
                throw RepositoryError(.corruption, "cannot export \(path): the store is damaged (\(error.message)); run `assetfs verify` to list every broken file, then restore the pack from a copy of the store or `assetfs delete` the broken versions")
            }
            if offset < entry.size { _ = ftruncate(fd, off_t(entry.size)) }
            result.files += 1
            result.bytes += entry.size
            try setAttributes(dirFD, name: name, entry: entry, display: display, follow: true)
        }
    }

    private func setAttributes(_ dirFD: Int32, name: [UInt8], entry: TreeEntry, display: String, follow: Bool) throws {
        let cname = cString(name)
        let flags = AT_SYMLINK_NOFOLLOW
        if geteuid() == 0 { _ = fchownat(dirFD, cname, entry.uid, entry.gid, flags) }  // Best effort: only root may chown.
        if entry.kind != .symlink && fchmodat(dirFD, cname, mode_t(entry.mode), 0) != 0 {
            throw fail("chmod", display + "/" + entry.displayName)
        }
        let t = timespec(nanoseconds: entry.mtimeNs)
        var times = [t, t]
        if utimensat(dirFD, cname, &times, flags) != 0 { throw fail("set times of", display + "/" + entry.displayName) }
    }

    private func fail(_ op: String, _ path: String) -> RepositoryError {
        let e = errno
        var message = "cannot \(op) \(path): \(String(cString: strerror(e)))"
        if e == ENOSPC { message += " (the destination disk is full)" }
        if e == EEXIST { message += " (export never overwrites: choose an empty destination)" }
        return RepositoryError(.failure, message)
    }
}
