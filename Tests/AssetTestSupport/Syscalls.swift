import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with its errno.
public struct SysError: Error, CustomStringConvertible {
    public let op: String
    public let path: String
    public let code: Int32

    public init(op: String, path: String, code: Int32) {
        self.op = op
        self.path = path
        self.code = code
    }

    public var description: String { "\(op)(\(path)): \(errnoName(code)) \(String(cString: strerror(code))) (errno \(code))" }
}

/// The symbolic name of an errno value ("ENOENT"), or "errno N".
public func errnoName(_ e: Int32) -> String {
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

// MARK: C functions the Glibc module does not export (sys/xattr.h, sys/vfs.h, GNU extensions)

/// Looks a libc function up at run time and types it as a C function pointer.
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

/// getxattr(2): the value's length, or -1 with errno.
public func getxattr(_ path: String, _ name: String, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int { cGetxattr(path, name, value, size) }
/// listxattr(2): the length of the NUL-separated name list, or -1 with errno.
public func listxattr(_ path: String, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int { cListxattr(path, list, size) }
/// setxattr(2) with a raw value: 0, or -1 with errno.
public func setxattr(_ path: String, _ name: String, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32 {
    cSetxattr(path, name, value, size, flags)
}
/// removexattr(2): 0, or -1 with errno.
public func removexattr(_ path: String, _ name: String) -> Int32 { cRemovexattr(path, name) }
/// renameat2(2) on two paths (relative to the working directory): 0, or -1 with errno.
public func sysRenameat2(_ from: String, _ to: String, _ flags: UInt32) -> Int32 { cRenameat2(AT_FDCWD, from, AT_FDCWD, to, flags) }
/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+): the child closes every descriptor from `lowest` up.
public func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 { cAddCloseFrom(actions, lowest) }

// MARK: Extended attributes

/// An extended attribute's value: asks for the size first, then reads it.
public func getXattr(_ path: String, _ name: String) throws -> [UInt8] {
    let size = getxattr(path, name, nil, 0)
    guard size >= 0 else { throw SysError(op: "getxattr \(name) (size)", path: path, code: errno) }
    var buffer = [UInt8](repeating: 0, count: max(size, 1))
    let n = buffer.withUnsafeMutableBytes { getxattr(path, name, $0.baseAddress, size) }
    guard n >= 0 else { throw SysError(op: "getxattr \(name)", path: path, code: errno) }
    return Array(buffer[0..<n])
}

/// The names of a file's extended attributes.
public func listXattr(_ path: String) throws -> [String] {
    let size = listxattr(path, nil, 0)
    guard size >= 0 else { throw SysError(op: "listxattr (size)", path: path, code: errno) }
    if size == 0 { return [] }
    var buffer = [CChar](repeating: 0, count: size)
    let n = buffer.withUnsafeMutableBufferPointer { listxattr(path, $0.baseAddress, size) }
    guard n >= 0 else { throw SysError(op: "listxattr", path: path, code: errno) }
    return buffer[0..<n].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
}

// MARK: statfs

/// `struct statfs` on 64-bit Linux: eleven 64-bit words, then four spare.
public struct StatFS {
    public var f_type = 0, f_bsize = 0, f_blocks = 0, f_bfree = 0, f_bavail = 0, f_files = 0, f_ffree = 0
    public var f_fsid = 0, f_namelen = 0, f_frsize = 0, f_flags = 0
    public var spare: (Int, Int, Int, Int) = (0, 0, 0, 0)

    public init() {}
}

/// statfs(2): 0 or -1 with errno.
public func sysStatfs(_ path: String, _ out: inout StatFS) -> Int32 {
    withUnsafeMutableBytes(of: &out) { cStatfs(path, $0.baseAddress!) }
}

public func statfsPath(_ path: String) throws -> StatFS {
    var st = StatFS()
    guard sysStatfs(path, &st) == 0 else { throw SysError(op: "statfs", path: path, code: errno) }
    return st
}
