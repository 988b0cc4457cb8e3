import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Containers and other users")
struct ContainerTests {
    static let bwrap = "/usr/bin/bwrap"
    static let setpriv = "/usr/bin/setpriv"

    /// A fixture whose directory other users can traverse (mkdtemp makes it 0700).
    private func openFixture(_ name: String) throws -> (MountFixture, StandardData) {
        let f = try MountFixture(name)
        chmod(f.root, 0o755)
        chmod(f.mnt, 0o755)
        do {
            return (f, try StandardData.create(in: f))
        } catch {
            f.close()
            throw error
        }
    }

    @Test("bwrap with a version bind-mounted read-only at /data sees the same bytes")
    func bubblewrap() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.bwrap) else {
            throw TestFailure("bwrap is not installed: apt-get install bubblewrap")
        }
        let (f, data) = try openFixture("bwrap")
        defer { f.close() }
        try f.mount()
        let files = ["big.bin", "other.bin", "labels.csv", "sub/deep/table.csv"]
        let r = f.run([Self.bwrap, "--ro-bind", f.path("data/v2"), "/data",
                       "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                       "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--proc", "/proc", "--dev", "/dev",
                       "--unshare-pid", "--die-with-parent",
                       "sh", "-c", "cd /data && sha256sum \(files.joined(separator: " ")) && ls /data/sub && (echo x > /data/new 2>/dev/null && echo WROTE || echo READONLY)"],
                      timeout: 60)
        #expect(r.succeeded, "\(r)")
        for rel in files {
            #expect(r.out.contains("\(sha256Hex(data.v2.files[rel]!.bytes))  \(rel)"), "bwrap sha256sum of /data/\(rel): \(r)")
        }
        #expect(r.out.contains("new.txt") && r.out.contains("deep"), "ls /data/sub inside bwrap: \(r)")
        #expect(r.out.contains("READONLY") && !r.out.contains("WROTE"), "writing into /data inside bwrap must fail: \(r)")
        try f.unmount()
    }

    @Test("with -o allow_other a non-root uid reads the files; default_permissions enforces modes")
    func allowOther() throws {
        let (f, data) = try openFixture("allowother")
        defer { f.close() }
        try f.mount(options: ["allow_other"])
        let line = MountInfo.line(of: f.mnt) ?? ""
        #expect(line.contains("allow_other") && line.contains("default_permissions"), "mount options: \(line)")

        let asUser = [Self.setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups"]
        let sum = f.run(asUser + ["sha256sum", f.path("data/v2/big.bin"), f.path("data/latest/other.bin")])
        #expect(sum.succeeded, "\(sum)")
        #expect(sum.out.contains(sha256Hex(data.v2.files["big.bin"]!.bytes)), "\(sum)")
        #expect(sum.out.contains(sha256Hex(data.v2.files["other.bin"]!.bytes)), "\(sum)")
        let cat = f.run(asUser + ["cat", f.path("data/v2/sub/notes.md")])
        #expect(cat.succeeded && sameBytes(cat.stdout, data.v2.files["sub/notes.md"]!.bytes), "\(cat)")
        let ls = f.run(asUser + ["ls", f.path("data")])
        #expect(ls.succeeded && ls.out.contains("latest"), "\(ls)")

        // small.txt is 0640 root:root and meta/ is 0750: uid 1000 is refused by the kernel's mode checks.
        let denied = f.run(asUser + ["cat", f.path("data/v2/small.txt")])
        #expect(!denied.succeeded && denied.err.contains("Permission denied"), "0640 file as uid 1000: \(denied)")
        let deniedDir = f.run(asUser + ["ls", f.path("data/v2/meta")])
        #expect(!deniedDir.succeeded && deniedDir.err.contains("Permission denied"), "0750 dir as uid 1000: \(deniedDir)")
        // Writes are still refused.
        let write = f.run(asUser + ["sh", "-c", "echo x > '\(f.path("data/v2/new.txt"))'"])
        #expect(!write.succeeded, "\(write)")
        try f.unmount()
    }

    @Test("without allow_other a non-root uid is refused (EACCES)")
    func withoutAllowOther() throws {
        let (f, data) = try openFixture("noallowother")
        defer { f.close() }
        try f.mount()
        let asUser = [Self.setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups"]
        let cat = f.run(asUser + ["cat", f.path("data/v2/big.bin")])
        #expect(!cat.succeeded, "uid 1000 must not read without allow_other: \(cat.exitCode.map(String.init) ?? "?")")
        #expect(cat.err.contains("Permission denied") || cat.err.contains("Operation not permitted"), "\(cat)")
        let stat = f.run(asUser + ["stat", f.mnt])
        #expect(!stat.succeeded && stat.err.contains("Permission denied"), "\(stat)")
        // Root (the mounter) still reads.
        let mine = try f.io("root reads") { try readAll(f.path("data/v2/sub/notes.md")) }
        #expect(sameBytes(mine, data.v2.files["sub/notes.md"]!.bytes))
        try f.unmount()
    }
}
