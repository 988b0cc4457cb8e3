import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// 7. Export safety: nothing is ever written outside DEST.
extension Reliability {
    @Suite("Export safety")
    struct ExportSafetyTests {
        /// A snapshot of everything under `dir` (names, types, sizes, content hashes, mtimes) to prove it unchanged.
        static func snapshot(_ dir: String) throws -> [String: String] {
            var out = try treeSignature(dir)
            // Add mtimes of files, so a write of the same bytes also shows.
            for (k, v) in out where v.hasPrefix("file") {
                let st = try lstatPath(dir + "/" + k)
                out[k] = v + " \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            }
            return out
        }

        @Test("DEST planted with symlinks and hard links to the outside: export refuses or stays inside; the outside is untouched")
        func plantedDestinations() throws {
            let f = try Fixture("export-planted")
            defer { f.close() }
            try makeTree(f.src, [("a.txt", Array("version bytes\n".utf8)), ("sub/b.txt", Array("b\n".utf8))])
            try f.importVersion()
            let outside = f.root + "/outside"
            try makeTree(outside, [("victim.txt", Array("do not touch\n".utf8)), ("keep/x.txt", Array("x\n".utf8))])
            let before = try Self.snapshot(outside)
            var cases = 0
            var refused = 0

            func run(_ label: String, _ args: [String], mustFail: Bool = false) {
                let r = f.cli(args)
                cases += 1
                if !r.succeeded { refused += 1 }
                #expect(!r.killed, "\(label): \(r)")
                if mustFail { #expect(r.exitCode == 1 && r.errLines.count == 1, "\(label) must fail with one line: \(r)") }
                let after = (try? Self.snapshot(outside)) ?? [:]
                #expect(after == before, "\(label) changed something outside DEST: \(signatureDifferences(expected: before, actual: after))")
                Ledger.shared.hostile("export into hostile destinations", ok: after == before && !r.killed)
            }

            // 1. DEST is a symlink to an outside directory.
            let emptyOutside = f.root + "/outside-empty"
            mkdir(emptyOutside, 0o755)
            symlink(emptyOutside, f.root + "/dest-link")
            run("export into DEST that is a symlink to a directory outside", ["export", "data@v1", f.root + "/dest-link"], mustFail: true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: emptyOutside).isEmpty, "nothing was written through the DEST symlink")

            // 2. DEST contains a symlink named like the version's file (single-file export).
            let d2 = f.root + "/dest2"
            mkdir(d2, 0o755)
            symlink(outside + "/victim.txt", d2 + "/a.txt")
            run("export REF:a.txt into DEST holding a.txt -> outside/victim.txt", ["export", "data@v1:a.txt", d2], mustFail: true)

            // 3. DEST contains a hard link to an outside file, named like the version's file.
            let d3 = f.root + "/dest3"
            mkdir(d3, 0o755)
            link(outside + "/victim.txt", d3 + "/a.txt")
            run("export REF:a.txt into DEST holding a hard link to outside/victim.txt", ["export", "data@v1:a.txt", d3], mustFail: true)

            // 4. DEST contains a symlink named like the version's directory, pointing outside.
            let d4 = f.root + "/dest4"
            mkdir(d4, 0o755)
            symlink(outside + "/keep", d4 + "/sub")
            run("export into a non-empty DEST holding sub -> outside", ["export", "data@v1", d4], mustFail: true)
            run("export REF:sub into DEST holding sub -> outside", ["export", "data@v1:sub", d4])

            // 5. A FIFO named like the file: never opened for writing (no hang, no write).
            let d5 = f.root + "/dest5"
            mkdir(d5, 0o755)
            mkfifo(d5 + "/a.txt", 0o644)
            run("export REF:a.txt into DEST holding a FIFO a.txt", ["export", "data@v1:a.txt", d5], mustFail: true)

            // 6. DEST is a file.
            try writeFile(f.root + "/dest-file", Array("file\n".utf8))
            run("export into DEST that is a regular file", ["export", "data@v1", f.root + "/dest-file"], mustFail: true)
            #expect(try readAll(f.root + "/dest-file") == Array("file\n".utf8))
            _ = refused
        }

        @Test("a version whose links point outside exports as links; nothing is written through them")
        func outwardLinksInVersion() throws {
            let f = try Fixture("export-links")
            defer { f.close() }
            let outside = f.root + "/outside"
            try makeTree(outside, [("victim.txt", Array("do not touch\n".utf8))])
            try makeTree(f.src, [("file.txt", Array("f\n".utf8))])
            symlink(outside, f.src + "/abs")
            symlink("../../../../../../../../../..\(outside)", f.src + "/rel")
            symlink(outside + "/victim.txt", f.src + "/victim-link")
            try f.importVersion()
            let before = try Self.snapshot(outside)
            let dest = f.scratchPath("dest")
            try f.cliOK(["export", "data@v1", dest])
            #expect(try readLink(dest + "/abs") == outside)
            #expect(try readLink(dest + "/victim-link") == outside + "/victim.txt")
            #expect(try Self.snapshot(outside) == before, "export wrote through a link")
            Ledger.shared.hostile("export into hostile destinations", ok: (try? Self.snapshot(outside)) == before)
        }

        @Test("an attacker swapping directories in DEST for symlinks during the export cannot make it write outside")
        func raceDuringExport() throws {
            let f = try Fixture("export-race", backstop: 200)
            defer { f.close() }
            var tree: [(String, [UInt8])] = []
            for d in 0..<12 { for i in 0..<25 { tree.append(("sub\(d)/deeper/f\(i).bin", randomBytes(20_000, seed: UInt64(d * 100 + i)))) } }
            try makeTree(f.src, tree)
            try f.importVersion()
            let outside = f.root + "/outside"
            try makeTree(outside, [("victim.txt", Array("do not touch\n".utf8))])
            let before = try Self.snapshot(outside)
            var escapes = 0
            for attempt in 0..<(Mode.long ? 30 : 6) {
                let dest = f.scratchPath("race")
                let stop = WriterLog()
                let done = DispatchSemaphore(value: 0)
                let attacker = Thread {
                    var swaps = 0
                    while !stop.stop {
                        for d in 0..<12 {
                            let p = dest + "/sub\(d)"
                            var st = stat()
                            if lstat(p, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                                if rename(p, p + ".moved") == 0 { symlink(outside, p); swaps += 1 }
                            }
                            let q = dest + "/sub\(d).moved/deeper"
                            if lstat(q, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                                if rename(q, q + ".moved") == 0 { symlink(outside, q); swaps += 1 }
                            }
                        }
                    }
                    done.signal()
                }
                attacker.start()
                let r = f.cli(["export", "data@v1", dest])
                stop.stop = true
                done.wait()
                #expect(!r.killed, "attempt \(attempt): \(r)")
                let after = try Self.snapshot(outside)
                if after != before {
                    escapes += 1
                    Issue.record("attempt \(attempt): the export wrote outside DEST: \(signatureDifferences(expected: before, actual: after))")
                    removeTree(outside)
                    try makeTree(outside, [("victim.txt", Array("do not touch\n".utf8))])
                }
            }
            Ledger.shared.hostile("export while an attacker swaps DEST directories for symlinks", ok: escapes == 0)
        }

        @Test("a tampered catalog (entry names '../x', 'a/b', '..', '') cannot make export write outside DEST")
        func tamperedCatalog() throws {
            let f = try Fixture("export-tampered")
            defer { f.close() }
            try makeTree(f.src, [("aaaa.txt", Array("one\n".utf8)), ("bbbb.txt", Array("two\n".utf8)), ("cccc.txt", Array("three\n".utf8)),
                                 ("dddd.txt", Array("four\n".utf8))])
            try f.importVersion()
            let outside = f.root + "/outside"
            mkdir(outside, 0o755)
            let sql = f.root + "/tamper.sql"
            // Relative to DEST = ROOT/scratch/dest-N: "../../outside/pwned" lands in ROOT/outside.
            try """
                UPDATE entries SET name = CAST('../../outside/pwned' AS BLOB) WHERE name = CAST('aaaa.txt' AS BLOB);
                UPDATE entries SET name = CAST('..' AS BLOB) WHERE name = CAST('bbbb.txt' AS BLOB);
                UPDATE entries SET name = CAST('' AS BLOB) WHERE name = CAST('cccc.txt' AS BLOB);
                UPDATE entries SET name = CAST('/tmp/abs' AS BLOB) WHERE name = CAST('dddd.txt' AS BLOB);
                """.write(toFile: sql, atomically: true, encoding: .utf8)
            let s = f.run(["sh", "-c", "sqlite3 '\(f.store)/catalog.sqlite' < '\(sql)'"])
            try #require(s.succeeded, "tampering with sqlite3: \(s)")
            let dest = f.scratchPath("dest")
            let r = f.cli(["export", "data@v1", dest])
            #expect(!r.killed && r.exitCode == 1 && r.errLines.count == 1, "export of a tampered version must fail with one line: \(r)")
            let written = try FileManager.default.contentsOfDirectory(atPath: outside)
            #expect(written.isEmpty, "export wrote outside DEST: \(written)")
            #expect(access("/tmp/abs", F_OK) != 0 || (try? readAll("/tmp/abs")) != Array("four\n".utf8), "export wrote /tmp/abs")
            Ledger.shared.hostile("export of a tampered catalog (unsafe entry names)", ok: r.exitCode == 1)
            // Mounting it: the unsafe names must not be served as path components either.
            try f.mount()
            let names = try f.io("list a tampered version") { (try? FileManager.default.contentsOfDirectory(atPath: f.mnt + "/data/v1")) ?? [] }
            #expect(!names.contains(where: { $0.contains("/") || $0 == ".." || $0.isEmpty }), "the mount lists unsafe names: \(names)")
            try f.unmount()
        }
    }
}
