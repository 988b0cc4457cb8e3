import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Regression tests for bugs the reliability suite found in workspaces. They fail until the bug is fixed.
extension Reliability {
    @Suite("Workspace edits (found by the daemon-kill test)")
    struct WorkspaceEditTests {
        /// Found by `daemonKills`: an in-place write to an existing file inside a subdirectory of a workspace reads
        /// back through the mount, but `workspace status` says "no changes" and `commit` stores the base bytes.
        /// The same edit to a file at the workspace root is committed correctly.
        @Test("an in-place edit of a base file in a subdirectory is seen by status and kept by commit", arguments: ["top.bin", "sub/dir/deep.bin"])
        func inPlaceEditInSubdirectory(_ rel: String) throws {
            let f = try Fixture("ws-subdir-edit")
            defer { f.close() }
            let original = randomBytes(200_000, seed: 4242)
            try makeTree(f.src, [(rel, original)])
            try f.importVersion()
            try f.cliOK(["workspace", "create", "data", "ws"])
            try f.mount()
            let path = f.mnt + "/data/workspaces/ws/" + rel
            let patch = randomBytes(8192, seed: 4343)
            var expected = original
            expected.replaceSubrange(40_960..<(40_960 + 8192), with: patch)
            try f.io("patch \(rel)") {
                let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
                let n = patch.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 40_960) }
                Glibc.close(fd)
                guard n == patch.count else { throw SysError(op: "pwrite", path: path, code: errno) }
                let back = try readAll(path)
                #expect(sameBytes(back, expected), "the mount reads the edit back: \(firstDifference(back, expected))")
            }
            let status = try f.cliOK(["workspace", "status", "data/ws"])
            #expect(status.out.contains("M  \(rel)"), "workspace status must list the edited \(rel): \(status.out.debugDescription)")
            let commit = try f.cliOK(["commit", "data/ws", "-m", "edit"])
            let n = try #require(parseVersionLine(commit.out, asset: "data"))
            let sig = try f.exportSignature("data@v\(n)")
            let got = sig[rel] ?? "nothing"
            let ok = got.hasSuffix(sha256Hex(expected))
            #expect(ok, "committed v\(n):\(rel) must hold the edited bytes (sha \(sha256Hex(expected).prefix(12))); got \(got) (the base bytes are \(sha256Hex(original).prefix(12)))")
            if !ok && rel.contains("/") {
                Ledger.shared.finding("BUG: an in-place write to an existing base file in a subdirectory of a workspace (e.g. `dd conv=notrunc` into MNT/data/workspaces/ws/sub/f.bin) reads back through the mount, but `assetfs workspace status` reports \"no changes\" and `assetfs commit` stores the base bytes: the edit is silently lost. At the workspace root the same edit is kept. Likely cause: the edited node is persisted but its parent directories get no override, so WorkspaceCommitter reuses the base subtree by id (Sources/AssetRepository/WorkspaceCommitter.swift commitDirectory / WorkspaceOverlay). Reproduce: WorkspaceEditTests/inPlaceEditInSubdirectory(\"sub/dir/deep.bin\")")
            }
            try f.unmount()
        }
    }
}
