import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reading helpers of the byte tests (O_DIRECT reads); the common system-call wrappers are in AssetTestSupport.

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

/// A whole file (`size` bytes) read with O_DIRECT, so the daemon answers rather than the kernel's page cache.
func directRead(_ path: String, size: Int) throws -> [UInt8] {
    let fd = try openRead(path, extraFlags: O_DIRECT_FLAG)
    defer { close(fd) }
    let count = max(4096, (size + 4095) / 4096 * 4096)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 4096)
    defer { buffer.deallocate() }
    return Array(try preadFully(fd, offset: 0, count: count, buffer: buffer, path: path).prefix(size))
}
