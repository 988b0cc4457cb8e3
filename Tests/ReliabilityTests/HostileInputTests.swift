import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// 5. Hostile CLI input: every bad name or reference is a usage error (exit 2) with one line on stderr.
extension Reliability {
    @Suite("Hostile CLI input")
    struct HostileInputTests {
        /// Names that must be refused wherever an asset, tag or workspace name is expected (argv cannot hold NUL:
        /// \u{01} stands in for it).
        static let badNames: [(String, [UInt8])] = [
            ("slash", Array("a/b".utf8)),
            ("dot-dot", Array("..".utf8)),
            ("dot-dot-slash", Array("../x".utf8)),
            ("dot", Array(".".utf8)),
            ("control char \\x01", Array("a\u{01}b".utf8)),
            ("newline", Array("a\nb".utf8)),
            ("space", Array("a b".utf8)),
            ("leading space", Array(" a".utf8)),
            ("10,000 characters", Array(String(repeating: "a", count: 10_000).utf8)),
            ("129 characters", Array(String(repeating: "b", count: 129).utf8)),
            ("non-UTF-8 bytes", [0x66, 0xFF, 0xFE, 0x6F]),
            ("UTF-8 letter", Array("dätä".utf8)),
            ("empty", []),
            ("leading dash-less dot", Array(".hidden".utf8)),
        ]

        /// Where a name goes. `%` is replaced by the name.
        static let nameSlots: [(String, [String])] = [
            ("import ASSET", ["import", "%", "SRC"]),
            ("versions ASSET", ["versions", "%"]),
            ("workspace create ASSET", ["workspace", "create", "%", "ws"]),
            ("workspace create data NAME", ["workspace", "create", "data", "%"]),
            ("tag data v1 TAG", ["tag", "data", "v1", "%"]),
            ("import --tag TAG", ["import", "data", "SRC", "--tag", "%"]),
        ]

        /// Malformed references: usage errors (exit 2).
        static let badRefs: [String] = [
            "data@v0", "data@v-1", "data@v99999999999999999999", "data@", "@v1", "data@@v1", "data@v1@v2",
            "data@v 1", "da/ta@v1", "data@v+1", "data@v1\u{01}", "data@latest@v1",
        ]

        /// Well-formed references to things that do not exist ("v1.5" and "V1" are valid tag names): failures
        /// (exit 1) with one line.
        static let missingRefs: [String] = ["data@v2", "data@v1.5", "data@V1", "data@v", "data@nosuchtag", "nope@v1", "nope"]

        static let refSlots: [(String, [String])] = [
            ("show REF", ["show", "%"]),
            ("export REF DEST", ["export", "%", "DEST"]),
            ("ls REF", ["ls", "%"]),
            ("delete REF", ["delete", "%"]),
            ("verify REF", ["verify", "%"]),
            ("cat REF:path", ["cat", "%:a.txt"]),
            ("diff REF data@v1", ["diff", "%", "data@v1"]),
        ]

        static func isUsageError(_ r: ProcessResult) -> (Bool, String) {
            let lines = r.errLines
            if r.killed { return (false, "killed by signal \(r.signal!)") }
            if r.timedOut { return (false, "timed out") }
            if r.exitCode != 2 { return (false, "exit \(r.exitCode ?? -1), expected 2") }
            if lines.count != 1 { return (false, "\(lines.count) lines on stderr, expected 1") }
            for marker in ["Fatal error", "Stack dump", "Backtrace", "#0 ", "Current stack trace", "Illegal instruction", "Usage:", "USAGE:"] where r.err.contains(marker) {
                return (false, "stderr contains \(marker)")
            }
            return (true, "")
        }

        @Test("bad asset, tag and workspace names: exit 2, one line on stderr, store unchanged")
        func badNames() throws {
            let f = try Fixture("hostile-names")
            defer { f.close() }
            try makeTree(f.src, [("a.txt", Array("hello\n".utf8))])
            try f.importVersion()
            var failures: [String] = []
            for (slot, template) in Self.nameSlots {
                for (label, name) in Self.badNames {
                    let args: [[UInt8]] = template.map { $0 == "%" ? name : ($0 == "SRC" ? Array(f.src.utf8) : Array($0.utf8)) }
                    let r = f.cliRaw(args)
                    let (ok, why) = Self.isUsageError(r)
                    Ledger.shared.hostile("bad names (\(Self.badNames.count) names x \(Self.nameSlots.count) places)", ok: ok)
                    if !ok { failures.append("`\(slot)` with \(label): \(why): \(r.err.prefix(300).debugDescription)") }
                }
            }
            #expect(failures.isEmpty, "\(failures.count) bad names were not refused as usage errors:\n\(failures.prefix(40).joined(separator: "\n"))")
            // Nothing was created.
            let assets = try f.cliOK(["assets", "--json"])
            let list = try JSONSerialization.jsonObject(with: assets.stdout) as? [[String: Any]] ?? []
            #expect(list.compactMap { $0["name"] as? String } == ["data"], "only the asset `data` exists: \(assets.out)")
            #expect(try f.versions().keys.sorted() == [1])
            let ws = try f.cliOK(["workspace", "list", "--json"])
            #expect(ws.out.filter { !$0.isWhitespace } == "[]", "no workspace was created: \(ws.out)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: f.store).sorted().allSatisfy {
                ["assetfs-store.json", "catalog.sqlite", "catalog.sqlite-shm", "catalog.sqlite-wal", "lock", "packs", "tmp", "logs", "workspaces"].contains($0)
            }, "nothing named after a hostile name appeared in the store directory")
        }

        @Test("bad references (v0, v-1, v99999999999999999999, ...): exit 2, one line on stderr")
        func badRefs() throws {
            let f = try Fixture("hostile-refs")
            defer { f.close() }
            try makeTree(f.src, [("a.txt", Array("hello\n".utf8))])
            try f.importVersion()
            var failures: [String] = []
            for (slot, template) in Self.refSlots {
                for ref in Self.badRefs {
                    let dest = f.scratchPath("dest")
                    let args = template.map { $0.replacingOccurrences(of: "%", with: ref).replacingOccurrences(of: "DEST", with: dest) }
                    let r = f.cli(args)
                    let (ok, why) = Self.isUsageError(r)
                    Ledger.shared.hostile("bad references (\(Self.badRefs.count) refs x \(Self.refSlots.count) commands)", ok: ok)
                    if !ok { failures.append("`\(slot)` with \(ref): \(why): \(r.err.prefix(300).debugDescription)") }
                    #expect(access(dest, F_OK) != 0, "`\(slot)` with \(ref) created \(dest)")
                }
            }
            #expect(failures.isEmpty, "\(failures.count) bad references were not refused as usage errors:\n\(failures.prefix(40).joined(separator: "\n"))")
            var missing: [String] = []
            for (slot, template) in Self.refSlots {
                for ref in Self.missingRefs {
                    let dest = f.scratchPath("dest")
                    let args = template.map { $0.replacingOccurrences(of: "%", with: ref).replacingOccurrences(of: "DEST", with: dest) }
                    let r = f.cli(args)
                    // A missing version is a failure (1); a tag or bare asset where a command needs an explicit
                    // version (delete) may be a usage error (2).
                    let explicitVersion = ref.range(of: "@v[0-9]+$", options: .regularExpression) != nil
                    let ok = !r.killed && r.errLines.count == 1 && (r.exitCode == 1 || (!explicitVersion && r.exitCode == 2))
                    Ledger.shared.hostile("references to missing versions/tags/assets (exit 1)", ok: ok)
                    if !ok { missing.append("`\(slot)` with \(ref): \(r)") }
                }
            }
            #expect(missing.isEmpty, "references to things that do not exist must fail with exit 1 and one line:\n\(missing.prefix(20).joined(separator: "\n"))")
            #expect(try f.versions().keys.sorted() == [1], "v1 is still there")
        }

        @Test("paths inside a reference cannot escape the version: data@v1:../../etc/passwd and friends")
        func pathEscapes() throws {
            let f = try Fixture("hostile-paths")
            defer { f.close() }
            try makeTree(f.src, [("a.txt", Array("hello\n".utf8)), ("d/b.txt", Array("b\n".utf8))])
            try f.importVersion()
            let passwd = (try? readAll("/etc/passwd")).map { String(decoding: $0, as: UTF8.self) } ?? "root:x:0:0"
            let marker = String(passwd.split(separator: "\n").first ?? "root:x:0:0")
            for path in ["../../etc/passwd", "/etc/passwd", "d/../../../etc/passwd", "d/../../a.txt", "a.txt/..", "\u{01}"] {
                for args in [["cat", "data@v1:\(path)"], ["ls", "data@v1:\(path)"]] {
                    let r = f.cli(args)
                    let ok = !r.killed && (r.exitCode == 1 || r.exitCode == 2) && r.errLines.count == 1 && !r.out.contains(marker)
                    Ledger.shared.hostile("path escapes in references", ok: ok)
                    #expect(ok, "`assetfs \(args.joined(separator: " "))` must fail with one line (exit 1 or 2) and print nothing of /etc/passwd: \(r)")
                }
            }
        }
    }
}
