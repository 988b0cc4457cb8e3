#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Packs as files under `STORE/packs/xx/<sha256>.pack`; writers' scratch files under `STORE/tmp/`.
public final class LocalPackStorage: PackStorage {
    public let root: String
    private var packsDir: String { root + "/packs" }
    private var stagingDir: String { root + "/tmp" }

    /// Open read descriptors by pack, so a read costs one pread and no open. Bounded; protected by the mutex.
    private let openFiles = Mutex<[ContentHash: FileDescriptor]>([:])
    private static let maxOpenFiles = 512

    public init(root: String) {
        self.root = root
    }

    deinit {
        openFiles.withLock { files in
            for fd in files.values { fd.close() }
        }
    }

    public var location: String { packsDir }

    public func createLayout() throws {
        try makeDirectory(packsDir)
        try makeDirectory(stagingDir)
    }

    public func path(of id: ContentHash) -> String {
        let hex = id.hex
        return "\(packsDir)/\(hex.prefix(2))/\(hex).pack"
    }

    public func describe(_ id: ContentHash) -> String { path(of: id) }

    public var scratchDirectory: String { stagingDir }

    public func put(_ id: ContentHash, from source: PackSource) throws {
        let target = path(of: id)
        let dir = String(target[..<target.lastIndex(of: "/")!])
        try makeDirectory(dir)
        // Durability order: the pack's bytes, then its name, then the directory entry.
        try source.descriptor.sync()
        // A second name for the scratch file (in the scratch directory, where gc removes one left by a crash),
        // then an atomic rename over the target: readers see no pack or the whole pack, a pack stored before is
        // replaced by a fresh copy, and the scratch file stays as it was (the writer removes it; a failed put
        // can be retried).
        var temporary = "\(stagingDir)/put-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        if link(source.path, temporary) != 0 {
            let e = errno
            guard e == EXDEV || e == EPERM || e == EMLINK else { throw StoreError.syscall("link", path: temporary, errno: e) }
            // Scratch on another file system, or no hard links here: copy beside the target instead.
            temporary = "\(target).\(getpid())-\(UInt64.random(in: 0...UInt64.max)).tmp"
            try copyFile(source, to: temporary)
        }
        if rename(temporary, target) != 0 {
            let e = errno
            unlink(temporary)
            throw StoreError.syscall("rename", path: target, errno: e)
        }
        try syncDirectory(dir)
    }

    private func copyFile(_ source: PackSource, to path: String) throws {
        let out = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        defer { out.close() }
        do {
            try source.readAll().withUnsafeBytes { try out.write($0) }
            try out.sync()
        } catch {
            unlink(path)
            throw error
        }
    }

    /// Runs `body` with a read descriptor for the pack: a cached one, or a private one closed afterwards.
    private func withDescriptor<T>(for id: ContentHash, _ body: (FileDescriptor) throws -> T) throws -> T {
        if let fd = openFiles.withLock({ $0[id] }) { return try body(fd) }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path(of: id), O_RDONLY)
        } catch let error as StoreError where error.code == .notFound {
            throw StoreError(.notFound, "pack \(path(of: id)) is missing: restore it from a copy of the store, or delete the versions that need it",
                             cause: error.cause)
        }
        let kept = openFiles.withLock { files -> Bool in
            guard files[id] == nil, files.count < Self.maxOpenFiles else { return false }
            files[id] = fd
            return true
        }
        defer { if !kept { fd.close() } }
        return try body(fd)
    }

    public func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try withDescriptor(for: id) { try $0.pread(into: buffer, at: offset) }
    }

    public func size(of id: ContentHash) throws -> UInt64? {
        var st = stat()
        if stat(path(of: id), &st) != 0 {
            if errno == ENOENT { return nil }
            throw StoreError.syscall("stat", path: path(of: id), errno: errno)
        }
        return UInt64(st.st_size)
    }

    public func delete(_ id: ContentHash) throws {
        let p = path(of: id)
        openFiles.withLock { files in
            if let fd = files.removeValue(forKey: id) { fd.close() }
        }
        if unlink(p) != 0 && errno != ENOENT { throw StoreError.syscall("unlink", path: p, errno: errno) }
    }

    public func list() throws -> [StoredPack] {
        var out = [StoredPack]()
        for sub in try listDirectory(packsDir) where sub.count == 2 {
            for name in try listDirectory("\(packsDir)/\(sub)") where name.hasSuffix(".pack") {
                guard let id = ContentHash(hex: String(name.dropLast(5))) else { continue }
                var st = stat()
                guard stat("\(packsDir)/\(sub)/\(name)", &st) == 0 else {
                    if errno == ENOENT { continue }  // Deleted since the listing.
                    throw StoreError.syscall("stat", path: "\(packsDir)/\(sub)/\(name)", errno: errno)
                }
                out.append(StoredPack(id: id, size: UInt64(st.st_size),
                                      modifiedNs: nanoseconds(st.st_mtim)))
            }
        }
        return out
    }
}

/// Names in a directory, without "." and "..".
public func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else {
        if errno == ENOENT { return [] }
        throw StoreError.syscall("opendir", path: path, errno: errno)
    }
    defer { closedir(dir) }
    var names = [String]()
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
