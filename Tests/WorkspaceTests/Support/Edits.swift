import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A small base tree with a file in a subdirectory (so edits hit untouched base directories too).
func buildSmallBase(_ root: String, bigSize: Int = 3_000_000) throws {
    try writeFile(root + "/big.bin", randomBytes(bigSize, seed: 21), mode: 0o644)
    try writeFile(root + "/c.txt", textBytes(10_000, seed: 22), mode: 0o644)
    try writeFile(root + "/sub/a.txt", textBytes(20_000, seed: 23), mode: 0o644)
    try writeFile(root + "/sub/deep/d.bin", randomBytes(300_000, seed: 24), mode: 0o600)
    chmod(root + "/sub", 0o755)
    chmod(root + "/sub/deep", 0o755)
}

/// Runs the same edit on each root (a workspace and its local reference), throwing on the first failure.
func onBoth(_ roots: [String], _ body: (String) throws -> Void) rethrows {
    for root in roots { try body(root) }
}

/// pwrite at an offset of an existing (or new) file, then close.
func patchFile(_ path: String, _ bytes: [UInt8], at offset: Int, flags: Int32 = O_WRONLY | O_CREAT) throws {
    let fd = Glibc.open(path, flags | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
    guard pwriteFully(fd, bytes, offset: offset) == bytes.count else {
        let e = errno
        Glibc.close(fd)
        throw SysError(op: "pwrite \(bytes.count)B @\(offset)", path: path, code: e)
    }
    guard Glibc.close(fd) == 0 else { throw SysError(op: "close", path: path, code: errno) }
}

func appendFile(_ path: String, _ text: String) throws {
    let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    guard fd >= 0 else { throw SysError(op: "open O_APPEND", path: path, code: errno) }
    defer { Glibc.close(fd) }
    let bytes = Array(text.utf8)
    guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, bytes.count) }) == bytes.count else {
        throw SysError(op: "write", path: path, code: errno)
    }
}

func sysCheck(_ what: String, _ path: String, _ r: Int32) throws {
    guard r == 0 else { throw SysError(op: what, path: path, code: errno) }
}

/// A typical set of edits: new file, a patch into base data, an append in a base subdirectory, a truncate, a
/// new directory, a rename across directories, an unlink, a chmod.
func typicalEdits(_ root: String, seed: UInt64 = 5) throws {
    try writeFile(root + "/new.bin", randomBytes(1_000_000, seed: seed), mode: 0o644)
    try patchFile(root + "/big.bin", randomBytes(4_096, seed: seed + 1), at: 1_000_000)
    try appendFile(root + "/sub/a.txt", "appended in a base subdirectory\n")
    try patchFile(root + "/sub/deep/d.bin", randomBytes(10, seed: seed + 2), at: 5)
    try sysCheck("truncate", root + "/c.txt", truncate(root + "/c.txt", 5_000))
    try sysCheck("mkdir", root + "/newdir", mkdir(root + "/newdir", 0o755))
    try sysCheck("rename", root + "/c.txt", rename(root + "/c.txt", root + "/newdir/c.txt"))
    try sysCheck("chmod", root + "/big.bin", chmod(root + "/big.bin", 0o600))
}

/// Expects two trees to be identical (names, types, sizes, modes, bytes).
func expectSameTree(_ got: String, _ expected: String, _ what: String, directoryModes: Bool = true,
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
    let problems = try compareTrees(got: got, expected: expected, directoryModes: directoryModes)
    #expect(problems.isEmpty, "\(what):\n\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
}
