import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Plain system-call wrappers for reading files and directories (through a mount or not) that throw `SysError`.

/// The whole file through read(2).
public func readAll(_ path: String) throws -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    defer { Glibc.close(fd) }
    return try readAll(fd: fd, path: path)
}

/// Everything from the descriptor's position to the end of the file, through read(2).
public func readAll(fd: Int32, path: String) throws -> [UInt8] {
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

public func lstatPath(_ path: String) throws -> stat {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw SysError(op: "lstat", path: path, code: errno) }
    return st
}

public func readLink(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 8192)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { throw SysError(op: "readlink", path: path, code: errno) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Names in a directory (without . and ..), sorted, via opendir/readdir.
public func listDirectory(_ path: String) throws -> [String] {
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

/// Byte equality through memcmp (element-wise `==` is slow in debug builds).
public func sameBytes<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
    a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            pa.count == pb.count && (pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0)
        }
    }
}

/// Where two byte strings first differ, for failure messages.
public func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String {
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
