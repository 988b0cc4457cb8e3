import AssetStore
import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Bytes read through the mount")
struct ByteTests {
    @Test("every file equals its source; 200 random unaligned preads; sha256sum; xattrs", arguments: StoreBackend.allCases)
    func bytesAndXattrs(backend: StoreBackend) throws {
        let f = try MountFixture("bytes-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()

        // Every file of both versions, whole, through read(2).
        for (version, expected) in [("v1", data.v1), ("v2", data.v2)] {
            for (rel, file) in expected.files.sorted(by: { $0.key < $1.key }) {
                let got = try f.io("read \(version)/\(rel)") { try readAll(f.path("data/\(version)/\(rel)")) }
                #expect(sameBytes(got, file.bytes), "data/\(version)/\(rel): \(firstDifference(got, file.bytes))")
            }
        }

        // Random unaligned reads, through the page cache and with O_DIRECT (which hands the daemon the exact
        // unaligned offsets and lengths, so its block path is used for the small ones).
        let big = data.v2.files["big.bin"]!.bytes
        let labels = data.v2.files["labels.csv"]!.bytes
        let cuts = chunkBoundaries(big)
        #expect(cuts.count >= 2, "big.bin should span at least 3 chunks (cut points \(cuts))")
        try randomReads(f, "data/v2/big.bin", source: big, count: 200, seed: 42, direct: false)
        try randomReads(f, "data/v1/big.bin", source: big, count: 200, seed: 43, direct: true)
        try randomReads(f, "data/v2/labels.csv", source: labels, count: 60, seed: 44, direct: true)

        // sha256sum (a child process) agrees with the source's hash and with the xattr.
        let files = ["big.bin", "other.bin", "labels.csv", "small.txt", "empty.txt", "sub/deep/table.csv"]
        let sums = f.run(["sha256sum"] + files.map { f.path("data/v2/\($0)") })
        #expect(sums.succeeded, "\(sums)")
        let printed = Dictionary(uniqueKeysWithValues: sums.lines.compactMap { line -> (String, String)? in
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            return (parts[1].trimmingCharacters(in: .whitespaces), String(parts[0]))
        })
        for rel in files {
            let expected = sha256Hex(data.v2.files[rel]!.bytes)
            #expect(printed[f.path("data/v2/\(rel)")] == expected, "sha256sum of v2/\(rel)")
            let xattr = try f.io("getxattr \(rel)") { try getXattr(f.path("data/v2/\(rel)"), "user.assetfs.sha256") }
            #expect(String(decoding: xattr, as: UTF8.self) == expected, "user.assetfs.sha256 of v2/\(rel)")
        }

        try f.io("xattrs") {
            let file = f.path("data/v2/big.bin")
            #expect(try listXattr(file) == ["user.assetfs.sha256"], "listxattr on a file")
            // A too-small buffer is ERANGE; an unknown name is ENODATA.
            var small = [UInt8](repeating: 0, count: 10)
            let n = small.withUnsafeMutableBytes { getxattr(file, "user.assetfs.sha256", $0.baseAddress, 10) }
            let rangeErr = errno
            #expect(n == -1 && rangeErr == ERANGE, "getxattr into 10 bytes: rc \(n) errno \(rangeErr)")
            let m = getxattr(file, "user.nosuch", nil, 0)
            let noData = errno
            #expect(m == -1 && noData == ENODATA, "unknown xattr: rc \(m) errno \(noData)")

            let version = f.path("data/v2")
            let names = try listXattr(version)
            #expect(Set(names) == ["user.assetfs.version", "user.assetfs.root", "user.assetfs.inputs", "user.assetfs.meta"],
                    "listxattr on a version dir: \(names)")
            // Imported without inputs: an empty list (LineageTests checks a version that has some).
            #expect(String(decoding: try getXattr(version, "user.assetfs.inputs"), as: UTF8.self) == "[]")
            #expect(String(decoding: try getXattr(version, "user.assetfs.version"), as: UTF8.self) == "data@v2")
            let root = String(decoding: try getXattr(version, "user.assetfs.root"), as: UTF8.self)
            #expect(root.count == 64 && root.allSatisfy(\.isHexDigit), "user.assetfs.root is 64 hex digits: \(root)")
            let v1root = String(decoding: try getXattr(f.path("data/v1"), "user.assetfs.root"), as: UTF8.self)
            #expect(v1root != root, "v1 and v2 have different Merkle roots")
            // Other nodes have no attributes.
            #expect(try listXattr(f.path("data/v2/sub")) == [])
            #expect(try listXattr(f.path("data")) == [])
        }
        // The root xattr is the root `assetfs show` reports.
        let show = f.cli(["show", "data@v2", "--json"])
        #expect(show.succeeded, "\(show)")
        if let object = try? JSONSerialization.jsonObject(with: show.stdout) as? [String: Any], let shown = object["root"] as? String {
            let root = try f.io("getxattr root") { String(decoding: try getXattr(f.path("data/v2"), "user.assetfs.root"), as: UTF8.self) }
            #expect(root == shown, "user.assetfs.root vs `assetfs show --json` root")
        } else {
            Issue.record("`assetfs show data@v2 --json` did not print an object with a root: \(show)")
        }
        try f.unmount()
    }

    /// `count` preads at random offsets with lengths from 1 B to 300 KB; a quarter start just before a 64 KiB
    /// boundary, some run past end of file; each is compared with the source.
    /// Where the store's chunker cuts `bytes` (the same content-defined cut points the import used).
    private func chunkBoundaries(_ bytes: [UInt8]) -> [Int] {
        let lengths = bytes.withUnsafeBytes { Chunker().chunkLengths($0) }
        var cuts: [Int] = []
        var position = 0
        for length in lengths.dropLast() {
            position += length
            cuts.append(position)
        }
        return cuts
    }

    private func randomReads(_ f: MountFixture, _ rel: String, source: [UInt8], count: Int, seed: UInt64, direct: Bool) throws {
        var g = SplitMix64(seed: seed)
        let path = f.path(rel)
        let fd = try f.io("open \(rel)") { try openRead(path, extraFlags: direct ? O_DIRECT_FLAG : 0) }
        defer { Glibc.close(fd) }
        let capacity = 300_000 + 4096
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 4096, capacity) == 0, let buffer = raw else { throw TestFailure("posix_memalign failed") }
        defer { free(buffer) }
        var failures = 0
        let cuts = chunkBoundaries(source)
        var crossings = 0
        // First, reads straddling every chunk cut (tiny, one block each side, and several blocks), then random ones.
        var planned: [(Int, Int)] = []
        for cut in cuts {
            planned += [(cut - 1, 2), (cut - 100, 200), (cut - 70_000, 140_000), (max(0, cut - 250_000), 300_000)]
        }
        for i in 0..<(planned.count + count) {
            var offset: Int
            var length: Int
            if i < planned.count {
                (offset, length) = planned[i]
            } else {
                switch i % 8 {
                case 0, 1:  // straddle a 64 KiB block boundary
                    let boundary = Int(g.next() % UInt64(max(1, source.count / 65_536))) * 65_536 + 65_536
                    offset = max(0, boundary - 1 - Int(g.next() % 2_000))
                    length = 2 + Int(g.next() % 9_000)
                case 2:  // tiny
                    offset = Int(g.next() % UInt64(source.count))
                    length = 1 + Int(g.next() % 16)
                case 3:  // near end of file, possibly past it
                    offset = max(0, source.count - Int(g.next() % 200_000))
                    length = 1 + Int(g.next() % 300_000)
                default:  // anywhere, up to 300 KB (crosses chunks now and then)
                    offset = Int(g.next() % UInt64(source.count))
                    length = 1 + Int(g.next() % 300_000)
                }
            }
            offset = min(offset, source.count)
            if cuts.contains(where: { $0 > offset && $0 < offset + length }) { crossings += 1 }
            let got = try f.io("pread \(rel) @\(offset)+\(length)") {
                try preadFully(fd, offset: offset, count: length, buffer: buffer, path: path)
            }
            let expected = Array(source[offset..<min(source.count, offset + length)])
            if !sameBytes(got, expected) {
                failures += 1
                if failures <= 5 {
                    Issue.record("\(rel)\(direct ? " (O_DIRECT)" : ""): pread(offset \(offset), length \(length)): \(firstDifference(got, expected))")
                }
            }
        }
        #expect(cuts.isEmpty || crossings >= cuts.count, "reads crossing chunk cuts: \(crossings)")
        #expect(failures == 0, "\(failures) of \(planned.count + count) reads of \(rel)\(direct ? " (O_DIRECT)" : "") returned wrong bytes")
    }

    @Test("numpy loads a .npy from the mount with mmap_mode='r' and it equals the source array")
    func numpyMmap() throws {
        let f = try MountFixture("numpy")
        defer { f.close() }
        let make = f.run(["python3", "-c", """
            import numpy as np, sys
            rng = np.random.default_rng(7)
            np.save(sys.argv[1] + "/features.npy", rng.standard_normal((768, 1024), dtype=np.float32))
            np.save(sys.argv[1] + "/labels.npy", np.arange(100_000, dtype=np.int64) * 3)
            """, f.src], timeout: 60)
        try #require(make.succeeded, "python3 with numpy must work to build the fixture: \(make)")
        try f.importVersion("data")
        try f.mount()

        let check = f.run(["python3", "-c", """
            import numpy as np, sys
            mnt, src = sys.argv[1], sys.argv[2]
            for name in ["features.npy", "labels.npy"]:
                a = np.load(mnt + "/" + name, mmap_mode="r")
                b = np.load(src + "/" + name)
                assert isinstance(a, np.memmap), type(a)
                assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
                if not np.array_equal(a, b):
                    sys.exit(name + " differs")
                # Random-access slices through the mapping.
                assert np.array_equal(a[::97], b[::97])
                assert np.array_equal(a[-3:], b[-3:])
            print("ok")
            """, f.path("data/v1"), f.src], timeout: 60)
        #expect(check.succeeded && check.out.contains("ok"), "\(check)")
        try f.unmount()
    }

    @Test("8 concurrent reader processes all get the right bytes", arguments: StoreBackend.allCases)
    func concurrentReaders(backend: StoreBackend) throws {
        let f = try MountFixture("concurrent-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()

        // Cold cache: several processes on the same file, others on different files and on v1's copy.
        let jobs: [(argv: [String], rel: String, output: String?)] = [
            (["sha256sum", f.path("data/v2/big.bin")], "big.bin", nil),
            (["sha256sum", f.path("data/v2/big.bin")], "big.bin", nil),
            (["sha256sum", f.path("data/v1/big.bin")], "big.bin", nil),
            (["sha256sum", f.path("data/v2/other.bin")], "other.bin", nil),
            (["sha256sum", f.path("data/v2/labels.csv")], "labels.csv", nil),
            (["dd", "if=" + f.path("data/v2/big.bin"), "of=" + f.scratch + "/big.copy", "bs=65536", "status=none"], "big.bin", f.scratch + "/big.copy"),
            (["dd", "if=" + f.path("data/v2/other.bin"), "of=" + f.scratch + "/other.copy", "bs=7777", "status=none"], "other.bin", f.scratch + "/other.copy"),
            (["dd", "if=" + f.path("data/v1/labels.csv"), "of=" + f.scratch + "/labels.copy", "bs=1M", "status=none"], "labels.csv", f.scratch + "/labels.copy"),
        ]
        let children = try jobs.map { try f.start($0.argv) }
        let results = children.map { $0.wait(timeout: 40) { f.abortConnection() } }
        for (job, result) in zip(jobs, results) {
            #expect(result.succeeded, "\(result)")
            let expected = data.v2.files[job.rel]!.bytes
            if let output = job.output {
                let copy = FileManager.default.contents(atPath: output) ?? Data()
                #expect(sameBytes(copy, expected), "\(job.argv.joined(separator: " ")): \(firstDifference([UInt8](copy), expected))")
            } else {
                #expect(result.out.hasPrefix(sha256Hex(expected) + " "), "\(result)")
            }
        }
        try f.unmount()
    }
}
