import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Workspace commit")
struct CommitTests {
    @Test("commit refuses while a file is open for writing (naming it) and succeeds once it is closed")
    func refusesOpenWriters() throws {
        let fx = try WSFixture("commit-writers")
        defer { fx.close() }
        let (v, ws) = try fx.mountedWorkspace(bigSize: 500_000)

        // A new file at the top, held open for writing.
        let fd = try fx.io("open held.bin") { () -> Int32 in
            let fd = Glibc.open(ws + "/held.bin", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SysError(op: "open", path: ws + "/held.bin", code: errno) }
            #expect(pwriteFully(fd, randomBytes(100_000, seed: 1), offset: 0) == 100_000)
            return fd
        }
        try writeFile(fx.local + "/held.bin", randomBytes(100_000, seed: 1))
        let refused = fx.commit("data/ws")
        #expect(refused.exitCode != 0 && !refused.timedOut, "commit with held.bin open for writing: \(refused)")
        #expect((refused.err + refused.out).contains("held.bin"), "the refusal does not name held.bin: \(refused)")
        #expect(try fx.versions().count == 1, "a version was created although commit refused")
        Glibc.close(fd)

        // A base file in a base subdirectory, held open for writing.
        let fd2 = try fx.io("open sub/a.txt") { () -> Int32 in
            let fd = Glibc.open(ws + "/sub/a.txt", O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw SysError(op: "open", path: ws + "/sub/a.txt", code: errno) }
            #expect(Glibc.write(fd, "more\n", 5) == 5)
            return fd
        }
        try appendFile(fx.local + "/sub/a.txt", "more\n")
        let refused2 = fx.commit("data/ws")
        #expect(refused2.exitCode != 0 && !refused2.timedOut, "commit with sub/a.txt open for writing: \(refused2)")
        #expect((refused2.err + refused2.out).contains("sub/a.txt"), "the refusal does not name sub/a.txt: \(refused2)")
        Glibc.close(fd2)

        // A file open read-only does not block a commit.
        let reader = try fx.io("open c.txt read-only") { () -> Int32 in
            let fd = Glibc.open(ws + "/c.txt", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SysError(op: "open", path: ws + "/c.txt", code: errno) }
            return fd
        }
        defer { Glibc.close(reader) }
        let changedReader = try fx.io("open held.bin read-only") { () -> Int32 in
            let fd = Glibc.open(ws + "/held.bin", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SysError(op: "open", path: ws + "/held.bin", code: errno) }
            return fd
        }
        defer { Glibc.close(changedReader) }
        let n = try fx.commitOK("data/ws")
        #expect(n == v + 1)
        try expectSameTree(try fx.export("data@v\(n)"), fx.local, "export of the commit made after the writers closed")
        #expect(try fx.workspaceNames().isEmpty, "the workspace is still listed after a commit without --keep")

        // The running mount shows the new version and no longer the workspace (once the kernel's 1 s entry
        // cache has expired); descriptors opened in the workspace before the commit still read what they read
        // before, like descriptors of an unlinked file.
        usleep(1_200_000)
        try fx.io("the mount after the commit") {
            try expectSameTree(fx.mnt + "/data/v\(n)", fx.local, "v\(n) read through the running mount", directoryModes: false)
            #expect(try readLink(fx.mnt + "/data/latest") == "v\(n)")
            #expect(!exists(ws), "\(ws) still exists after the workspace was committed without --keep")
            #expect(try listDirectory(fx.mnt + "/data/workspaces") == [])
            let cText = try readAll(fx.local + "/c.txt")
            let (n1, bytes1) = preadFully(reader, count: 20_000, offset: 0)
            #expect(n1 == 10_000 && bytes1 == cText,
                    "read through a descriptor opened on c.txt before the commit: \(n1 < 0 ? errnoName(errno) : "\(n1) bytes")")
            let (n2, bytes2) = preadFully(changedReader, count: 200_000, offset: 0)
            #expect(n2 == 100_000 && bytes2 == randomBytes(100_000, seed: 1),
                    "read through a descriptor opened on the new held.bin before the commit: \(n2 < 0 ? errnoName(errno) : "\(n2) bytes")")
        }
    }

    @Test("commit refuses a workspace whose base is no longer the latest version; --allow-diverge commits with parent = base")
    func divergence() throws {
        let fx = try WSFixture("commit-diverge")
        defer { fx.close() }
        let (v1, ws) = try fx.mountedWorkspace(bigSize: 500_000)
        try fx.io("edits") { try onBoth([ws, fx.local]) { try typicalEdits($0) } }

        try writeFile(fx.src + "/other.txt", Array("v2 only".utf8))
        let v2 = try fx.importVersion()
        #expect(v2 == v1 + 1)

        let refused = fx.commit("data/ws")
        let message = refused.err + refused.out
        #expect(refused.exitCode != 0 && !refused.timedOut, "commit of a workspace based on v\(v1) after v\(v2) exists: \(refused)")
        #expect(message.contains("v\(v1)") && message.contains("v\(v2)"), "the refusal must name both v\(v1) and v\(v2): \(refused)")
        #expect(try fx.versions().count == 2)
        try fx.io("workspace after the refusal") { try expectSameTree(ws, fx.local, "workspace after a refused commit") }

        let v3 = try fx.commitOK("data/ws", ["--allow-diverge"])
        #expect(v3 == v2 + 1)
        let info = try fx.version(v3)
        #expect(info["parent"] as? Int == v1, "parent of the diverging commit: \(String(describing: info["parent"])), expected \(v1)")
        try expectSameTree(try fx.export("data@v\(v3)"), fx.local, "export of the --allow-diverge commit")
        try fx.verifyOK()
    }

    @Test("two workspaces of the same asset are isolated from each other")
    func isolation() throws {
        let fx = try WSFixture("commit-isolation")
        defer { fx.close() }
        try buildSmallBase(fx.src, bigSize: 500_000)
        let localA = fx.root + "/localA", localB = fx.root + "/localB"
        try buildSmallBase(localA, bigSize: 500_000)
        try buildSmallBase(localB, bigSize: 500_000)
        let v = try fx.importVersion()
        try fx.mount()
        let a = try fx.createWorkspace("a", from: v)
        let b = try fx.createWorkspace("b", from: v)

        try fx.io("edits in a") {
            try onBoth([a, localA]) { root in
                try patchFile(root + "/c.txt", Array("changed in a".utf8), at: 0)
                try writeFile(root + "/a-only.txt", Array("a".utf8))
                try sysCheck("unlink", root + "/sub/a.txt", unlink(root + "/sub/a.txt"))
                try sysCheck("mkdir", root + "/adir", mkdir(root + "/adir", 0o755))
                try patchFile(root + "/sub/deep/d.bin", Array("A".utf8), at: 0)
            }
        }
        try fx.io("b is untouched by a") { try expectSameTree(b, fx.src, "workspace b after edits in a") }
        try fx.io("edits in b") {
            try onBoth([b, localB]) { root in
                try writeFile(root + "/b-only.txt", Array("b".utf8))
                try appendFile(root + "/sub/a.txt", "b was here\n")
                try sysCheck("truncate", root + "/big.bin", truncate(root + "/big.bin", 1_000))
            }
        }
        try fx.io("compare both") {
            try expectSameTree(a, localA, "workspace a")
            try expectSameTree(b, localB, "workspace b")
        }
        let va = try fx.commitOK("data/a")
        try fx.io("b after a's commit") { try expectSameTree(b, localB, "workspace b after a was committed") }
        let vb = try fx.commitOK("data/b", ["--allow-diverge"])
        try expectSameTree(try fx.export("data@v\(va)"), localA, "export of a's commit")
        try expectSameTree(try fx.export("data@v\(vb)"), localB, "export of b's commit")
        try expectSameTree(try fx.export("data@v\(v)"), fx.src, "export of the base version")
    }

    @Test("FIFOs, sockets and device nodes live in a workspace; commit skips each with the warning import gives, and the version holds the rest")
    func specialFilesCommit() throws {
        let fx = try WSFixture("special-commit")
        defer { fx.close() }
        try buildSmallBase(fx.src, bigSize: 200_000)
        let v = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v)
        try fx.io("make special files and a plain one") {
            try sysCheck("mkfifo", ws + "/pipe", mkfifo(ws + "/pipe", 0o644))
            try sysCheck("mknod c", ws + "/sub/null-ish", mknod(ws + "/sub/null-ish", S_IFCHR | 0o600, devMake(1, 3)))
            try sysCheck("mknod b", ws + "/loop-ish", mknod(ws + "/loop-ish", S_IFBLK | 0o600, devMake(7, 200)))
            try sysCheck("mknod s", ws + "/sock", mknod(ws + "/sock", S_IFSOCK | 0o600, 0))
            try appendFile(ws + "/c.txt", "kept\n")
            var st = stat()
            try sysCheck("stat", ws + "/sub/null-ish", lstat(ws + "/sub/null-ish", &st))
            #expect(st.st_mode & S_IFMT == S_IFCHR && devMajor(st.st_rdev) == 1 && devMinor(st.st_rdev) == 3)
            try sysCheck("stat", ws + "/pipe", lstat(ws + "/pipe", &st))
            #expect(st.st_mode & S_IFMT == S_IFIFO && st.st_mode & 0o7777 == 0o644)
        }
        let r = fx.commit("data/ws")
        #expect(r.succeeded, "\(r)")
        let warnings = r.errLines.filter { $0.hasPrefix("warning: skipped ") }.sorted()
        #expect(warnings == [
            "warning: skipped block device data/ws/loop-ish: only files, directories and symlinks are stored",
            "warning: skipped character device data/ws/sub/null-ish: only files, directories and symlinks are stored",
            "warning: skipped fifo data/ws/pipe: only files, directories and symlinks are stored",
            "warning: skipped socket data/ws/sock: only files, directories and symlinks are stored",
        ], "\(r)")
        let committed = try WSFixture.parseVersion(r, asset: "data")
        let count = try fx.versions().count
        #expect(committed == v + 1 && count == 2)
        try appendFile(fx.src + "/c.txt", "kept\n")
        try fx.io("the committed version") {
            try expectSameTree(fx.mnt + "/data/v\(committed)", fx.src, "the version committed from a workspace with special files", directoryModes: false)
        }
        try fx.verifyOK()
    }

    @Test("workspace status lists added, modified and deleted paths; discard removes the workspace everywhere")
    func statusAndDiscard() throws {
        let fx = try WSFixture("status-discard")
        defer { fx.close() }
        try buildSmallBase(fx.src, bigSize: 500_000)
        let v = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v)
        let other = try fx.createWorkspace("other", from: v)
        try fx.io("edits") { try typicalEdits(ws) }
        let r = try fx.cliOK(["workspace", "status", "data/ws", "--json"])
        let list = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]], "status --json: \(r)")
        let got = Set(list.map { "\($0["kind"] as? String ?? "?") \($0["path"] as? String ?? "?")" })
        let expected: Set = ["added new.bin", "added newdir/", "added newdir/c.txt", "deleted c.txt", "modified big.bin",
                             "modified sub/a.txt", "modified sub/deep/d.bin"]
        #expect(got == expected, "workspace status --json: missing \(expected.subtracting(got).sorted()), unexpected \(got.subtracting(expected).sorted())")
        let clean = try fx.cliOK(["workspace", "status", "data/other", "--json"])
        #expect((try JSONSerialization.jsonObject(with: clean.stdout) as? [Any])?.isEmpty == true, "status of an untouched workspace: \(clean)")

        let discarded = try fx.cliOK(["workspace", "discard", "data/ws"])
        #expect(discarded.succeeded)
        #expect(try fx.workspaceNames() == ["other"])
        usleep(1_200_000)  // the kernel's entry cache of the workspace directory (1 s)
        try fx.io("the mount after discard") {
            #expect(!exists(ws), "\(ws) is still visible after discard")
            #expect(try listDirectory(fx.mnt + "/data/workspaces") == ["other"])
            try expectSameTree(other, fx.src, "the other workspace after a discard")
            try expectSameTree(fx.mnt + "/data/v\(v)", fx.src, "the base version after a discard", directoryModes: false)
        }
        let again = fx.cli(["workspace", "status", "data/ws"])
        #expect(again.exitCode != 0 && !again.timedOut, "status of a discarded workspace: \(again)")
        #expect(try fx.versions().count == 1)
        try fx.verifyOK()
    }

    @Test("commit --keep keeps the workspace usable on top of the new version, and a later commit works", arguments: StoreBackend.allCases)
    func keep(backend: StoreBackend) throws {
        let fx = try WSFixture("commit-keep-\(backend)", backend: backend)
        defer { fx.close() }
        let (v1, ws) = try fx.mountedWorkspace(bigSize: 500_000)
        try fx.io("first edits") { try onBoth([ws, fx.local]) { try typicalEdits($0) } }

        let v2 = try fx.commitOK("data/ws", ["--keep", "--tag", "kept"])
        #expect(try fx.workspaceNames() == ["ws"], "the workspace is gone after commit --keep")
        #expect(try fx.version(v2)["tags"] as? [String] == ["kept"], "tags of the version committed with --tag kept")
        #expect(try fx.version(v2)["parent"] as? Int == v1)
        usleep(1_200_000)  // tags are re-read with a 1 s cache
        let tagTarget = try fx.io("readlink of the tag") { try readLink(fx.mnt + "/data/kept") }
        #expect(tagTarget == "v\(v2)", "MNT/data/kept -> \(tagTarget), expected v\(v2)")
        try expectSameTree(try fx.export("data@v\(v2)"), fx.local, "export of the --keep commit")
        try fx.io("workspace after --keep") { try expectSameTree(ws, fx.local, "workspace after commit --keep") }
        let status = fx.cli(["workspace", "status", "data/ws", "--json"])
        let changes = (try? JSONSerialization.jsonObject(with: status.stdout)) as? [Any]
        #expect(status.succeeded && changes?.isEmpty == true,
                "after commit --keep the workspace sits on v\(v2) with no changes of its own, but status says: \(status)")

        try fx.io("second edits") {
            try onBoth([ws, fx.local]) { root in
                try patchFile(root + "/new.bin", randomBytes(5_000, seed: 77), at: 999_000)
                try appendFile(root + "/sub/a.txt", "second round\n")
                try writeFile(root + "/newdir/second.txt", Array("two".utf8))
                try sysCheck("rename", root + "/sub/deep", rename(root + "/sub/deep", root + "/deep-moved"))
            }
        }
        let v3 = try fx.commitOK("data/ws")
        #expect(v3 == v2 + 1)
        #expect(try fx.version(v3)["parent"] as? Int == v2)
        try expectSameTree(try fx.export("data@v\(v3)"), fx.local, "export of the commit after --keep")
        #expect(try fx.workspaceNames().isEmpty)
        try fx.verifyOK()
    }

    @Test("a 4 KiB edit of an 8 MB file stores less than 1 MiB of new bytes", arguments: StoreBackend.allCases)
    func smallEditIsCheap(backend: StoreBackend) throws {
        let fx = try WSFixture("commit-dedup-\(backend)", backend: backend)
        defer { fx.close() }
        try writeFile(fx.src + "/big8.bin", randomBytes(8_000_000, seed: 88))
        try writeFile(fx.local + "/big8.bin", randomBytes(8_000_000, seed: 88))
        let v1 = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v1)
        let edit = randomBytes(4_096, seed: 89)
        try fx.io("4 KiB edit") { try onBoth([ws, fx.local]) { try patchFile($0 + "/big8.bin", edit, at: 4_000_000) } }
        let v2 = try fx.commitOK("data/ws")
        let newBytes = try fx.version(v2)["newBytes"] as? Int
        #expect(newBytes != nil && newBytes! < 1 << 20, "v\(v2) after a 4 KiB edit of an 8 MB file has newBytes \(String(describing: newBytes)), expected < 1 MiB (2 x the 512 KiB average chunk)")
        try expectSameTree(try fx.export("data@v\(v2)"), fx.local, "export after the 4 KiB edit")
    }
}
