import AssetTestSupport
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A NUL-terminated C path from raw bytes (names need not be UTF-8).
func cPath(_ bytes: [UInt8]) -> [CChar] { bytes.map { CChar(bitPattern: $0) } + [0] }
func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func join(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { a + [0x2F] + b }

/// Writes a file at a raw-byte path with open(2), then sets its mode.
func writeFile(_ path: [UInt8], _ content: [UInt8], mode: mode_t = 0o644) throws {
    let fd = open(cPath(path), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw TestFailure("create \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var done = 0
    while done < content.count {
        let n = content.withUnsafeBytes { write(fd, $0.baseAddress! + done, content.count - done) }
        guard n > 0 else { throw TestFailure("write failed: \(String(cString: strerror(errno)))") }
        done += n
    }
    guard fchmod(fd, mode) == 0 else { throw TestFailure("fchmod failed") }
}

func writeFile(_ path: String, _ content: [UInt8], mode: mode_t = 0o644) throws { try writeFile(bytes(path), content, mode: mode) }

func makeDir(_ path: [UInt8], mode: mode_t = 0o755) throws {
    guard mkdir(cPath(path), 0o700) == 0 else { throw TestFailure("mkdir \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))") }
    guard chmod(cPath(path), mode) == 0 else { throw TestFailure("chmod failed") }
}

func makeDir(_ path: String, mode: mode_t = 0o755) throws { try makeDir(bytes(path), mode: mode) }

func makeSymlink(_ target: String, at path: [UInt8]) throws {
    guard symlink(target, cPath(path)) == 0 else { throw TestFailure("symlink failed: \(String(cString: strerror(errno)))") }
}

/// Sets the mtime (and atime) of a path without following a symlink.
func setMtime(_ path: [UInt8], seconds: Int, nanoseconds: Int) throws {
    var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
    guard utimensat(AT_FDCWD, cPath(path), &times, AT_SYMLINK_NOFOLLOW) == 0 else {
        throw TestFailure("utimensat \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))")
    }
}

func setMtime(_ path: String, seconds: Int, nanoseconds: Int) throws { try setMtime(bytes(path), seconds: seconds, nanoseconds: nanoseconds) }

func lstatPath(_ path: [UInt8]) throws -> stat {
    var st = stat()
    guard lstat(cPath(path), &st) == 0 else { throw TestFailure("lstat \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))") }
    return st
}

/// What a test compares between a source tree and an export of it.
struct Node: Equatable, CustomStringConvertible {
    var kind: String
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var size: Int64
    var mtimeNs: Int64
    var content: ContentHash?
    var target: [UInt8]?

    var description: String {
        "\(kind) mode=\(String(mode, radix: 8)) uid=\(uid) gid=\(gid) size=\(size) mtime=\(mtimeNs) "
            + (content.map { "sha=\($0.short)" } ?? "") + (target.map { " -> \(String(decoding: $0, as: UTF8.self))" } ?? "")
    }
}

/// SHA-256 of a file's bytes, read in 1 MiB pieces.
func hashFile(_ path: [UInt8]) throws -> ContentHash {
    let fd = open(cPath(path), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { throw TestFailure("open \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var hasher = StreamingHasher()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n >= 0 else { throw TestFailure("read failed") }
        if n == 0 { break }
        buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    return hasher.finalize()
}

/// Every entry below `root`, keyed by its raw relative path; the root itself is not included.
func snapshot(_ root: String) throws -> [[UInt8]: Node] {
    var out: [[UInt8]: Node] = [:]
    func visit(_ dir: [UInt8], _ relative: [UInt8]) throws {
        let fd = open(cPath(dir), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("open dir \(String(decoding: dir, as: UTF8.self))") }
        let names = rawNames(fd)
        close(fd)
        for name in names {
            let path = join(dir, name)
            let rel = relative.isEmpty ? name : join(relative, name)
            let st = try lstatPath(path)
            var node = Node(kind: "?", mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid, size: Int64(st.st_size),
                            mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                node.kind = "file"
                node.content = try hashFile(path)
            case S_IFDIR:
                node.kind = "dir"
                node.size = 0
                try visit(path, rel)
            case S_IFLNK:
                node.kind = "symlink"
                node.mode = 0
                var buffer = [CChar](repeating: 0, count: 4096)
                let n = readlink(cPath(path), &buffer, buffer.count)
                node.target = buffer[0..<max(0, n)].map { UInt8(bitPattern: $0) }
            default:
                node.kind = "special"
            }
            out[rel] = node
        }
    }
    try visit(bytes(root), [])
    return out
}

/// Differences between two snapshots, as readable lines (empty when equal).
func differences(_ expected: [[UInt8]: Node], _ actual: [[UInt8]: Node]) -> [String] {
    var out: [String] = []
    for (path, node) in expected.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
        let name = String(decoding: path, as: UTF8.self)
        guard let other = actual[path] else {
            out.append("missing \(name)")
            continue
        }
        if other != node { out.append("\(name): expected \(node), got \(other)") }
    }
    for path in actual.keys where expected[path] == nil { out.append("unexpected \(String(decoding: path, as: UTF8.self))") }
    return out
}

/// A fresh store in its own temporary directory.
func withRepository<T>(_ label: String, _ body: (Repository, String) throws -> T) throws -> T {
    try withTemporaryDirectory(label) { dir in
        let repo = try Repository.create(at: dir + "/store")
        return try body(repo, dir)
    }
}

@discardableResult
func importTree(_ repo: Repository, _ asset: String, _ source: String, rehash: Bool = false, tag: String? = nil,
                message: String = "", meta: [MetaItem] = []) throws -> ImportResult {
    var options = ImportOptions(asset: asset, source: source)
    options.rehash = rehash
    options.tag = tag
    options.message = message
    options.meta = meta
    options.author = "tester"
    return try Importer(repo: repo, options: options).run()
}

@discardableResult
func export(_ repo: Repository, _ asset: String, _ number: Int, to destination: String, path: [String] = []) throws -> Exporter.Result {
    try Exporter(repo: repo).export(Ref(asset: asset, selector: .number(number), path: path), to: destination)
}

/// Total size of the pack files on disk, found by walking STORE/packs.
func packFiles(_ repo: Repository) -> [(path: String, size: Int64)] {
    regularFiles(under: repo.root + "/packs").filter { $0.hasSuffix(".pack") }.map { path in
        var st = stat()
        _ = stat(path, &st)
        return (path, Int64(st.st_size))
    }
}

/// The tree hash of Format.md ("Tree hashes"), computed here from the catalog's rows without TreeHasher.
func documentedTreeHash(_ catalog: Catalog, _ treeID: Int64) throws -> ContentHash {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    var data = Array("assetfs-tree-v1\n".utf8)
    let entries = try catalog.entries(of: treeID).sorted { $0.name.lexicographicallyPrecedes($1.name) }
    for e in entries {
        data += le(UInt32(e.name.count)) + e.name + [e.kind.rawValue] + le(e.mode) + le(e.uid) + le(e.gid) + le(e.size) + le(e.mtimeNs)
        switch e.kind {
        case .file: data += try catalog.file(try #require(e.fileID)).hash.bytes
        case .directory: data += try documentedTreeHash(catalog, try #require(e.subtreeID)).bytes
        case .symlink:
            let target = e.target ?? []
            data += le(UInt32(target.count)) + target
        case .fifo, .socket, .characterDevice, .blockDevice:
            Issue.record("a version holds a \(e.kind.description)")
        }
    }
    return ContentHash.of(data)
}
