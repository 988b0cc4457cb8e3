import AssetStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with its errno.
struct SysError: Error, CustomStringConvertible {
    let op: String
    let path: String
    let code: Int32
    var description: String { "\(op)(\(path)): \(String(cString: strerror(code))) (errno \(code))" }
}

let fuseSuperMagic: Int = 0x6573_5546

// MARK: C functions the Glibc module does not export (sys/xattr.h, sys/vfs.h, GNU extensions)

private func libcFunction<T>(_ name: String, _ type: T.Type) -> T {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { fatalError("libc has no \(name)") }
    return unsafeBitCast(symbol, to: T.self)
}

private typealias GetXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
private typealias StatfsFn = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
private typealias CloseFromFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

private nonisolated(unsafe) let cGetxattr = libcFunction("getxattr", GetXattrFn.self)
private nonisolated(unsafe) let cStatfs = libcFunction("statfs", StatfsFn.self)
private nonisolated(unsafe) let cAddCloseFrom = libcFunction("posix_spawn_file_actions_addclosefrom_np", CloseFromFn.self)

func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 { cAddCloseFrom(actions, lowest) }

/// `struct statfs` on 64-bit Linux: eleven 64-bit words, then four spare.
struct StatFS {
    var f_type = 0, f_bsize = 0, f_blocks = 0, f_bfree = 0, f_bavail = 0, f_files = 0, f_ffree = 0
    var f_fsid = 0, f_namelen = 0, f_frsize = 0, f_flags = 0
    var spare: (Int, Int, Int, Int) = (0, 0, 0, 0)
}

func statfsPath(_ path: String) throws -> StatFS {
    var st = StatFS()
    guard withUnsafeMutableBytes(of: &st, { cStatfs(path, $0.baseAddress!) }) == 0 else {
        throw SysError(op: "statfs", path: path, code: errno)
    }
    return st
}

/// Bytes free for an unprivileged writer... we are root, so f_bfree (root may use reserved blocks).
func freeBytes(_ path: String) throws -> Int {
    let st = try statfsPath(path)
    return st.f_bfree * st.f_bsize
}

/// An extended attribute's value.
func getXattr(_ path: String, _ name: String) throws -> [UInt8] {
    let size = cGetxattr(path, name, nil, 0)
    guard size >= 0 else { throw SysError(op: "getxattr \(name) (size)", path: path, code: errno) }
    var buffer = [UInt8](repeating: 0, count: max(size, 1))
    let n = buffer.withUnsafeMutableBytes { cGetxattr(path, name, $0.baseAddress, size) }
    guard n >= 0 else { throw SysError(op: "getxattr \(name)", path: path, code: errno) }
    return Array(buffer[0..<n])
}

// MARK: Files

/// The whole file through read(2).
func readAll(_ path: String) throws -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    defer { Glibc.close(fd) }
    return try readAll(fd: fd, path: path)
}

func readAll(fd: Int32, path: String) throws -> [UInt8] {
    var out = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SysError(op: "read at \(out.count)", path: path, code: errno)
        }
        if n == 0 { return out }
        out.append(contentsOf: buffer[0..<n])
    }
}

/// Writes all of `bytes` at the current offset; throws SysError with the errno of the failing write.
func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SysError(op: "write at \(done)", path: path, code: errno)
        }
        done += n
    }
}

/// Creates (or replaces) a file with `bytes`, creating parent directories.
func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    defer { Glibc.close(fd) }
    try writeAll(fd: fd, bytes, path: path)
    _ = fchmod(fd, mode)
}

func lstatPath(_ path: String) throws -> stat {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw SysError(op: "lstat", path: path, code: errno) }
    return st
}

func readLink(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 8192)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { throw SysError(op: "readlink", path: path, code: errno) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// rm -rf without following symlinks and without a PATH_MAX limit (unlinkat below directory descriptors).
func removeTree(_ path: String) {
    guard let st = try? lstatPath(path) else { return }
    if st.st_mode & S_IFMT != S_IFDIR {
        unlink(path)
        return
    }
    let top = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard top >= 0 else { return }
    // Stack of (directory fd, its name in the parent, children that could not be removed and are skipped).
    var stack: [(fd: Int32, name: [CChar], skip: Set<[UInt8]>)] = [(top, [], [])]
    while let current = stack.last {
        var descended = false
        for name in (try? listNames(current.fd)) ?? [] where !current.skip.contains(name) {
            let c = name.map { CChar(bitPattern: $0) } + [0]
            if unlinkat(current.fd, c, 0) == 0 { continue }
            if errno == EISDIR || errno == EPERM {
                if unlinkat(current.fd, c, AT_REMOVEDIR) == 0 { continue }
                let child = openat(current.fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    stack.append((child, c, []))
                    descended = true
                    break
                }
            }
            stack[stack.count - 1].skip.insert(name)
        }
        if descended { continue }
        let done = stack.removeLast()
        Glibc.close(done.fd)
        if let parent = stack.last, unlinkat(parent.fd, done.name, AT_REMOVEDIR) != 0 {
            stack[stack.count - 1].skip.insert(done.name.dropLast().map { UInt8(bitPattern: $0) })
        }
    }
    rmdir(path)
}

/// Byte equality through memcmp (element-wise `==` is slow in debug builds).
func sameBytes<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
    a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            pa.count == pb.count && (pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0)
        }
    }
}

/// Where two byte strings first differ, for failure messages.
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String {
    let n = min(a.count, b.count)
    let found = a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
        (0..<n).first { pa[$0] != pb[$0] }
    } }
    if let i = found { return "first difference at byte \(i) (got \(a[i]), expected \(b[i])); sizes \(a.count) vs \(b.count)" }
    return "sizes differ: got \(a.count) bytes, expected \(b.count)"
}

func sha256Hex(_ bytes: [UInt8]) -> String { ContentHash.of(bytes).hex }

/// True when `needle` occurs in `haystack`.
func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    return haystack.withUnsafeBytes { h in
        needle.withUnsafeBytes { n in
            Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: h.baseAddress!), count: h.count, deallocator: .none)
                .range(of: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: n.baseAddress!), count: n.count, deallocator: .none)) != nil
        }
    }
}

// MARK: Mount table and fusectl

enum MountInfo {
    /// "major:minor" of the last mount at `path` in /proc/self/mountinfo (no request reaches any FUSE daemon).
    static func device(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        var found: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, unescape(String(fields[4])) == path { found = String(fields[2]) }
        }
        return found
    }

    static func isMounted(_ path: String) -> Bool { device(of: path) != nil }

    /// Every mount point at or below `prefix` (deepest first), for teardown.
    static func mounts(under prefix: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let p = unescape(String(fields[4]))
            return p == prefix || p.hasPrefix(prefix + "/") ? p : nil
        }.sorted { $0.count > $1.count }
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

enum FuseControl {
    static let directory = "/sys/fs/fuse/connections"

    /// Mounts fusectl once per process (not mounted by default on these machines).
    static let available: Bool = {
        if let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8),
           mounts.split(separator: "\n").contains(where: { $0.contains(" \(directory) fusectl ") }) {
            return true
        }
        if mount("none", directory, "fusectl", 0, nil) == 0 || errno == EBUSY { return true }
        return false
    }()

    /// Aborts the FUSE connection of the mount whose device is `device` ("0:39"): every pending and future
    /// request fails with ENOTCONN, so nothing stays blocked on it.
    @discardableResult
    static func abort(device: String) -> Bool {
        guard available, let minor = device.split(separator: ":").last else { return false }
        let fd = Glibc.open("\(directory)/\(minor)/abort", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        return Glibc.write(fd, "1", 1) == 1
    }
}
