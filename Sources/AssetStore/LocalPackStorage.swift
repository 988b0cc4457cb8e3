#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Packs as files under `STORE/packs/xx/<sha256>.pack`; staging files under `STORE/tmp/`.
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

    public func makeStagingPack() throws -> StagingPack {
        var template = Array("\(stagingDir)/pack-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if fd < 0 { throw StoreError.syscall("create", path: path, errno: errno) }
        // Direct I/O where the file system has it: a pack goes from the writer's buffer to the disk without
        // passing through (and evicting) the page cache, and the kernel copies nothing. The writer keeps its
        // buffer, offsets and lengths page-aligned. Where O_DIRECT is refused (tmpfs), writes stay buffered.
        let descriptor = FileDescriptor(raw: fd, path: path)
        descriptor.setDirectIO(true)
        return StagingPack(path: path, descriptor: descriptor)
    }

    public func publish(_ staging: StagingPack, as id: ContentHash) throws {
        let target = path(of: id)
        let dir = String(target[..<target.lastIndex(of: "/")!])
        // Durability order: the pack's bytes, then its name, then the directory entry. The staging pack is
        // consumed on every path: its descriptor is closed exactly once, here.
        do {
            try makeDirectory(dir)
            try staging.descriptor.sync()
        } catch {
            staging.descriptor.close()
            unlink(staging.path)
            throw error
        }
        staging.descriptor.close()
        if rename(staging.path, target) != 0 {
            let e = errno
            unlink(staging.path)
            throw StoreError.syscall("rename", path: target, errno: e)
        }
        try syncDirectory(dir)
    }

    /// Runs `body` with a read descriptor for the pack: a cached one, or a private one closed afterwards.
    private func withDescriptor<T>(for id: ContentHash, _ body: (FileDescriptor) throws -> T) throws -> T {
        if let fd = openFiles.withLock({ $0[id] }) { return try body(fd) }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path(of: id), O_RDONLY)
        } catch let error as StoreError where error.code == .io(errno: ENOENT) {
            throw StoreError(.missing, "pack \(path(of: id)) is missing: restore it from a copy of the store, or delete the versions that need it")
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

    public func list() throws -> [ContentHash] {
        var out = [ContentHash]()
        for sub in try listDirectory(packsDir) where sub.count == 2 {
            for name in try listDirectory("\(packsDir)/\(sub)") where name.hasSuffix(".pack") {
                if let id = ContentHash(hex: String(name.dropLast(5))) { out.append(id) }
            }
        }
        return out
    }

    public func removeStaging() throws -> Int {
        var removed = 0
        for name in try listDirectory(stagingDir) where unlink("\(stagingDir)/\(name)") == 0 { removed += 1 }
        return removed
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
