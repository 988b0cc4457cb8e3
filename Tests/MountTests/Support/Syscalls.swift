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

/// Looks a libc function up at run time and types it as a C function pointer.
private func libcFunction<T>(_ name: String, _ type: T.Type) -> T {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else {
        fatalError("libc has no \(name)")
    }
    return unsafeBitCast(symbol, to: T.self)
}

private typealias GetXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
private typealias ListXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
private typealias SetXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32
private typealias RemoveXattrFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
private typealias StatfsFn = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
private typealias CloseFromFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

private nonisolated(unsafe) let cGetxattr = libcFunction("getxattr", GetXattrFn.self)
private nonisolated(unsafe) let cListxattr = libcFunction("listxattr", ListXattrFn.self)
private nonisolated(unsafe) let cSetxattr = libcFunction("setxattr", SetXattrFn.self)
private nonisolated(unsafe) let cRemovexattr = libcFunction("removexattr", RemoveXattrFn.self)
private nonisolated(unsafe) let cStatfs = libcFunction("statfs", StatfsFn.self)
private nonisolated(unsafe) let cAddCloseFrom = libcFunction("posix_spawn_file_actions_addclosefrom_np", CloseFromFn.self)

func getxattr(_ path: String, _ name: String, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int { cGetxattr(path, name, value, size) }
func listxattr(_ path: String, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int { cListxattr(path, list, size) }
func setxattr(_ path: String, _ name: String, _ value: String, _ size: Int, _ flags: Int32) -> Int32 { cSetxattr(path, name, value, size, flags) }
func removexattr(_ path: String, _ name: String) -> Int32 { cRemovexattr(path, name) }
func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 { cAddCloseFrom(actions, lowest) }

/// `struct statfs` on 64-bit Linux: eleven 64-bit words, then four spare.
struct StatFS {
    var f_type = 0, f_bsize = 0, f_blocks = 0, f_bfree = 0, f_bavail = 0, f_files = 0, f_ffree = 0
    var f_fsid = 0, f_namelen = 0, f_frsize = 0, f_flags = 0
    var spare: (Int, Int, Int, Int) = (0, 0, 0, 0)
}

#if arch(x86_64) || arch(i386)
let O_DIRECT_FLAG: Int32 = 0o40000
#else
let O_DIRECT_FLAG: Int32 = 0o200000
#endif

/// Opens read-only with O_CLOEXEC (never leak a descriptor on a mount into another test's children).
func openRead(_ path: String, extraFlags: Int32 = 0) throws -> Int32 {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | extraFlags)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    return fd
}

/// The whole file through read(2).
func readAll(_ path: String) throws -> [UInt8] {
    let fd = try openRead(path)
    defer { Glibc.close(fd) }
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

/// Up to `count` bytes at `offset` with pread(2), looping over short reads; fewer only at end of file.
/// `buffer` must hold `count` bytes (aligned for O_DIRECT descriptors).
func preadFully(_ fd: Int32, offset: Int, count: Int, buffer: UnsafeMutableRawPointer, path: String) throws -> [UInt8] {
    var done = 0
    while done < count {
        let n = pread(fd, buffer + done, count - done, off_t(offset + done))
        if n < 0 {
            if errno == EINTR { continue }
            throw SysError(op: "pread(offset \(offset + done), \(count - done) bytes)", path: path, code: errno)
        }
        if n == 0 { break }
        done += n
    }
    return Array(UnsafeRawBufferPointer(start: buffer, count: done))
}

func lstatPath(_ path: String) throws -> stat {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw SysError(op: "lstat", path: path, code: errno) }
    return st
}

func statfsPath(_ path: String) throws -> StatFS {
    var st = StatFS()
    guard withUnsafeMutableBytes(of: &st, { cStatfs(path, $0.baseAddress!) }) == 0 else {
        throw SysError(op: "statfs", path: path, code: errno)
    }
    return st
}

func readLink(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { throw SysError(op: "readlink", path: path, code: errno) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Names in a directory (without . and ..), via opendir/readdir.
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

/// An extended attribute's value: asks for the size first, then reads it.
func getXattr(_ path: String, _ name: String) throws -> [UInt8] {
    let size = getxattr(path, name, nil, 0)
    guard size >= 0 else { throw SysError(op: "getxattr \(name) (size)", path: path, code: errno) }
    var buffer = [UInt8](repeating: 0, count: size)
    let n = buffer.withUnsafeMutableBytes { getxattr(path, name, $0.baseAddress, size) }
    guard n >= 0 else { throw SysError(op: "getxattr \(name)", path: path, code: errno) }
    return Array(buffer[0..<n])
}

func listXattr(_ path: String) throws -> [String] {
    let size = listxattr(path, nil, 0)
    guard size >= 0 else { throw SysError(op: "listxattr (size)", path: path, code: errno) }
    if size == 0 { return [] }
    var buffer = [CChar](repeating: 0, count: size)
    let n = buffer.withUnsafeMutableBufferPointer { listxattr(path, $0.baseAddress, size) }
    guard n >= 0 else { throw SysError(op: "listxattr", path: path, code: errno) }
    return buffer[0..<n].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
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
    for i in 0..<n where a[i] != b[i] { return "first difference at byte \(i) (got \(a[i]), expected \(b[i])); sizes \(a.count) vs \(b.count)" }
    return "sizes differ: got \(a.count) bytes, expected \(b.count)"
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

    /// The mount line of `path` (for its options), or nil.
    static func line(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").last(where: { l in
            let fields = l.split(separator: " ")
            return fields.count > 4 && unescape(String(fields[4])) == path
        }).map(String.init)
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

enum FuseControl {
    static let directory = "/sys/fs/fuse/connections"

    /// Mounts fusectl once per process (not mounted by default on these machines). Thread-safe: a global
    /// `let` is initialised once.
    static let available: Bool = {
        if let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8),
           mounts.split(separator: "\n").contains(where: { $0.contains(" \(directory) fusectl ") }) {
            return true
        }
        if mount("none", directory, "fusectl", 0, nil) == 0 || errno == EBUSY { return true }
        return false
    }()

    /// Aborts the FUSE connection of the mount whose device is `device` ("0:39"): every pending and future
    /// request fails with ENOTCONN, so nothing can stay blocked on it.
    @discardableResult
    static func abort(device: String) -> Bool {
        guard available, let minor = device.split(separator: ":").last else { return false }
        let path = "\(directory)/\(minor)/abort"
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        return Glibc.write(fd, "1", 1) == 1
    }
}
