#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    static func posix(_ what: String, _ path: String) -> BenchError {
        BenchError("\(what) \(path): \(String(cString: strerror(errno)))")
    }
}

/// What change detection by metadata sees: a file is "untouched" when all four are equal.
struct FileSignature: Equatable {
    let size: Int
    let mtimeNanoseconds: Int
    let inode: UInt64
    let device: UInt64
}

/// Plain POSIX file access: rewrites go through the existing path (O_TRUNC / pwrite), so a modified file keeps
/// its inode like an in-place edit would, and unchanged files are never opened for writing.
enum FileIO {
    static func writeWhole(_ path: String, _ bytes: [UInt8]) throws {
        try withDescriptor(path, O_WRONLY | O_CREAT | O_TRUNC) { fd in try writeAll(fd, bytes, path) }
    }

    static func appendBytes(_ path: String, _ bytes: [UInt8]) throws {
        try withDescriptor(path, O_WRONLY | O_APPEND) { fd in try writeAll(fd, bytes, path) }
    }

    /// Overwrites (or extends) the region at `offset` without truncating the rest of the file.
    static func overwriteRegion(_ path: String, at offset: Int, _ bytes: UnsafeRawBufferPointer) throws {
        try withDescriptor(path, O_WRONLY | O_CREAT) { fd in
            var done = 0
            while done < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                if n < 0 { if errno == EINTR { continue }; throw BenchError.posix("write", path) }
                done += n
            }
        }
    }

    static func readWhole(_ path: String) throws -> [UInt8] {
        let size = try signature(path).size
        if size == 0 { return [] }
        return try withDescriptor(path, O_RDONLY) { fd in
            try [UInt8](unsafeUninitializedCapacity: size) { buf, count in
                count = 0
                while count < size {
                    let n = read(fd, buf.baseAddress! + count, size - count)
                    if n < 0 { if errno == EINTR { continue }; throw BenchError.posix("read", path) }
                    if n == 0 { break }
                    count += n
                }
            }
        }
    }

    static func signature(_ path: String) throws -> FileSignature {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw BenchError.posix("stat", path) }
        #if canImport(Darwin)
        let mtime = Int(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int(st.st_mtimespec.tv_nsec)
        #else
        let mtime = Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)
        #endif
        return FileSignature(size: Int(st.st_size), mtimeNanoseconds: mtime,
                             inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }

    static func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    static func removeIfPresent(_ path: String) throws {
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    /// Regular files under `root` as absolute paths, sorted so every walk sees the same order.
    static func regularFiles(under root: String) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: root).sorted().compactMap { sub in
            let path = root + "/" + sub
            var st = stat()
            guard lstat(path, &st) == 0 else { throw BenchError.posix("stat", path) }
            return (st.st_mode & S_IFMT) == S_IFREG ? path : nil
        }
    }

    /// Apparent size (sum of st_size) of the regular files under `root`: what the bytes cost, independent of
    /// the file system's block size; directories and symlinks are not counted. 0 when absent.
    static func apparentSize(of root: String) throws -> Int {
        guard exists(root) else { return 0 }
        return try regularFiles(under: root).reduce(0) { try $0 + signature($1).size }
    }

    /// Absolute executable path: as given when it has a slash, otherwise searched in PATH.
    static func executable(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? absolute(name) : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        return nil
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    private static func withDescriptor<T>(_ path: String, _ flags: Int32, _ body: (Int32) throws -> T) throws -> T {
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw BenchError.posix("open", path) }
        defer { close(fd) }
        return try body(fd)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; throw BenchError.posix("write", path) }
                done += n
            }
        }
    }
}

/// Progress goes to stderr unbuffered, so stdout stays a clean markdown report.
func progress(_ message: String) {
    let line = Array((message + "\n").utf8)
    line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}

/// Wall-clock seconds of `body` (monotonic clock).
func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let start = ContinuousClock.now
    let value = try body()
    let elapsed = ContinuousClock.now - start
    return (value, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
}
