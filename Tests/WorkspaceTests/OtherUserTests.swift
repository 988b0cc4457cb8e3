import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The same calls made by uid 1000 in a local directory and in a workspace mounted with `-o allow_other`
/// (which implies default_permissions): sticky and setgid directories, chmod/chown by non-owners, setuid and
/// setgid bits cleared on write. The tree is made by root first (owners 1000 and 1001, groups 1234).
private let script = """
import errno, os, stat as S, sys
root, phase = sys.argv[1], sys.argv[2]
def p(x): return os.path.join(root, x)
def t(name, f):
    try:
        r = f()
        print(name, "=", 0 if r is None else r)
    except OSError as e:
        print(name, "=", errno.errorcode[e.errno])
def st(x):
    try:
        s = os.lstat(p(x))
        return "%s uid=%d gid=%d mode=%o" % ("d" if S.S_ISDIR(s.st_mode) else "f", s.st_uid, s.st_gid, S.S_IMODE(s.st_mode))
    except OSError as e:
        return errno.errorcode[e.errno]
if phase == "setup":
    os.mkdir(p("sticky")); os.chmod(p("sticky"), 0o1777)
    os.mkdir(p("sgid")); os.chown(p("sgid"), 0, 1234); os.chmod(p("sgid"), 0o2777)
    for name, uid in [("sticky/mine", 1000), ("sticky/theirs", 1001), ("sticky/mine2", 1000)]:
        open(p(name), "w").write("x"); os.chown(p(name), uid, uid); os.chmod(p(name), 0o666)
    open(p("suid"), "w").write("#!/bin/sh\\n"); os.chown(p("suid"), 1000, 1000); os.chmod(p("suid"), 0o6777)
    open(p("suid2"), "w").write("x"); os.chown(p("suid2"), 1000, 1000); os.chmod(p("suid2"), 0o6755)
    open(p("other"), "w").write("x"); os.chown(p("other"), 1001, 1001); os.chmod(p("other"), 0o666)
    os.chmod(root, 0o777)
else:
    t("rename own in sticky dir", lambda: os.rename(p("sticky/mine"), p("sticky/mine-moved")))
    print("old name:", st("sticky/mine"), "| new name:", st("sticky/mine-moved"))
    t("rename another's in sticky dir", lambda: os.rename(p("sticky/theirs"), p("sticky/theirs-moved")))
    t("rename own over another's", lambda: os.rename(p("sticky/mine2"), p("sticky/theirs")))
    t("unlink another's in sticky dir", lambda: os.unlink(p("sticky/theirs")))
    t("unlink own in sticky dir", lambda: os.unlink(p("sticky/mine2")))
    t("create in setgid dir", lambda: open(p("sgid/new"), "w").close()); print("sgid/new:", st("sgid/new"))
    t("mkdir in setgid dir", lambda: os.mkdir(p("sgid/newdir"))); print("sgid/newdir:", st("sgid/newdir"))
    t("mknod fifo in setgid dir", lambda: os.mkfifo(p("sgid/newdir/fifo"))); print("sgid/newdir/fifo:", st("sgid/newdir/fifo"))
    t("write to a setuid file", lambda: open(p("suid"), "a").write("more")); print("suid:", st("suid"))
    t("chown own file to 1001", lambda: os.chown(p("suid2"), 1001, -1))
    t("chgrp own file to own group", lambda: os.chown(p("suid2"), -1, 1000)); print("suid2:", st("suid2"))
    t("chmod another's file", lambda: os.chmod(p("other"), 0o600))
    t("chmod g+s, not in the file's group", lambda: os.chmod(p("sgid/new"), 0o2755)); print("sgid/new:", st("sgid/new"))
    t("utime another's file to now", lambda: os.utime(p("other")))
    t("utime another's file to a time", lambda: os.utime(p("other"), (1, 1)))
    t("truncate own setuid file", lambda: os.truncate(p("suid2"), 0)); print("suid2:", st("suid2"))
"""

@Suite("Workspaces as another user")
struct OtherUserTests {
    @Test("uid 1000 gets ext4's answers in a workspace mounted with allow_other: sticky and setgid directories, chmod and chown by non-owners, setuid bits cleared")
    func sameAsLocal() throws {
        let fx = try WSFixture("other-user", backstop: 60)
        defer { fx.close() }
        chmod(fx.root, 0o755)
        chmod(fx.mnt, 0o755)
        try buildSmallBase(fx.src, bigSize: 10_000)
        let v = try fx.importVersion()
        try fx.mount(options: ["allow_other"])
        let ws = try fx.createWorkspace("ws", from: v)
        let local = fx.local + "/t", inWorkspace = ws + "/t"
        try fx.io("make the trees") {
            for dir in [local, inWorkspace] { try sysCheck("mkdir", dir, mkdir(dir, 0o755)) }
        }
        let python = "/usr/bin/python3"  // not a shim under /root, which uid 1000 cannot reach
        var outputs: [String] = []
        for dir in [local, inWorkspace] {
            let setup = fx.run([python, "-c", script, dir, "setup"], timeout: 30)
            #expect(setup.succeeded, "setup in \(dir): \(setup)")
            let run = fx.run(["/usr/bin/setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", python, "-c", script, dir, "run"],
                             timeout: 30)
            #expect(run.succeeded, "as uid 1000 in \(dir): \(run)")
            outputs.append(run.out)
        }
        #expect(outputs[0].contains("rename another's in sticky dir = EPERM") && outputs[0].contains("sgid/new: f uid=1000 gid=1234"),
                "the local run did not exercise the rules: \(outputs[0])")
        recordDifferences("uid 1000", local: outputs[0].split(separator: "\n").map(String.init),
                          workspace: outputs[1].split(separator: "\n").map(String.init))
    }
}

@Suite("Workspace differential tester")
struct DifferentialTests {
    /// Seeds that once found a difference (kept as regression cases), then a bounded run from a fixed seed.
    /// `POSIX_DIFF_SECONDS` and `POSIX_DIFF_SEED` make longer or other runs (`scripts/posix-diff.py` by hand too).
    static let regressionSeeds = [2, 4, 976, 500005]
    /// The same with `--times` (which of atime, mtime and ctime each call changed).
    static let timeRegressionSeeds = [7000, 7014, 7031]

    @Test("seeded random system calls as root and uids 1000 and 1001 answer alike in a local directory and a workspace (scripts/posix-diff.py)")
    func seededCalls() throws {
        let env = ProcessInfo.processInfo.environment
        let seconds = env["POSIX_DIFF_SECONDS"].flatMap(Double.init) ?? 40
        let fx = try WSFixture("posix-diff", backstop: seconds + 120)
        defer { fx.close() }
        chmod(fx.root, 0o755)
        chmod(fx.mnt, 0o755)
        chmod(fx.local, 0o755)
        try writeFile(fx.src + "/base.txt", Array("base\n".utf8), mode: 0o644)
        let v = try fx.importVersion()
        try fx.mount(options: ["allow_other"])
        let ws = try fx.createWorkspace("ws", from: v)
        let tester = Paths.packageRoot + "/scripts/posix-diff.py"
        for seed in Self.regressionSeeds {
            let r = fx.run(["python3", tester, "--seed", "\(seed)", "--ops", "300", fx.local, ws], timeout: 60)
            #expect(r.succeeded && r.out.contains("no difference"), "regression seed \(seed): \(r)")
        }
        for seed in Self.timeRegressionSeeds {
            let r = fx.run(["python3", tester, "--times", "--seed", "\(seed)", "--ops", "200", fx.local, ws], timeout: 60)
            #expect(r.succeeded && r.out.contains("no difference"), "regression seed \(seed) --times: \(r)")
        }
        let start = env["POSIX_DIFF_SEED"] ?? "2000"
        let r = fx.run(["python3", tester, "--seed", start, "--ops", "300", "--seconds", "\(seconds / 2)", fx.local, ws], timeout: seconds + 60)
        #expect(r.succeeded && r.out.contains("no difference"), "\(r)")
        print("posix-diff: \(r.out.trimmingCharacters(in: .whitespacesAndNewlines))")
        let timed = fx.run(["python3", tester, "--times", "--seed", "\(Int(start)! + 100_000)", "--ops", "200", "--seconds", "\(seconds / 2)",
                            fx.local, ws], timeout: seconds + 60)
        #expect(timed.succeeded && timed.out.contains("no difference"), "--times: \(timed)")
        print("posix-diff --times: \(timed.out.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
}
