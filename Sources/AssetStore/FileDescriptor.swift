#if canImport(Glibc)
import Glibc
#endif

/// The one place where the store calls the kernel for file I/O, so EINTR retries and error context live once.
public struct FileDescriptor: Sendable {
    public let raw: Int32
    public let path: String

    public init(raw: Int32, path: String) {
        self.raw = raw
        self.path = path
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o600) throws -> FileDescriptor {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return FileDescriptor(raw: fd, path: path) }
            if errno == EINTR { continue }
            throw StoreError.syscall("open", path: path, errno: errno)
        }
    }

    public func close() { _ = Glibc.close(raw) }

    /// Reads exactly `count` bytes at `offset` unless the file ends first; returns how many were read.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.syscall("read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func pread(count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try pread(into: $0, at: offset) }
        if n < count { out.removeLast(count - n) }
        return out
    }

    /// Sequential read; returns 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(raw, buffer.baseAddress!, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw StoreError.syscall("read", path: path, errno: errno)
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(raw, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.syscall("write", path: path, errno: errno)
            }
            done += n
        }
    }

    public func pwrite(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.syscall("write", path: path, errno: errno)
            }
            done += n
        }
    }

    /// O_DIRECT (Glibc's module does not export the macro; its value differs between architectures).
    #if arch(arm64)
    static let oDirect: Int32 = 0o200000
    #else
    static let oDirect: Int32 = 0o40000
    #endif

    /// Whether reads and writes bypass the page cache (O_DIRECT).
    public var directIO: Bool { fcntl(raw, F_GETFL) & Self.oDirect != 0 }

    /// Turns direct I/O on or off; false when the file system refuses (tmpfs) or nothing changed.
    @discardableResult
    public func setDirectIO(_ on: Bool) -> Bool {
        let flags = fcntl(raw, F_GETFL)
        guard flags >= 0, (flags & Self.oDirect != 0) != on else { return false }
        return fcntl(raw, F_SETFL, on ? flags | Self.oDirect : flags & ~Self.oDirect) == 0
    }

    public func sync() throws {
        if fsync(raw) != 0 { throw StoreError.syscall("fsync", path: path, errno: errno) }
    }

    public func stat() throws -> Glibc.stat {
        var st = Glibc.stat()
        if fstat(raw, &st) != 0 { throw StoreError.syscall("stat", path: path, errno: errno) }
        return st
    }
}

/// Makes a rename or a new file in `directory` durable.
public func syncDirectory(_ directory: String) throws {
    let fd = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
    defer { fd.close() }
    try fd.sync()
}

public func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
    if mkdir(path, mode) != 0 && errno != EEXIST {
        throw StoreError.syscall("mkdir", path: path, errno: errno)
    }
}

/// A timespec (a stat time, a clock reading) as nanoseconds since the epoch: the inverse of `timespec(nanoseconds:)`.
public func nanoseconds(_ t: timespec) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) }

/// Nanoseconds since the epoch as a timespec; floor division so pre-1970 times keep tv_nsec in 0..<1e9.
public func timespec(nanoseconds ns: Int64) -> timespec {
    let seconds = ns >= 0 ? ns / 1_000_000_000 : -((-ns + 999_999_999) / 1_000_000_000)
    return Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(ns - seconds * 1_000_000_000))
}

/// The names in the directory open as `dirFD` (without "." and ".."), as raw bytes, from its first entry.
///
/// Reads through a fresh open of the directory (`openat(dirFD, ".")`), never through `dirFD` or a `dup` of it: a
/// dup shares the file offset, so a second listing of the same descriptor would start where the first ended and
/// find nothing (an import that measured the tree for its progress bar once stored empty versions that way).
/// `display` names the directory in errors.
public func directoryNames(_ dirFD: Int32, display: String) throws -> [[UInt8]] {
    var fresh: Int32
    repeat { fresh = openat(dirFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) } while fresh < 0 && errno == EINTR
    func failure(_ e: Int32) -> StoreError {
        StoreError(StoreError.code(ofErrno: e), "cannot list \(display): \(String(cString: strerror(e)))", cause: .errno(e))
    }
    guard fresh >= 0 else { throw failure(errno) }
    guard let dir = fdopendir(fresh) else {
        let e = errno
        Glibc.close(fresh)
        throw failure(e)
    }
    defer { closedir(dir) }  // Closes `fresh` too.
    var names: [[UInt8]] = []
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw failure(errno) }
            return names
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> [UInt8] in
            let bytes = raw.bindMemory(to: UInt8.self)
            return Array(bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)])
        }
        if name == [0x2E] || name == [0x2E, 0x2E] { continue }
        names.append(name)
    }
}
