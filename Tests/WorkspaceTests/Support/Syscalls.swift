import AssetStore
import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The workspace tests' own system-call wrappers (return values and errno, as the POSIX cases record them); the
/// common ones are in AssetTestSupport.

let XATTR_CREATE_FLAG: Int32 = 1
let XATTR_REPLACE_FLAG: Int32 = 2

/// getxattr(2): the value's length, or -1 with errno. `capacity` 0 asks for the size.
func sysGetxattr(_ path: String, _ name: String, capacity: Int) -> (Int, [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: max(capacity, 1))
    let n = buffer.withUnsafeMutableBytes { getxattr(path, name, capacity == 0 ? nil : $0.baseAddress, capacity) }
    return (n, n > 0 && capacity > 0 ? Array(buffer[0..<n]) : [])
}

/// listxattr(2) into a buffer of `capacity` bytes.
func sysListxattr(_ path: String, capacity: Int) -> (Int, [String]) {
    var buffer = [CChar](repeating: 0, count: max(capacity, 1))
    let n = buffer.withUnsafeMutableBufferPointer { listxattr(path, capacity == 0 ? nil : $0.baseAddress, capacity) }
    guard n > 0, capacity > 0 else { return (n, []) }
    let names = buffer[0..<n].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return (n, names)
}

func sysSetxattr(_ path: String, _ name: String, _ value: [UInt8], _ flags: Int32) -> Int32 {
    value.withUnsafeBytes { setxattr(path, name, $0.baseAddress, value.count, flags) }
}

func sysRemovexattr(_ path: String, _ name: String) -> Int32 { removexattr(path, name) }

// MARK: Files

/// The whole file from offset 0 through pread(2), whatever the descriptor's position.
func preadAll(fd: Int32, path: String) throws -> [UInt8] {
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

func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func sha256Hex(_ bytes: [UInt8]) -> String { ContentHash.of(bytes).hex }

// MARK: Test data

/// This target's test bytes come from SplitMix64 (not AssetTestSupport's `TestRandom`, which this shadows).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] { SplitMix64.bytes(count, seed: seed) }

/// Word-salad text (not AssetTestSupport's CSV-like `textBytes`, which this shadows).
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
