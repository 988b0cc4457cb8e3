import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reports where two recordings differ, line by line (at most a few lines, then counts).
func recordDifferences(_ what: String, local: [String], workspace: [String]) {
    guard local != workspace else { return }
    var report = ["\(what): the workspace behaved differently from a local directory"]
    var shown = 0
    for i in 0..<max(local.count, workspace.count) {
        let l = i < local.count ? local[i] : "(nothing)"
        let w = i < workspace.count ? workspace[i] : "(nothing)"
        if l != w {
            if shown < 8 { report.append("  step \(i + 1):\n    local:     \(l)\n    workspace: \(w)") }
            shown += 1
        }
    }
    if shown > 8 { report.append("  ... and \(shown - 8) more differing steps") }
    report.append("  full workspace recording:\n    " + workspace.joined(separator: "\n    "))
    Issue.record(Comment(rawValue: report.joined(separator: "\n")))
}

/// `path: stat` for every entry below `root` (the top directory excluded), sorted by path.
func statLines(_ root: String) throws -> [String] {
    try walkTree(root).keys.sorted().map { rel in
        let st = try lstatPath(root + "/" + rel)
        return "\(rel): " + Recorder.describe(st, extended: true)
    }
}

@Suite("Workspace POSIX behaviour")
struct POSIXBehaviourTests {
    /// The same list of system calls against a local directory and a workspace of the same start tree.
    @Test("workspace behaves like a local directory", arguments: POSIXCases.names)
    func sameAsLocal(_ caseName: String) throws {
        let c = try #require(POSIXCases.named(caseName))
        let fx = try WSFixture("posix-\(caseName)", backstop: 60)
        defer { fx.close() }
        try buildStartTree(fx.src, numpy: c.numpy)
        try buildStartTree(fx.local, numpy: c.numpy)
        let v = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v)

        let spawn: ([String]) -> ProcessResult = { argv in fx.run(argv, timeout: 40) }
        // The start trees must look the same before anything runs (otherwise every step would differ).
        let before = try fx.io("walk the fresh workspace") { try compareTrees(got: ws, expected: fx.local) }
        #expect(before.isEmpty, "fresh workspace differs from the source tree: \(before.joined(separator: "; "))")

        let localRecorder = Recorder(root: fx.local, spawn: spawn)
        c.body(localRecorder)
        let wsRecorder = Recorder(root: ws, spawn: spawn)
        fx.io("case \(caseName) in the workspace", seconds: 45) { c.body(wsRecorder) }
        recordDifferences("case \(caseName)", local: localRecorder.lines, workspace: wsRecorder.lines)

        // Once the kernel's 1 s caches have expired, every entry (but the top directory) answers the same
        // stat from the daemon itself: type, size, mode, link count.
        usleep(1_200_000)
        let localStats = try statLines(fx.local)
        let wsStats = try fx.io("stat every entry after the case") { try statLines(ws) }
        recordDifferences("case \(caseName), stat of every entry after the case", local: localStats, workspace: wsStats)

        // And the trees the two runs left behind are the same, byte for byte.
        let after = try fx.io("compare trees after the case") { try compareTrees(got: ws, expected: fx.local) }
        #expect(after.isEmpty, "after case \(caseName) the workspace tree differs from the local one:\n\(after.joined(separator: "\n"))")
    }

    /// Writes into version paths answer EROFS; nothing changes there.
    @Test("writes into version paths fail with EROFS")
    func versionPathsAreReadOnly() throws {
        let fx = try WSFixture("erofs", backstop: 60)
        defer { fx.close() }
        try buildStartTree(fx.src)
        let v = try fx.importVersion()
        try fx.mount()
        try fx.createWorkspace("ws", from: v)
        let v1 = "\(fx.mnt)/data/v\(v)"
        let before = try fx.io("walk v1") { try walkTree(v1) }

        fx.io("write attempts in v1") {
            func expectErrno(_ what: String, _ expected: Int32, _ body: () -> Int) {
                errno = 0
                let r = body()
                let e = errno
                #expect(r < 0 && e == expected, "\(what): got \(r < 0 ? errnoName(e) : "success (\(r))"), expected \(errnoName(expected))")
            }
            func openErrno(_ rel: String, _ flags: Int32) -> Int {
                let fd = Glibc.open(v1 + "/" + rel, flags | O_CLOEXEC, 0o644)
                if fd >= 0 { Glibc.close(fd); return Int(fd) }
                return -1
            }
            expectErrno("open(v1/base.txt, O_WRONLY)", EROFS) { openErrno("base.txt", O_WRONLY) }
            expectErrno("open(v1/base.txt, O_RDWR)", EROFS) { openErrno("base.txt", O_RDWR) }
            expectErrno("open(v1/base.txt, O_WRONLY|O_TRUNC)", EROFS) { openErrno("base.txt", O_WRONLY | O_TRUNC) }
            expectErrno("open(v1/new.txt, O_CREAT)", EROFS) { openErrno("new.txt", O_CREAT | O_WRONLY) }
            expectErrno("open(v1/dir/new.txt, O_CREAT|O_EXCL)", EROFS) { openErrno("dir/new.txt", O_CREAT | O_EXCL | O_RDWR) }
            expectErrno("truncate(v1/big.bin)", EROFS) { Int(truncate(v1 + "/big.bin", 10)) }
            expectErrno("mkdir(v1/newdir)", EROFS) { Int(mkdir(v1 + "/newdir", 0o755)) }
            expectErrno("rmdir(v1/empty)", EROFS) { Int(rmdir(v1 + "/empty")) }
            expectErrno("unlink(v1/base.txt)", EROFS) { Int(unlink(v1 + "/base.txt")) }
            expectErrno("rename(v1/base.txt, v1/other.txt)", EROFS) { Int(rename(v1 + "/base.txt", v1 + "/other.txt")) }
            expectErrno("rename(v1/dir, v1/full/dir)", EROFS) { Int(rename(v1 + "/dir", v1 + "/full/dir")) }
            expectErrno("symlink(x, v1/link)", EROFS) { Int(symlink("x", v1 + "/link")) }
            expectErrno("link(v1/base.txt, v1/hl)", EROFS) { Int(link(v1 + "/base.txt", v1 + "/hl")) }
            expectErrno("chmod(v1/base.txt)", EROFS) { Int(chmod(v1 + "/base.txt", 0o600)) }
            expectErrno("chown(v1/base.txt)", EROFS) { Int(chown(v1 + "/base.txt", 1, 1)) }
            var times = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
            expectErrno("utimensat(v1/base.txt)", EROFS) { Int(utimensat(AT_FDCWD, v1 + "/base.txt", &times, 0)) }
            expectErrno("setxattr(v1/base.txt, user.x)", EROFS) { Int(sysSetxattr(v1 + "/base.txt", "user.x", [1], 0)) }
            expectErrno("removexattr(v1/base.txt, user.assetfs.sha256)", EROFS) { Int(sysRemovexattr(v1 + "/base.txt", "user.assetfs.sha256")) }
            expectErrno("open(latest/base.txt, O_WRONLY)", EROFS) { Int(Glibc.open("\(fx.mnt)/data/latest/base.txt", O_WRONLY | O_CLOEXEC)) }
            // A writable descriptor can never be had, so a read-only one must refuse writes too.
            let fd = Glibc.open(v1 + "/base.txt", O_RDONLY | O_CLOEXEC)
            #expect(fd >= 0)
            if fd >= 0 {
                expectErrno("write on a read-only descriptor of a version file", EBADF) { Glibc.write(fd, "x", 1) }
                Glibc.close(fd)
            }
        }
        let after = try fx.io("walk v1 again") { try walkTree(v1) }
        #expect(after == before, "v1 changed after refused writes")
        let problems = try fx.io("compare v1 with the source") { try compareTrees(got: v1, expected: fx.src, directoryModes: false) }
        #expect(problems.isEmpty, "v1 differs from its source: \(problems)")
    }

    /// Renames and links between two workspaces of one asset are like crossing file systems (EXDEV); into a
    /// version they fail (EROFS or EXDEV). The source stays intact either way.
    @Test("rename across workspaces gives EXDEV, into a version fails; sources stay intact")
    func crossWorkspaceRename() throws {
        let fx = try WSFixture("exdev", backstop: 60)
        defer { fx.close() }
        try buildStartTree(fx.src)
        let v = try fx.importVersion()
        try fx.mount()
        let a = try fx.createWorkspace("a", from: v)
        let b = try fx.createWorkspace("b", from: v)
        let v1 = "\(fx.mnt)/data/v\(v)"
        let base = try readAll(fx.src + "/base.txt")

        try fx.io("cross-workspace renames") {
            // A file with changes of its own, so an EXDEV must not lose them.
            try writeFile(a + "/mine.txt", Array("only in a".utf8))
            func attempt(_ what: String, _ allowed: Set<Int32>, _ body: () -> Int32) {
                errno = 0
                let r = body()
                let e = errno
                #expect(r != 0 && allowed.contains(e),
                        "\(what): got \(r == 0 ? "success" : errnoName(e)), expected \(allowed.map(errnoName).sorted().joined(separator: " or "))")
            }
            attempt("rename(a/base.txt, b/moved.txt)", [EXDEV]) { rename(a + "/base.txt", b + "/moved.txt") }
            attempt("rename(a/mine.txt, b/mine.txt)", [EXDEV]) { rename(a + "/mine.txt", b + "/mine.txt") }
            attempt("rename(a/dir, b/dir2)", [EXDEV]) { rename(a + "/dir", b + "/dir2") }
            attempt("rename(a/base.txt, b/dir/base.txt)", [EXDEV]) { rename(a + "/base.txt", b + "/dir/base.txt") }
            attempt("rename(a/base.txt, b/base.txt) (replacing)", [EXDEV]) { rename(a + "/base.txt", b + "/base.txt") }
            attempt("link(a/base.txt, b/hl)", [EXDEV]) { link(a + "/base.txt", b + "/hl") }
            attempt("rename(a/base.txt, v1/x)", [EROFS, EXDEV]) { rename(a + "/base.txt", v1 + "/x") }
            attempt("rename(a/mine.txt, v1/dir/x)", [EROFS, EXDEV]) { rename(a + "/mine.txt", v1 + "/dir/x") }
            attempt("rename(a/dir, v1/full/d)", [EROFS, EXDEV]) { rename(a + "/dir", v1 + "/full/d") }
            attempt("rename(v1/base.txt, a/from-version)", [EROFS, EXDEV]) { rename(v1 + "/base.txt", a + "/from-version") }
            attempt("link(v1/base.txt, a/hl)", [EROFS, EXDEV]) { link(v1 + "/base.txt", a + "/hl") }
            attempt("rename(a/base.txt, MNT/data/x)", [EROFS, EXDEV]) { rename(a + "/base.txt", fx.mnt + "/data/x") }

            #expect(try readAll(a + "/base.txt") == base, "a/base.txt changed by failed renames")
            #expect(try readAll(a + "/mine.txt") == Array("only in a".utf8))
            #expect(try readAll(a + "/dir/inner.txt") == Array("inner file\n".utf8))
            #expect(try listDirectory(b) == ["base.txt", "big.bin", "dir", "empty", "exec.sh", "full"], "b after failed renames")
            #expect(!exists(b + "/moved.txt") && !exists(b + "/hl") && !exists(b + "/dir2"))
            #expect(try readAll(b + "/base.txt") == base)
            #expect(!exists(a + "/from-version") && !exists(a + "/hl"))
            #expect(try readAll(v1 + "/base.txt") == base)
        }
        let problems = try fx.io("compare b with the source") { try compareTrees(got: b, expected: fx.src) }
        #expect(problems.isEmpty, "workspace b differs from its base: \(problems)")
    }
}
