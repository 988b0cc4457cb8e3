import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Workspace commit crash safety")
struct CommitCrashTests {
    /// Each round: a fresh workspace with a 30 MB new file (plus smaller edits), `assetfs commit` killed with
    /// SIGKILL after a random delay. Afterwards `assetfs verify` passes and either the new version exists and
    /// exports exactly the workspace content, or no version was added and the workspace is intact and commits.
    @Test("kill -9 of assetfs commit at random moments: verify passes; a complete version or an intact workspace")
    func killCommit() throws {
        let seed = ProcessInfo.processInfo.environment["WORKSPACE_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("commit crash test: seed \(seed) (rerun with WORKSPACE_CRASH_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let fx = try WSFixture("commit-crash", backstop: 150)
        defer { fx.close() }
        try buildSmallBase(fx.src, bigSize: 1_000_000)
        try buildSmallBase(fx.local, bigSize: 1_000_000)
        var latest = try fx.importVersion()
        try fx.mount()

        var estimate = 1.0  // seconds a commit of this size takes; refined when one finishes before its kill
        var outcomes: [String] = []
        for round in 0..<5 {
            let name = "crash\(round)"
            let ws = try fx.createWorkspace(name, from: latest)
            let big = randomBytes(30_000_000, using: &rng)
            let patch = randomBytes(4_096, using: &rng)
            try fx.io("edits of round \(round)", seconds: 60) {
                try onBoth([ws, fx.local]) { root in
                    if round > 0 { try sysCheck("unlink", root + "/big-\(round - 1).bin", unlink(root + "/big-\(round - 1).bin")) }
                    try writeFile(root + "/big-\(round).bin", big)
                    try patchFile(root + "/big.bin", patch, at: 100_000 * (round + 1))
                    try sysCheck("mkdir", root + "/round\(round)", mkdir(root + "/round\(round)", 0o755))
                    try writeFile(root + "/round\(round)/note.txt", Array("round \(round)\n".utf8))
                }
            }
            let before = try fx.versions().count

            let delay = Double.random(in: 0...(estimate * 1.1), using: &rng)
            let child = try fx.start([Paths.assetfs, "commit", "data/\(name)", "-m", "crash round \(round)"])
            usleep(useconds_t(delay * 1_000_000))
            let finishedBeforeKill = child.poll()
            kill(child.pid, SIGKILL)
            let result = child.wait(timeout: 30) { fx.abortConnection() }
            if finishedBeforeKill && result.succeeded { estimate = max(0.2, result.seconds) }
            #expect(!result.timedOut, "round \(round): commit did not end after SIGKILL: \(result)")
            if finishedBeforeKill && !result.succeeded {
                Issue.record("round \(round): commit failed on its own before the kill: \(result)")
            }

            // The store is consistent whatever the moment of the kill.
            let verify = fx.cli(["verify"], timeout: 120)
            #expect(verify.succeeded, "round \(round): assetfs verify after kill -9 of commit at \(String(format: "%.3f", delay)) s: \(verify)")

            let versions = try fx.versions()
            let names = try fx.workspaceNames()
            if versions.count == before + 1 {
                let number = try #require(versions.last?["version"] as? Int)
                outcomes.append("round \(round): kill at \(String(format: "%.3f", delay)) s\(finishedBeforeKill ? " (commit had already finished)" : "") -> v\(number) complete" + (names.contains(name) ? " (workspace left behind)" : ""))
                try expectSameTree(try fx.export("data@v\(number)"), fx.local, "round \(round): export of v\(number), made by the killed commit")
                #expect(versions.last?["parent"] as? Int == latest)
                if names.contains(name) {
                    // Killed between the version and the cleanup: the workspace must at least still be whole.
                    try fx.io("leftover workspace") { try expectSameTree(ws, fx.local, "round \(round): workspace left behind by the killed commit") }
                    try fx.cliOK(["workspace", "discard", "data/\(name)"])
                }
                latest = number
            } else {
                #expect(versions.count == before, "round \(round): \(versions.count - before) versions appeared")
                outcomes.append("round \(round): killed at \(String(format: "%.3f", delay)) s -> no version")
                #expect(names.contains(name), "round \(round): no new version, and the workspace \(name) is gone too")
                guard names.contains(name) else { continue }
                try fx.io("workspace after the killed commit", seconds: 60) {
                    try expectSameTree(ws, fx.local, "round \(round): workspace after kill -9 of its commit")
                }
                let number = try fx.commitOK("data/\(name)")
                try expectSameTree(try fx.export("data@v\(number)"), fx.local, "round \(round): export of the commit retried after the kill")
                latest = number
            }
        }
        print("commit crash test: seed \(seed):\n  " + outcomes.joined(separator: "\n  "))
        try fx.verifyOK()
    }
}
