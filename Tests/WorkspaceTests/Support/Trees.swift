import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One entry of a directory tree, as comparable between file systems.
struct TreeItem: Equatable, CustomStringConvertible {
    var type: Character  // f, d, l, ?
    var perm: UInt32
    var size: Int  // 0 for directories
    var target: String?

    var description: String {
        "\(type) \(String(perm, radix: 8))" + (type == "d" ? "" : " \(size)B") + (target.map { " -> \($0)" } ?? "")
    }
}

func fileType(_ mode: mode_t) -> Character {
    switch mode & S_IFMT {
    case S_IFREG: return "f"
    case S_IFDIR: return "d"
    case S_IFLNK: return "l"
    case S_IFIFO: return "p"
    case S_IFSOCK: return "s"
    case S_IFCHR: return "c"
    case S_IFBLK: return "b"
    default: return "?"
    }
}

/// Every entry below `root` by relative path (root itself excluded), without following symlinks.
func walkTree(_ root: String) throws -> [String: TreeItem] {
    var out: [String: TreeItem] = [:]
    func visit(_ rel: String) throws {
        for name in try listDirectory(rel.isEmpty ? root : root + "/" + rel) {
            let childRel = rel.isEmpty ? name : rel + "/" + name
            let st = try lstatPath(root + "/" + childRel)
            let type = fileType(st.st_mode)
            var item = TreeItem(type: type, perm: UInt32(st.st_mode) & 0o7777, size: type == "d" ? 0 : Int(st.st_size))
            if type == "l" { item.target = try readLink(root + "/" + childRel) }
            out[childRel] = item
            if type == "d" { try visit(childRel) }
        }
    }
    try visit("")
    return out
}

/// Differences between two trees: names, types, sizes, modes (when `modes`), symlink targets, and file
/// contents byte for byte. Empty when equal.
func compareTrees(got: String, expected: String, modes: Bool = true, directoryModes: Bool = true, limit: Int = 20) throws -> [String] {
    let a = try walkTree(got)
    let b = try walkTree(expected)
    var problems: [String] = []
    for path in Set(a.keys).union(b.keys).sorted() {
        if problems.count >= limit { problems.append("... (stopped after \(limit) differences)"); break }
        guard let x = a[path] else { problems.append("\(path): missing (expected \(b[path]!))"); continue }
        guard let y = b[path] else { problems.append("\(path): unexpected \(x)"); continue }
        var gotItem = x, expectedItem = y
        if !modes || (x.type == "d" && !directoryModes) {
            gotItem.perm = 0
            expectedItem.perm = 0
        }
        if gotItem != expectedItem {
            problems.append("\(path): got \(x), expected \(y)")
            continue
        }
        if x.type == "f" {
            let ga = try readAll(got + "/" + path)
            let gb = try readAll(expected + "/" + path)
            if !sameBytes(ga, gb) { problems.append("\(path): content differs: \(firstDifference(ga, gb))") }
        }
    }
    return problems
}

/// The start tree of the POSIX cases, written identically into the imported source and the local reference.
func buildStartTree(_ root: String, numpy: Bool = false) throws {
    try writeFile(root + "/base.txt", textBytes(4_500, seed: 1), mode: 0o644)
    try writeFile(root + "/big.bin", randomBytes(400_000, seed: 2), mode: 0o644)
    try writeFile(root + "/exec.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
    try writeFile(root + "/dir/inner.txt", Array("inner file\n".utf8), mode: 0o644)
    try writeFile(root + "/dir/sub/deep.txt", Array("deep\n".utf8), mode: 0o600)
    try writeFile(root + "/full/x", Array("x".utf8), mode: 0o644)
    mkdir(root + "/empty", 0o755)
    chmod(root + "/empty", 0o755)
    chmod(root + "/dir", 0o755)
    chmod(root + "/dir/sub", 0o750)
    chmod(root + "/full", 0o755)
    if numpy {
        var floats = [Float32](repeating: 0, count: 200_000)
        for i in floats.indices { floats[i] = Float32(i) * 0.25 }
        try writeFile(root + "/arr.f32", floats.withUnsafeBytes { Array($0) }, mode: 0o644)
    }
}

/// "a/b/c" -> "a/b"; "c" -> "".
func parentPath(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return String(path[..<slash])
}
