import AssetStore
import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This target's test bytes come from SplitMix64 (not AssetTestSupport's `TestRandom`, which this shadows).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] { SplitMix64.bytes(count, seed: seed) }

/// A path (raw bytes) shown losslessly: printable ASCII kept, everything else as \xNN.
func escapeName(_ bytes: [UInt8]) -> String {
    var s = ""
    for b in bytes {
        if b >= 0x20 && b < 0x7F && b != 0x5C { s.unicodeScalars.append(Unicode.Scalar(b)) } else { s += String(format: "\\x%02x", b) }
    }
    return s
}

/// What a tree holds, comparable across source, export and mount: relative path (escaped) -> a line with the
/// type, permission bits and content hash (files) or target (symlinks). Times are left out on purpose: a
/// commit's directory times are not something the test can predict.
typealias TreeSignature = [String: String]

/// Walks `root` with openat/fdopendir (raw byte names, no PATH_MAX limit, no recursion).
func treeSignature(_ root: String, fileModes: Bool = true) throws -> TreeSignature {
    var out: TreeSignature = [:]
    let top = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard top >= 0 else { throw SysError(op: "open", path: root, code: errno) }
    // Work list of (directory fd, relative path); each fd is closed once its entries are listed.
    var work: [(Int32, [UInt8])] = [(top, [])]
    while let (dirFD, rel) = work.popLast() {
        let names: [[UInt8]]
        do { names = try listNames(dirFD) } catch {
            Glibc.close(dirFD)
            for (fd, _) in work { Glibc.close(fd) }
            throw error
        }
        defer { Glibc.close(dirFD) }
        for name in names {
            let path = rel.isEmpty ? name : rel + [0x2F] + name
            let key = escapeName(path)
            var st = stat()
            let cname = name.map { CChar(bitPattern: $0) } + [0]
            guard fstatat(dirFD, cname, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw SysError(op: "fstatat", path: root + "/" + key, code: errno)
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let fd = openat(dirFD, cname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw SysError(op: "openat", path: root + "/" + key, code: errno) }
                let bytes: [UInt8]
                do { bytes = try readAll(fd: fd, path: key) } catch { Glibc.close(fd); throw error }
                Glibc.close(fd)
                let mode = fileModes ? String(st.st_mode & 0o7777, radix: 8) : "-"
                out[key] = "file \(mode) \(bytes.count) \(sha256Hex(bytes))"
            case S_IFDIR:
                out[key] = "dir"
                let fd = openat(dirFD, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw SysError(op: "openat dir", path: root + "/" + key, code: errno) }
                work.append((fd, path))
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: 8192)
                let n = readlinkat(dirFD, cname, &buffer, buffer.count)
                guard n >= 0 else { throw SysError(op: "readlinkat", path: root + "/" + key, code: errno) }
                out[key] = "link -> " + escapeName(buffer[0..<n].map { UInt8(bitPattern: $0) })
            default:
                out[key] = "special \(String(st.st_mode & S_IFMT, radix: 8))"
            }
        }
    }
    return out
}

/// Names in a directory (without . and ..) as raw bytes.
func listNames(_ dirFD: Int32) throws -> [[UInt8]] {
    let d = dup(dirFD)
    guard d >= 0, let dir = fdopendir(d) else { throw SysError(op: "fdopendir", path: "fd \(dirFD)", code: errno) }
    defer { closedir(dir) }
    rewinddir(dir)  // the dup shares its offset with dirFD: a second listing of the same descriptor starts over
    var names: [[UInt8]] = []
    while true {
        errno = 0
        guard let e = readdir(dir) else {
            if errno != 0 { throw SysError(op: "readdir", path: "fd \(dirFD)", code: errno) }
            break
        }
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
        if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
    }
    return names
}

/// Lines describing how two signatures differ (empty when equal).
func signatureDifferences(expected: TreeSignature, actual: TreeSignature, limit: Int = 20) -> [String] {
    var out: [String] = []
    for (k, v) in expected.sorted(by: { $0.key < $1.key }) where actual[k] != v {
        out.append("\(k): expected \(v), got \(actual[k] ?? "nothing")")
    }
    for k in actual.keys.sorted() where expected[k] == nil { out.append("\(k): unexpected \(actual[k]!)") }
    return Array(out.prefix(limit)) + (out.count > limit ? ["... \(out.count - limit) more"] : [])
}

/// Builds a tree from relative path -> bytes (parents created as needed).
func makeTree(_ root: String, _ files: [(String, [UInt8])]) throws {
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    for (rel, bytes) in files { try writeFile(root + "/" + rel, bytes) }
}
