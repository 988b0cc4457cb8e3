#if canImport(Glibc)
import Glibc
#endif

/// A host's on-disk cache of chunk records fetched from a remote pack store, shared by every process on the
/// host that uses the same directory, bounded, evicted least recently used, and kept across restarts.
///
/// Verified, not trusted (CernVM-FS's rule): `ChunkReader` puts a record here only after proving it against the
/// chunk's hash, and proves every record it takes from here again; one found damaged is deleted and fetched
/// anew, never served. The cache is best effort: a failure to read or write it never fails a read.
///
/// Layout: `DIR/xx/<chunk sha256>` holds the record's bytes as stored in the pack; new entries are written
/// under `DIR/tmp-*` and renamed into place, so a reader sees a whole entry or none. A hit sets the entry's
/// mtime, which eviction sorts by.
public final class DiskChunkCache: @unchecked Sendable {
    public let directory: String
    public let capacity: UInt64
    private let lock = Lock()
    /// Protected by `lock`: this process's estimate, corrected by each eviction scan; nil until the first store
    /// needs it. Scanning at open instead would make every command on a host with a large cache (hundreds of
    /// thousands of entries) stat each one before doing anything, even one that reads nothing.
    private var used: UInt64?

    public init(directory: String, capacity: UInt64) throws {
        self.directory = directory
        self.capacity = capacity
        StoreMetrics.diskLimit.record(capacity)
        var path = ""
        for part in directory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw StoreError.syscall("mkdir", path: path, errno: errno) }
        }
    }

    func path(_ id: ContentHash) -> String {
        let hex = id.hex
        return "\(directory)/\(hex.prefix(2))/\(hex)"
    }

    /// The cached record of chunk `id`, if there is one (unverified: the caller proves it).
    func record(_ id: ContentHash, length: Int) -> [UInt8]? {
        let fd = open(path(id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let descriptor = FileDescriptor(raw: fd, path: path(id))
        guard let bytes = try? descriptor.pread(count: length + 1, at: 0), bytes.count == length else {
            discard(id)  // Truncated or grown: not this record.
            return nil
        }
        // UTIME_OMIT and UTIME_NOW (<sys/stat.h> macros Swift does not see): keep atime, set mtime to now.
        var now = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)]
        _ = futimens(fd, &now)  // Safe to ignore: only the eviction order depends on it.
        return bytes
    }

    /// Keeps a verified record.
    func store(_ id: ContentHash, _ record: [UInt8]) {
        let final = path(id)
        let dir = String(final[..<final.lastIndex(of: "/")!])
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { return }
        var template = Array("\(directory)/tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return }
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let written = (try? record.withUnsafeBytes { try FileDescriptor(raw: fd, path: temporary).write($0) }) != nil
        close(fd)
        // No fsync: an entry torn by a crash fails verification and is fetched again.
        guard written, rename(temporary, final) == 0 else {
            unlink(temporary)
            return
        }
        let known = lock.withLock { used }
        // The first store of this process measures the directory (outside the lock: it may take a while).
        let measured = known == nil ? entries().reduce(UInt64(0)) { $0 + $1.size } : nil
        let (total, over) = lock.withLock { () -> (UInt64, Bool) in
            let total = (used ?? measured ?? 0) + UInt64(record.count)
            used = total
            return (total, total > capacity)
        }
        StoreMetrics.diskWrittenBytes.increment(by: record.count)
        StoreMetrics.diskBytes.record(total)
        if over { evict() }
    }

    func discard(_ id: ContentHash) { unlink(path(id)) }

    /// Whether an entry for chunk `id` is present (not whether it is intact: readers prove it).
    public func contains(_ id: ContentHash) -> Bool { access(path(id), F_OK) == 0 }

    /// Entries and bytes held now, by every process that uses the directory.
    public func usage() -> (entries: Int, bytes: UInt64) {
        let all = entries()
        return (all.count, all.reduce(0) { $0 + $1.size })
    }

    /// Deletes every entry; returns how many and their bytes. Safe while mounts and commands use the cache: a
    /// reader that had an entry open reads it to the end, and the next read of that chunk fetches it again.
    public func clear() -> (entries: Int, bytes: UInt64) {
        var removed = 0
        var bytes: UInt64 = 0
        for entry in entries() where unlink(entry.path) == 0 {
            removed += 1
            bytes += entry.size
        }
        lock.withLock { used = 0 }
        return (removed, bytes)
    }

    /// The chunks held now and each entry's size, by every process that uses the directory.
    public func chunks() -> [(id: ContentHash, bytes: UInt64)] {
        entries().compactMap { entry in
            ContentHash(hex: String(entry.path[entry.path.index(after: entry.path.lastIndex(of: "/")!)...])).map { ($0, entry.size) }
        }
    }

    /// Deletes the entries of these chunks (one store's, say); returns how many were deleted and their bytes.
    /// Safe while mounts and commands use the cache, as `clear` is.
    public func remove(_ ids: some Collection<ContentHash>) -> (entries: Int, bytes: UInt64) {
        var removed = 0
        var bytes: UInt64 = 0
        for id in ids {
            var st = stat()
            let file = path(id)
            guard stat(file, &st) == 0, unlink(file) == 0 else { continue }
            removed += 1
            bytes += UInt64(st.st_size)
        }
        lock.withLock { used = used.map { $0 - min($0, bytes) } }
        return (removed, bytes)
    }

    /// Deletes least recently used entries (and stale temporary files) until the cache holds at most 90% of its
    /// capacity; every process's entries count, since the scan reads the directory.
    func evict() {
        var all = entries()
        var total = all.reduce(0) { $0 + $1.size }
        all.sort { $0.used < $1.used }
        let target = capacity / 10 * 9
        for entry in all where total > target {
            if unlink(entry.path) == 0 {
                total -= entry.size
                StoreMetrics.diskEvictedBytes.increment(by: Int(entry.size))
            }
        }
        lock.withLock { used = total }
        StoreMetrics.diskBytes.record(total)
    }

    private func entries() -> [(path: String, size: UInt64, used: Int64)] {
        var out: [(String, UInt64, Int64)] = []
        for sub in (try? listDirectory(directory)) ?? [] {
            let subPath = "\(directory)/\(sub)"
            if sub.hasPrefix("tmp-") {
                var st = stat()
                // A temporary file older than a minute belongs to a writer that died.
                if stat(subPath, &st) == 0, time(nil) - st.st_mtim.tv_sec > 60 { unlink(subPath) }
                continue
            }
            guard sub.count == 2 else { continue }
            for name in (try? listDirectory(subPath)) ?? [] {
                var st = stat()
                guard stat("\(subPath)/\(name)", &st) == 0 else { continue }
                out.append(("\(subPath)/\(name)", UInt64(st.st_size), nanoseconds(st.st_mtim)))
            }
        }
        return out
    }
}
