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
    var description: String { "\(op)(\(path)): \(errnoName(code)) \(String(cString: strerror(code)))" }
}

let fuseSuperMagic: Int = 0x6573_5546

// MARK: C functions the Glibc module does not export (sys/xattr.h, sys/vfs.h, GNU extensions)

private func libcFunction<T>(_ name: String, _ type: T.Type) -> T {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { fatalError("libc has no \(name)") }
    return unsafeBitCast(symbol, to: T.self)
}

private typealias GetXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
private typealias ListXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
private typealias SetXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32
private typealias RemoveXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
private typealias StatfsFn = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
private typealias Renameat2Fn = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
private typealias CloseFromFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

private nonisolated(unsafe) let cGetxattr = libcFunction("getxattr", GetXattrFn.self)
private nonisolated(unsafe) let cListxattr = libcFunction("listxattr", ListXattrFn.self)
private nonisolated(unsafe) let cSetxattr = libcFunction("setxattr", SetXattrFn.self)
private nonisolated(unsafe) let cRemovexattr = libcFunction("removexattr", RemoveXattrFn.self)
private nonisolated(unsafe) let cStatfs = libcFunction("statfs", StatfsFn.self)
private nonisolated(unsafe) let cRenameat2 = libcFunction("renameat2", Renameat2Fn.self)
private nonisolated(unsafe) let cAddCloseFrom = libcFunction("posix_spawn_file_actions_addclosefrom_np", CloseFromFn.self)

let XATTR_CREATE_FLAG: Int32 = 1
let XATTR_REPLACE_FLAG: Int32 = 2

/// getxattr(2): the value's length, or -1 with errno. `capacity` 0 asks for the size.
func sysGetxattr(_ path: String, _ name: String, capacity: Int) -> (Int, [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: max(capacity, 1))
    let n = buffer.withUnsafeMutableBytes { cGetxattr(path, name, capacity == 0 ? nil : $0.baseAddress, capacity) }
    return (n, n > 0 && capacity > 0 ? Array(buffer[0..<n]) : [])
}

/// listxattr(2) into a buffer of `capacity` bytes.
func sysListxattr(_ path: String, capacity: Int) -> (Int, [String]) {
    var buffer = [CChar](repeating: 0, count: max(capacity, 1))
    let n = buffer.withUnsafeMutableBufferPointer { cListxattr(path, capacity == 0 ? nil : $0.baseAddress, capacity) }
    guard n > 0, capacity > 0 else { return (n, []) }
    let names = buffer[0..<n].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return (n, names)
}

func sysSetxattr(_ path: String, _ name: String, _ value: [UInt8], _ flags: Int32) -> Int32 {
    value.withUnsafeBytes { cSetxattr(path, name, $0.baseAddress, value.count, flags) }
}

func sysRenameat2(_ from: String, _ to: String, _ flags: UInt32) -> Int32 { cRenameat2(AT_FDCWD, from, AT_FDCWD, to, flags) }

func sysRemovexattr(_ path: String, _ name: String) -> Int32 { cRemovexattr(path, name) }

func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 { cAddCloseFrom(actions, lowest) }

/// `struct statfs` on 64-bit Linux: eleven 64-bit words, then four spare.
struct StatFS {
    var f_type = 0, f_bsize = 0, f_blocks = 0, f_bfree = 0, f_bavail = 0, f_files = 0, f_ffree = 0
    var f_fsid = 0, f_namelen = 0, f_frsize = 0, f_flags = 0
    var spare: (Int, Int, Int, Int) = (0, 0, 0, 0)
}

/// statfs(2): 0 or -1 with errno.
func sysStatfs(_ path: String, _ out: inout StatFS) -> Int32 {
    withUnsafeMutableBytes(of: &out) { cStatfs(path, $0.baseAddress!) }
}

func statfsPath(_ path: String) throws -> StatFS {
    var st = StatFS()
    guard sysStatfs(path, &st) == 0 else { throw SysError(op: "statfs", path: path, code: errno) }
    return st
}

// MARK: errno names

func errnoName(_ e: Int32) -> String {
    let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EIO: "EIO", EBADF: "EBADF", EACCES: "EACCES", EBUSY: "EBUSY",
        EEXIST: "EEXIST", EXDEV: "EXDEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", EFBIG: "EFBIG",
        ENOSPC: "ENOSPC", EROFS: "EROFS", EMLINK: "EMLINK", ERANGE: "ERANGE", ENAMETOOLONG: "ENAMETOOLONG",
        ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP", ENODATA: "ENODATA", EOPNOTSUPP: "EOPNOTSUPP",
        ENOTCONN: "ENOTCONN", EINTR: "EINTR", EAGAIN: "EAGAIN", ENXIO: "ENXIO", ENOMEM: "ENOMEM", ETXTBSY: "ETXTBSY",
        ESTALE: "ESTALE", EPROTO: "EPROTO", ECONNABORTED: "ECONNABORTED",
    ]
    return names[e] ?? "errno \(e)"
}

// MARK: Files

func readAll(_ path: String) throws -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    defer { Glibc.close(fd) }
    return try readAll(fd: fd, path: path)
}

func readAll(fd: Int32, path: String) throws -> [UInt8] {
    var out = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var offset = 0
    while true {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SysError(op: "pread at \(offset)", path: path, code: errno)
        }
        if n == 0 { return out }
        out.append(contentsOf: buffer[0..<n])
        offset += n
    }
}

/// pread(2) looping over short reads; fewer bytes only at end of file; -1 and errno on failure.
func preadFully(_ fd: Int32, count: Int, offset: Int) -> (Int, [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: max(count, 1))
    var done = 0
    while done < count {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
        if n < 0 {
            if errno == EINTR { continue }
            return (-1, [])
        }
        if n == 0 { break }
        done += n
    }
    return (done, Array(buffer[0..<done]))
}

/// pwrite(2) looping over short writes; -1 and errno on failure.
func pwriteFully(_ fd: Int32, _ bytes: [UInt8], offset: Int) -> Int {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
        if n < 0 {
            if errno == EINTR { continue }
            return -1
        }
        done += n
    }
    return done
}

/// Creates (or replaces) a file with `bytes` and `mode`, creating parent directories.
func writeFile(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw SysError(op: "open for write", path: path, code: errno) }
    defer { Glibc.close(fd) }
    // Large writes in 1 MiB pieces (what FUSE will see anyway).
    var offset = 0
    while offset < bytes.count {
        let piece = Array(bytes[offset..<min(bytes.count, offset + (1 << 20))])
        guard pwriteFully(fd, piece, offset: offset) == piece.count else { throw SysError(op: "pwrite at \(offset)", path: path, code: errno) }
        offset += piece.count
    }
    guard fchmod(fd, mode_t(mode)) == 0 else { throw SysError(op: "fchmod", path: path, code: errno) }
}

func lstatPath(_ path: String) throws -> stat {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw SysError(op: "lstat", path: path, code: errno) }
    return st
}

func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func readLink(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { throw SysError(op: "readlink", path: path, code: errno) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Names in a directory (without . and ..), sorted; -1-style failures throw.
func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw SysError(op: "opendir", path: path, code: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw SysError(op: "readdir", path: path, code: errno) }
            return names.sorted()
        }
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        if name != "." && name != ".." { names.append(name) }
    }
}

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
    let hit: Int? = a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            var i = 0
            while i < n {
                if pa[i] != pb[i] { return i }
                i += 1
            }
            return nil
        }
    }
    if let i = hit { return "first difference at byte \(i) (got \(a[i]), expected \(b[i])); sizes \(a.count) vs \(b.count)" }
    return a.count == b.count ? "identical" : "sizes differ: got \(a.count) bytes, expected \(b.count) (common prefix equal)"
}

func sha256Hex(_ bytes: [UInt8]) -> String { ContentHash.of(bytes).hex }

// MARK: Test data

/// SplitMix64: reproducible test bytes and choices.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SplitMix64(seed: seed)
    return randomBytes(count, using: &g)
}

func randomBytes(_ count: Int, using g: inout SplitMix64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        let words = count / 8
        for i in 0..<words { raw.storeBytes(of: g.next(), toByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<count { raw[i] = UInt8(truncatingIfNeeded: g.next()) }
    }
    return out
}

func textBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SplitMix64(seed: seed)
    let words = ["alpha", "beta", "gamma", "delta", "row", "label", "cat", "dog", "0.125", "train", "test"]
    var out = [UInt8]()
    out.reserveCapacity(count + 16)
    while out.count < count {
        out += Array(words[Int(g.next() % UInt64(words.count))].utf8)
        out.append(g.next() % 9 == 0 ? 0x0A : 0x20)
    }
    return Array(out[0..<count])
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
