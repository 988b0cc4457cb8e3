import AssetStore
import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The reliability tests' own file helpers; the common system-call wrappers are in AssetTestSupport.

/// Bytes free for an unprivileged writer... we are root, so f_bfree (root may use reserved blocks).
func freeBytes(_ path: String) throws -> Int {
    let st = try statfsPath(path)
    return st.f_bfree * st.f_bsize
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
