import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs every example of mount-examples/ (each is `mount-examples/<name>/run.sh ASSETFS WORKDIR`) against the
/// debug binary. Each example makes its own store and mount inside its work dir, checks its own results, and
/// prints `EXAMPLE OK: <name>` as its last line when they are all right.
@Suite("mount-examples")
struct ExamplesTests {
    @Test("training: a pinned version gives the same result twice, another version a different one")
    func training() throws { try runExample("training") }

    @Test("containers: bwrap as root and as uid 1000 (allow_other) sees the host's bytes, read-only")
    func containers() throws { try runExample("containers") }

    @Test("history: ls, diff -r, find -newer, du, getfattr and grep -r over versions")
    func history() throws { try runExample("history") }

    @Test("new-version: workspace, plain edits, status, commit, A/B, promote and roll back")
    func newVersion() throws { try runExample("new-version") }

    @Test("cluster: a shared store (S3 + PostgreSQL) on two nodes: prefetch, byte-identical reads, a new version seen at once")
    func cluster() throws { try runExample("cluster") }

    @Test("boot: mount helper, mount -t fuse.assetfs, fstab line, systemd unit, install/uninstall")
    func boot() throws {
        try runExample("boot") {
            // Only if the script was SIGKILLed before its trap could run: put /sbin back as it was.
            let helper = "/sbin/mount.fuse.assetfs"
            let saved = $0 + "/mount.fuse.assetfs.saved"
            if FileManager.default.fileExists(atPath: saved) {
                _ = try? FileManager.default.removeItem(atPath: helper)
                _ = try? FileManager.default.copyItem(atPath: saved, toPath: helper)
            } else if let installed = FileManager.default.contents(atPath: helper),
                      installed == FileManager.default.contents(atPath: Paths.packageRoot + "/scripts/mount.fuse.assetfs") {
                _ = try? FileManager.default.removeItem(atPath: helper)
            }
        }
    }

    /// Seconds one example may take before its process group is killed; each takes 5-20 s on 2 busy cores.
    /// ASSETFS_EXAMPLE_TIMEOUT overrides it (to try the timeout path).
    static let timeout = ProcessInfo.processInfo.environment["ASSETFS_EXAMPLE_TIMEOUT"].flatMap(Double.init) ?? 180

    /// Runs `mount-examples/<name>/run.sh` with its own mkdtemp work dir; on timeout kills its process group
    /// and lazily unmounts whatever is left under the work dir, then runs `afterTimeout(workDir)`.
    func runExample(_ name: String, afterTimeout: (String) -> Void = { _ in }) throws {
        try Paths.requireBinary()
        let script = "\(Paths.examples)/\(name)/run.sh"
        guard FileManager.default.fileExists(atPath: script) else { throw TestFailure("no example script at \(script)") }
        let base = try makeTemporaryDirectory(name)
        let work = base + "/work"
        let argv = ["/bin/bash", script, Paths.assetfs, work]
        let result = try runScript(argv, logPrefix: base + "/run", timeout: Self.timeout) {
            let left = detachMounts(under: work, logDir: base)
            if !left.isEmpty { Issue.record("still mounted after fusermount3 -u -z: \(left)") }
            afterTimeout(work)
        }
        // The script unmounts in its trap whatever happens; make sure, and never leave a mount behind.
        let leftover = MountInfo.mounts(under: work)
        if !leftover.isEmpty {
            let still = detachMounts(under: work, logDir: base)
            Issue.record("the example left mounts behind: \(leftover)\(still.isEmpty ? "" : "; still mounted: \(still)")")
        }
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let marker = "EXAMPLE OK: \(name)"
        if !result.succeeded {
            Issue.record(Comment(rawValue: "example \(name) failed: " + result.report(argv, keptIn: base)))
        } else if lines.last != marker {
            Issue.record(Comment(rawValue: "example \(name) exited 0 but its last line is not `\(marker)`: " + result.report(argv, keptIn: base)))
        }
        if result.succeeded && lines.last == marker && leftover.isEmpty && MountInfo.mounts(under: base).isEmpty {
            try? FileManager.default.removeItem(atPath: base)
        }
    }
}
