import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// 1. Crash at any point: SIGKILL of import, commit, gc, delete and the mount daemon, at random moments
/// (10 per operation, 50 with ASSETFS_LONG=1) and at every durability point (strace fault injection).
extension Reliability {
    @Suite("Crash at any point")
    struct CrashTests {
        // MARK: import

        /// The source tree of import attempt `i`: a static part (re-read only with --rehash) plus new data.
        private func prepareImport(_ f: Fixture, _ i: Int) throws -> TreeSignature {
            if i == 0 {
                try makeTree(f.src, [
                    ("static/weights.bin", randomBytes(3_000_000, seed: 11)),
                    ("static/table.csv", csvBytes(2_000_000, seed: 12)),
                    ("static/small/a.txt", Array("alpha\n".utf8)),
                    ("static/small/b.txt", Array("beta\n".utf8)),
                ])
                symlink("static/table.csv", f.src + "/table-link")
            }
            try writeFile(f.src + "/fresh/data-\(i % 3).bin", randomBytes(3_000_000 + i * 4099, seed: 100 + UInt64(i)))
            try writeFile(f.src + "/fresh/rows.csv", csvBytes(1_000_000 + i * 100, seed: 200 + UInt64(i)))
            try writeFile(f.src + "/marker.txt", Array("attempt \(i)\n".utf8))
            return try treeSignature(f.src)
        }

        @Test("import: SIGKILL at random moments, then the store verifies and every reported version reads back")
        func importRandomKills() throws {
            let f = try Fixture("crash-import", backstop: 400)
            defer { f.close() }
            var rng = SplitMix64(seed: Mode.seed &+ 1)
            let model = AssetModel("data")
            let first = try prepareImport(f, 0)
            model.attempts.append(first)
            let t0 = Date()
            model.expected[try f.importVersion()] = first
            let window = max(Date().timeIntervalSince(t0) * 1.3, 0.15)
            for i in 1...Mode.kills {
                let sig = try prepareImport(f, i)
                model.attempts.append(sig)
                let args = ["import", "data", f.src, "-m", "attempt \(i)"] + (rng.next() % 2 == 0 ? ["--rehash"] : [])
                let (r, delay) = Killer.random(f, args, window: window, rng: &rng)
                let killed = r.signal == SIGKILL
                if !killed {
                    #expect(r.succeeded, "import attempt \(i) was not killed, so it must succeed: \(r)")
                    if let n = parseVersionLine(r.out, asset: "data") { model.expected[n] = sig }
                }
                let (healthy, reread) = model.check(f, "import attempt \(i) killed after \(ms(delay))", rng: &rng)
                Ledger.shared.crash("import (random moment)", killed: killed, healthy: healthy, versions: reread)
            }
            try finish(f, model, "import", rng: &rng)
        }

        @Test("import: SIGKILL at every fsync/rename/unlink/truncate (strace), then the store verifies")
        func importEveryDurabilityPoint() throws {
            try Killer.requireStrace()
            let f = try Fixture("crash-import-points", backstop: 400)
            defer { f.close() }
            var rng = SplitMix64(seed: Mode.seed &+ 2)
            let model = AssetModel("data")
            var point = 1
            var completed = false
            while !completed && point <= Killer.maxPoints {
                let sig = try prepareImport(f, point)
                model.attempts.append(sig)
                let (r, killed) = Killer.atPoint(f, ["import", "data", f.src, "-m", "point \(point)"], point: point)
                if !killed {
                    #expect(r.succeeded, "import with a kill at point \(point) was not killed, so it must succeed: \(r)")
                    if let n = parseVersionLine(r.out, asset: "data") { model.expected[n] = sig }
                    completed = true
                }
                let (healthy, reread) = model.check(f, "import killed at durability point \(point)", rng: &rng)
                Ledger.shared.crash("import (every durability point)", killed: killed, healthy: healthy, versions: reread)
                point += 1
            }
            #expect(completed, "the import never completed within \(Killer.maxPoints) injection points")
            try finish(f, model, "import", rng: &rng)
        }

        /// After the kills: one clean run of the operation's follow-up (gc), a full re-read of every version,
        /// and a normal import still works.
        private func finish(_ f: Fixture, _ model: AssetModel, _ what: String, rng: inout SplitMix64) throws {
            let gc = f.cli(["gc"])
            #expect(gc.succeeded, "gc after the \(what) kills: \(gc)")
            let (healthy, _) = model.check(f, "after all \(what) kills and a gc (full re-read)", full: true, rng: &rng)
            #expect(healthy)
            let stray = (try? FileManager.default.contentsOfDirectory(atPath: f.store + "/tmp")) ?? []
            #expect(stray.isEmpty, "gc should remove staging files left by killed writers; left: \(stray)")
        }

        // MARK: delete

        @Test("delete: SIGKILL at random moments and at every durability point")
        func deleteKills() throws {
            try Killer.requireStrace()
            let f = try Fixture("crash-delete", backstop: 400)
            defer { f.close() }
            var rng = SplitMix64(seed: Mode.seed &+ 3)
            let model = AssetModel("data")
            let count = Mode.kills + 20
            try makeTree(f.src, [("shared.bin", randomBytes(500_000, seed: 31))])
            for i in 0..<count {
                try writeFile(f.src + "/own.bin", randomBytes(300_000, seed: 1_000 + UInt64(i)))
                try writeFile(f.src + "/n.txt", Array("\(i)\n".utf8))
                let sig = try treeSignature(f.src)
                model.attempts.append(sig)
                // The last version carries a tag (a tagged version refuses deletion; it is never a victim).
                let n = try f.importVersion(extra: i == count - 1 ? ["--tag", "prod"] : [])
                model.expected[n] = sig
            }
            // Never delete the latest version: the asset keeps at least one.
            var candidates = Array(model.expected.keys.sorted().dropLast()).shuffled(using: &rng)
            let t0 = Date()
            let victim0 = candidates.removeLast()
            try f.cliOK(["delete", "data@v\(victim0)"])
            let window = max(Date().timeIntervalSince(t0) * 1.3, 0.05)
            model.deleted.insert(victim0)
            model.expected.removeValue(forKey: victim0)

            func outcome(_ victim: Int, _ r: ProcessResult, _ killed: Bool) {
                if killed {
                    model.maybeDeleted.insert(victim)
                } else {
                    #expect(r.succeeded, "delete of v\(victim) was not killed, so it must succeed: \(r)")
                    guard r.succeeded else { return }
                    model.deleted.insert(victim)
                    model.expected.removeValue(forKey: victim)
                }
            }
            for i in 1...Mode.kills {
                guard let victim = candidates.popLast() else { break }
                let (r, delay) = Killer.random(f, ["delete", "data@v\(victim)"], window: window, rng: &rng)
                let killed = r.signal == SIGKILL
                outcome(victim, r, killed)
                let (healthy, reread) = model.check(f, "delete of v\(victim) (kill \(i)) killed after \(ms(delay))", rng: &rng)
                Ledger.shared.crash("delete (random moment)", killed: killed, healthy: healthy, versions: reread)
            }
            var point = 1
            while point <= Killer.maxPoints, let victim = candidates.popLast() {
                let (r, killed) = Killer.atPoint(f, ["delete", "data@v\(victim)"], point: point)
                outcome(victim, r, killed)
                let (healthy, reread) = model.check(f, "delete of v\(victim) killed at durability point \(point)", rng: &rng)
                Ledger.shared.crash("delete (every durability point)", killed: killed, healthy: healthy, versions: reread)
                if !killed { break }
                point += 1
            }
            // A killed delete must be repeatable.
            for victim in model.maybeDeleted.sorted() where model.expected[victim] != nil {
                let r = f.cli(["delete", "data@v\(victim)"])
                #expect(r.succeeded, "deleting v\(victim) again after a killed delete: \(r)")
                model.maybeDeleted.remove(victim)
                model.deleted.insert(victim)
                model.expected.removeValue(forKey: victim)
            }
            try finish(f, model, "delete", rng: &rng)
        }

        // MARK: gc

        /// Makes garbage for one gc run: a version whose pack becomes mostly dead (rewrite) and one whose pack
        /// becomes entirely dead (delete), then deletes them.
        private func makeGarbage(_ f: Fixture, _ model: AssetModel, _ i: Int) throws {
            let keep = randomBytes(700_000, seed: 5_000 + UInt64(i))
            removeTree(f.src)
            try makeTree(f.src, [("keep-\(i).bin", keep), ("drop.bin", randomBytes(2_500_000, seed: 6_000 + UInt64(i))),
                                 ("base.csv", csvBytes(300_000, seed: 7))])
            let a = try treeSignature(f.src)
            let va = try f.importVersion()
            model.attempts.append(a)
            model.expected[va] = a
            removeTree(f.src)
            try makeTree(f.src, [("keep-\(i).bin", keep), ("base.csv", csvBytes(300_000, seed: 7)),
                                 ("n.txt", Array("\(i)\n".utf8))])
            let b = try treeSignature(f.src)
            let vb = try f.importVersion()
            model.attempts.append(b)
            model.expected[vb] = b
            try f.cliOK(["delete", "data@v\(va)"])
            model.deleted.insert(va)
            model.expected.removeValue(forKey: va)
            // Every third round also drops an older kept version, so whole packs die.
            if i % 3 == 2, let old = model.expected.keys.sorted().first, old != vb {
                try f.cliOK(["delete", "data@v\(old)"])
                model.deleted.insert(old)
                model.expected.removeValue(forKey: old)
            }
        }

        @Test("gc after deletes: SIGKILL at random moments and at every durability point")
        func gcKills() throws {
            try Killer.requireStrace()
            let f = try Fixture("crash-gc", backstop: 400)
            defer { f.close() }
            var rng = SplitMix64(seed: Mode.seed &+ 4)
            let model = AssetModel("data")
            try makeGarbage(f, model, 0)
            let t0 = Date()
            let first = try f.cliOK(["gc"])
            let window = max(Date().timeIntervalSince(t0) * 1.3, 0.1)
            #expect(first.out.contains("rewrote 1") || first.out.contains("deleted"), "the first gc should reclaim something: \(first)")
            var round = 1
            for i in 1...Mode.kills {
                try makeGarbage(f, model, round)
                round += 1
                let (r, delay) = Killer.random(f, ["gc"], window: window, rng: &rng)
                let killed = r.signal == SIGKILL
                if !killed { #expect(r.succeeded, "gc was not killed, so it must succeed: \(r)") }
                let (healthy, reread) = model.check(f, "gc (kill \(i)) killed after \(ms(delay))", rng: &rng)
                Ledger.shared.crash("gc (random moment)", killed: killed, healthy: healthy, versions: reread)
            }
            var point = 1
            var completed = false
            while !completed && point <= Killer.maxPoints {
                try makeGarbage(f, model, round)
                round += 1
                let (r, killed) = Killer.atPoint(f, ["gc"], point: point)
                if !killed {
                    #expect(r.succeeded, "gc with a kill at point \(point) was not killed, so it must succeed: \(r)")
                    completed = true
                }
                var (healthy, reread) = model.check(f, "gc killed at durability point \(point)", rng: &rng)
                if killed {
                    // The next gc finishes the job (and each round starts from the same amount of garbage).
                    let again = f.cli(["gc"])
                    #expect(again.succeeded, "gc after a gc killed at point \(point): \(again)")
                    let (ok, more) = model.check(f, "gc after a gc killed at durability point \(point)", rng: &rng)
                    healthy = healthy && ok && again.succeeded
                    reread += more
                }
                Ledger.shared.crash("gc (every durability point)", killed: killed, healthy: healthy, versions: reread)
                point += 1
            }
            #expect(completed, "gc never completed within \(Killer.maxPoints) injection points")
            try finish(f, model, "gc", rng: &rng)
            let stats = f.cli(["stats", "--json"])
            #expect(stats.succeeded, "\(stats)")
        }

        // MARK: commit

        /// Applies one round of workspace changes to `dir` (the mounted workspace or the local mirror).
        private func applyChanges(_ dir: String, _ i: Int, newBytes: [UInt8], patch: [UInt8], patchAt: Int) throws {
            try writeFile(dir + "/new/data-\(i).bin", newBytes)
            // In-place edit of a base file.
            let fd = Glibc.open(dir + "/base.bin", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SysError(op: "open", path: dir + "/base.bin", code: errno) }
            let n = patch.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(patchAt)) }
            let e = errno
            Glibc.close(fd)
            guard n == patch.count else { throw SysError(op: "pwrite", path: dir + "/base.bin", code: e) }
            // Append to a table.
            let a = Glibc.open(dir + "/table.csv", O_WRONLY | O_APPEND | O_CLOEXEC)
            guard a >= 0 else { throw SysError(op: "open", path: dir + "/table.csv", code: errno) }
            try writeAll(fd: a, Array("\(i),appended,row\n".utf8), path: dir + "/table.csv")
            Glibc.close(a)
            // Delete or recreate, rename back and forth.
            if access(dir + "/old/remove-me.bin", F_OK) == 0 {
                guard unlink(dir + "/old/remove-me.bin") == 0 else { throw SysError(op: "unlink", path: dir + "/old/remove-me.bin", code: errno) }
            } else {
                try writeFile(dir + "/old/remove-me.bin", randomBytes(100_000, seed: 77 + UInt64(i)))
            }
            let (from, to) = i % 2 == 0 ? ("docs/readme.txt", "docs/README.md") : ("docs/README.md", "docs/readme.txt")
            guard rename(dir + "/" + from, dir + "/" + to) == 0 else { throw SysError(op: "rename", path: dir + "/" + from, code: errno) }
        }

        @Test("commit of a workspace with a sizeable change: SIGKILL at random moments and at every durability point")
        func commitKills() throws {
            try Killer.requireStrace()
            let f = try Fixture("crash-commit", backstop: 500)
            defer { f.close() }
            var rng = SplitMix64(seed: Mode.seed &+ 5)
            let model = AssetModel("data")
            try makeTree(f.src, [("base.bin", randomBytes(4_000_000, seed: 41)), ("table.csv", csvBytes(1_000_000, seed: 42)),
                                 ("docs/readme.txt", Array("read me\n".utf8)), ("old/remove-me.bin", randomBytes(100_000, seed: 43))])
            let sig1 = try treeSignature(f.src)
            model.attempts.append(sig1)
            model.expected[try f.importVersion()] = sig1
            try f.mount()
            let mirror = f.root + "/mirror"
            var window = 0.5
            var round = 0

            /// One attempt: a workspace on the latest version with round `round`'s changes, committed with `kill`.
            func attempt(_ label: String, _ kill: (String) -> (ProcessResult, Bool, String)) throws {
                let i = round
                round += 1
                let listed = try f.versions()
                guard let latest = listed.keys.max() else { throw TestFailure("no versions listed") }
                let ws = "ws\(i)"
                try f.cliOK(["workspace", "create", "data", ws, "--from", "v\(latest)"])
                removeTree(mirror)
                try f.cliOK(["export", "data@v\(latest)", mirror])
                let newBytes = randomBytes(6_000_000 + i * 1000, seed: 9_000 + UInt64(i))
                let patch = randomBytes(65_536, seed: 9_500 + UInt64(i))
                let patchAt = Int(rng.next() % 3_900_000)
                let wsDir = f.mnt + "/data/workspaces/" + ws
                try f.io("wait for \(wsDir)") {
                    guard poll(seconds: 5, { access(wsDir, F_OK) == 0 }) != nil else { throw TestFailure("\(wsDir) did not appear in the mount") }
                }
                try f.io("workspace writes in \(ws)") { try applyChanges(wsDir, i, newBytes: newBytes, patch: patch, patchAt: patchAt) }
                try applyChanges(mirror, i, newBytes: newBytes, patch: patch, patchAt: patchAt)
                let want = try treeSignature(mirror)
                model.attempts.append(want)

                let (r, killed, how) = kill(ws)
                var reported: Int?
                if !killed {
                    #expect(r.succeeded, "commit \(how) was not killed, so it must succeed: \(r)")
                    reported = parseVersionLine(r.out, asset: "data")
                    if let n = reported { model.expected[n] = want }
                }
                let before = Set(listed.keys)
                var (healthy, reread) = model.check(f, "commit of \(ws) \(how)", rng: &rng)
                let now = try f.versions()
                let created = Set(now.keys).subtracting(before)
                let workspaces = f.cli(["workspace", "list", "data", "--json"])
                let stillThere = workspaces.out.contains("\"name\" : \"\(ws)\"")
                if created.isEmpty {
                    // Nothing visible: the workspace must be intact and a plain retry must produce the version.
                    #expect(stillThere, "commit of \(ws) \(how): no version was created, yet the workspace is gone: \(workspaces)")
                    let retry = f.cli(["commit", "data/\(ws)", "-m", "retry"])
                    #expect(retry.succeeded, "retrying the killed commit of \(ws) must succeed: \(retry)")
                    if let n = parseVersionLine(retry.out, asset: "data") {
                        model.expected[n] = want
                        let (ok, more) = model.check(f, "retried commit of \(ws) after a kill \(how)", rng: &rng)
                        healthy = healthy && ok && retry.succeeded
                        reread += more
                    } else {
                        healthy = false
                    }
                } else {
                    #expect(created.count == 1, "one commit created \(created.sorted())")
                    if stillThere {
                        healthy = false
                        Issue.record("commit of \(ws) \(how): v\(created.sorted()) is visible but the workspace still exists: committing it again would create a duplicate version (the version row and the workspace removal are separate transactions in WorkspaceCommitter.run)")
                        Ledger.shared.finding("BUG: a commit killed between its version transaction and the workspace removal leaves the committed workspace in place (`workspace list` still shows it; a retry refuses as diverged or, with --allow-diverge, commits the same change twice): Sources/AssetRepository/WorkspaceCommitter.swift run() writes the version, then calls WorkspaceManager.discard in a second transaction. Reproduce: CrashTests/commitKills (strace point)")
                        _ = f.cli(["workspace", "discard", "data/\(ws)"])
                    }
                }
                Ledger.shared.crash(label, killed: killed, healthy: healthy, versions: reread)
            }

            // Baseline (not counted as a kill): measures how long a commit takes.
            try attempt("commit (baseline)") { ws in
                let t0 = Date()
                let r = f.cli(["commit", "data/\(ws)", "-m", "baseline"])
                window = max(Date().timeIntervalSince(t0), 0.2)
                return (r, false, "(not killed)")
            }
            for _ in 1...Mode.kills {
                try attempt("commit (random moment)") { ws in
                    let (r, delay) = Killer.random(f, ["commit", "data/\(ws)", "-m", "attempt"], window: window, rng: &rng)
                    return (r, r.signal == SIGKILL, "killed after \(ms(delay))")
                }
            }
            var point = 1
            var completed = false
            while !completed && point <= Killer.maxPoints {
                let p = point
                try attempt("commit (every durability point)") { ws in
                    let (r, killed) = Killer.atPoint(f, ["commit", "data/\(ws)", "-m", "point \(p)"], point: p)
                    completed = !killed
                    return (r, killed, "killed at durability point \(p)")
                }
                point += 1
            }
            #expect(completed, "commit never completed within \(Killer.maxPoints) injection points")
            try f.unmount()
            try finish(f, model, "commit", rng: &rng)
        }
    }
}
