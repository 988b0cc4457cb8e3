import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Versions-only mount (-o ro)")
struct VersionsOnlyTests {
    @Test("-o ro: a read-only kernel mount without workspaces; files opened by the kernel alone read every byte right", arguments: StoreBackend.allCases)
    func readOnlyMount(backend: StoreBackend) throws {
        let f = try MountFixture("versions-only-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        // A workspace exists in the store: a versions-only mount must not show it.
        _ = try f.cliOK(["workspace", "create", "data", "hidden", "--from", "v1"])
        _ = try f.mount(options: ["ro"])

        let line = try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n")
            .first { $0.split(separator: " ").dropFirst().first.map(String.init) == f.mnt }
        let options = line.map { $0.split(separator: " ")[3].split(separator: ",").map(String.init) } ?? []
        #expect(options.contains("ro"), "mount options of \(f.mnt): \(options)")
        #expect(options.contains("nosuid") && options.contains("nodev"), "mount options: \(options)")

        let names = try f.io("list data") { try FileManager.default.contentsOfDirectory(atPath: f.path("data")).sorted() }
        #expect(!names.contains("workspaces"), "versions-only listing of data/: \(names)")
        #expect(names.contains("v1") && names.contains("v2") && names.contains("latest"), "listing of data/: \(names)")
        var st = stat()
        let rc = f.io("stat workspaces") { stat(f.path("data/workspaces"), &st) }
        #expect(rc == -1 && errno == ENOENT, "stat data/workspaces: rc \(rc)")

        // Every file of both versions, twice (the second time from the page cache the kernel kept).
        for pass in 1...2 {
            for (version, expected) in [("v1", data.v1), ("v2", data.v2)] {
                for (rel, file) in expected.files.sorted(by: { $0.key < $1.key }) {
                    let got = try f.io("read \(version)/\(rel)") { try readAll(f.path("data/\(version)/\(rel)")) }
                    #expect(sameBytes(got, file.bytes), "pass \(pass), data/\(version)/\(rel): \(firstDifference(got, file.bytes))")
                }
            }
        }
        // Random unaligned preads with O_DIRECT: each reaches the daemon, without a handle, at its exact offset.
        let big = data.v2.files["big.bin"]!.bytes
        var rng = SplitMix64(seed: 7)
        let fd = f.io("open big.bin O_DIRECT") { Glibc.open(f.path("data/v1/big.bin"), O_RDONLY | O_DIRECT_FLAG | O_CLOEXEC) }
        #expect(fd >= 0, "open O_DIRECT: errno \(errno)")
        defer { if fd >= 0 { Glibc.close(fd) } }
        for _ in 0..<(fd >= 0 ? 100 : 0) {
            let offset = Int(rng.next() % UInt64(big.count))
            let length = 1 + Int(rng.next() % 200_000)
            var buffer = [UInt8](repeating: 0, count: length)
            let n = f.io("pread \(length) @ \(offset)") { buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) } }
            let expected = Array(big[offset..<min(big.count, offset + length)])
            #expect(n == expected.count && Array(buffer.prefix(max(n, 0))) == expected, "pread \(length) @ \(offset): \(n) bytes")
        }

        // The kernel refuses writes itself: EROFS, before anything reaches the daemon.
        let file = f.path("data/v2/small.txt")
        for (what, flags) in [("O_WRONLY", O_WRONLY), ("O_RDWR", O_RDWR), ("O_CREAT new file", O_CREAT | O_WRONLY)] {
            let path = flags & O_CREAT != 0 ? f.path("data/v2/new.txt") : file
            let (fd, code) = f.io("open \(what)") { () -> (Int32, Int32) in
                let fd = Glibc.open(path, flags | O_CLOEXEC, 0o644)
                let code = errno
                if fd >= 0 { Glibc.close(fd) }
                return (fd, code)
            }
            #expect(fd == -1 && code == EROFS, "open \(what): fd \(fd), errno \(code)")
        }
        let (mk, mkErr) = f.io("mkdir") { (mkdir(f.path("data/v2/d"), 0o755), errno) }
        #expect(mk == -1 && mkErr == EROFS, "mkdir: rc \(mk) errno \(mkErr)")

        // Proof that opens no longer reach the daemon: with the daemon stopped, a file read before (its entry,
        // attributes and pages cached) still opens, reads and closes. On a default mount the open would wait.
        let pid = try #require(f.daemonPID)
        let small = data.v2.files["small.txt"]!.bytes
        #expect(stopProcess(pid), "daemon \(pid) should stop")
        let again = try? f.io("open, read and close with the daemon stopped", seconds: 5) { try readAll(f.path("data/v2/small.txt")) }
        kill(pid, SIGCONT)
        #expect(again.map { sameBytes($0, small) } == true, "read of a cached file with the daemon stopped")

        // xattrs still answer on kernel-opened files.
        let xattr = try f.io("getxattr") { try getXattr(f.path("data/v2/big.bin"), "user.assetfs.sha256") }
        #expect(String(decoding: xattr, as: UTF8.self) == sha256Hex(big))
    }

    @Test("an unknown mount option is refused with the list of supported ones")
    func unknownOption() throws {
        let f = try MountFixture("versions-only-bad-option")
        defer { f.close() }
        let r = f.cli(["mount", f.mnt, "-o", "ro,bogus"])
        #expect(r.exitCode == 2, "\(r)")
        #expect(r.err.contains("unknown mount option 'bogus' (supported: allow_other, ro)"), "\(r)")
    }
}
