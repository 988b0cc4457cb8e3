import AssetStore
import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This target's test bytes come from SplitMix64 (not AssetTestSupport's `TestRandom`, which this shadows).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] { SplitMix64.bytes(count, seed: seed) }

func sha256Hex(_ bytes: [UInt8]) -> String { ContentHash.of(bytes).hex }

/// Every pack file of a local store, sorted by path.
func packFiles(_ store: String) throws -> [String] {
    let packs = store + "/packs"
    var out: [String] = []
    for dir in try FileManager.default.contentsOfDirectory(atPath: packs) {
        for name in try FileManager.default.contentsOfDirectory(atPath: packs + "/" + dir) where name.hasSuffix(".pack") {
            out.append(packs + "/" + dir + "/" + name)
        }
    }
    return out.sorted()
}

/// What a version should contain, as written into the source tree.
struct ExpectedFile {
    var bytes: [UInt8]
    var mode: UInt32
    var mtime: Int
    var mtimeNs: Int
}

struct ExpectedDirectory {
    var mode: UInt32
    var subdirectories: Int
}

struct ExpectedVersion {
    var files: [String: ExpectedFile] = [:]
    /// "" is the version root.
    var directories: [String: ExpectedDirectory] = [:]
    var totalBytes: Int { files.values.reduce(0) { $0 + $1.bytes.count } }
}

/// Writes `bytes` to `root/relative` with the given mode and mtime, creating parent directories.
func writeSourceFile(_ root: String, _ relative: String, _ bytes: [UInt8], mode: UInt32 = 0o644, mtime: Int, mtimeNs: Int = 0) throws {
    let path = root + "/" + relative
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw SysError(op: "open for write", path: path, code: errno) }
    defer { Glibc.close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
        guard n > 0 else { throw SysError(op: "write", path: path, code: errno) }
        done += n
    }
    guard fchmod(fd, mode_t(mode)) == 0 else { throw SysError(op: "fchmod", path: path, code: errno) }
    try setMtime(path, mtime, mtimeNs)
}

func setMtime(_ path: String, _ seconds: Int, _ nanoseconds: Int = 0) throws {
    var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
    guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw SysError(op: "utimensat", path: path, code: errno) }
}

/// The shared data set: asset `data` v1 (tagged `first`) and v2, plus a one-file asset `models`.
///
/// v1: big.bin (4 MiB + 12,345 random bytes: several chunks, raw blocks), other.bin (1.5 MB random),
/// labels.csv (~700 KB of CSV: zstd blocks), small.txt (0640), run.sh (0755), empty.txt, sub/notes.md,
/// sub/deep/table.csv, sub/emptydir/, meta/info.json (meta is 0750).
/// v2: small.txt changed, sub/new.txt added; everything else untouched.
struct StandardData {
    var v1 = ExpectedVersion()
    var v2 = ExpectedVersion()

    static let bigSize = (4 << 20) + 12_345

    static func create(in f: MountFixture) throws -> StandardData {
        var d = StandardData()
        let t0 = 1_700_000_000
        func add(_ rel: String, _ bytes: [UInt8], mode: UInt32 = 0o644, mtime: Int, ns: Int = 0, to v: inout ExpectedVersion) throws {
            try writeSourceFile(f.src, rel, bytes, mode: mode, mtime: mtime, mtimeNs: ns)
            v.files[rel] = ExpectedFile(bytes: bytes, mode: mode, mtime: mtime, mtimeNs: ns)
        }
        try add("big.bin", randomBytes(bigSize, seed: 1), mtime: t0 + 1, ns: 500_000_000, to: &d.v1)
        try add("other.bin", randomBytes(1_500_000, seed: 2), mtime: t0 + 2, to: &d.v1)
        try add("labels.csv", csvBytes(700_000, seed: 3), mtime: t0 + 3, ns: 123_456_789, to: &d.v1)
        try add("small.txt", Array("hello from v1\n".utf8), mode: 0o640, mtime: t0 + 4, to: &d.v1)
        try add("run.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755, mtime: t0 + 5, to: &d.v1)
        try add("empty.txt", [], mtime: t0 + 6, to: &d.v1)
        try add("sub/notes.md", Array("# notes\n\nsome words\n".utf8), mtime: t0 + 7, to: &d.v1)
        try add("sub/deep/table.csv", csvBytes(20_000, seed: 4), mtime: t0 + 8, to: &d.v1)
        try add("meta/info.json", Array("{\"rows\": 12345}\n".utf8), mtime: t0 + 9, to: &d.v1)
        try FileManager.default.createDirectory(atPath: f.src + "/sub/emptydir", withIntermediateDirectories: true)
        chmod(f.src + "/meta", 0o750)
        chmod(f.src + "/sub", 0o755)
        for dir in ["sub/emptydir", "sub/deep", "sub", "meta"] { try setMtime(f.src + "/" + dir, t0 + 20) }
        d.v1.directories = [
            "": ExpectedDirectory(mode: 0o555, subdirectories: 2),
            "sub": ExpectedDirectory(mode: 0o755, subdirectories: 2),
            "sub/deep": ExpectedDirectory(mode: 0o755, subdirectories: 0),
            "sub/emptydir": ExpectedDirectory(mode: 0o755, subdirectories: 0),
            "meta": ExpectedDirectory(mode: 0o750, subdirectories: 0),
        ]
        try f.importVersion("data", message: "first", tag: "first")

        d.v2 = d.v1
        try add("small.txt", Array("hello from v2, changed\n".utf8), mode: 0o640, mtime: t0 + 100, to: &d.v2)
        try add("sub/new.txt", Array("new in v2\n".utf8), mtime: t0 + 101, to: &d.v2)
        try setMtime(f.src + "/sub", t0 + 120)
        try f.importVersion("data", message: "second")

        let models = f.root + "/models-src"
        try writeSourceFile(models, "weights.bin", randomBytes(10_000, seed: 9), mtime: t0)
        try f.importVersion("models", from: models, message: "weights")
        return d
    }
}
