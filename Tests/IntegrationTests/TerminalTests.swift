import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The commands that draw differently at a terminal (import and verify draw a progress line) run here at a real
/// pseudo-terminal, the way a person types them; the redirected runs are the rest of this target. Each test
/// checks what was stored or found, not only the exit status: an import at a terminal once stored empty
/// versions and exited 0.
@Suite("assetfs at a terminal")
struct TerminalTests {
    @Test("an import typed at a terminal stores every file byte for byte, as a redirected import does")
    func importAtTerminal() throws {
        try withTemporaryDirectory("tty-import") { dir in
            let store = try initStore(dir)
            let source = dir + "/src"
            try makeDataset(source, seed: 31)
            try writeFile(source + "/a/b/c/deep.bin", randomBytes(700_000, seed: 32))
            let files = regularFiles(under: source)
            let bytes = try files.reduce(0) { $0 + (try readWhole($1).count) }

            let typed = try runInTerminal([assetfsBinary, "import", "data", source, "-m", "typed"],
                                          environment: ["ASSETFS_STORE": store])
            try #require(typed.succeeded, "\(typed)")
            #expect(typed.screen.split(separator: "\n").contains("data v1"), "\(typed)")
            #expect(typed.drawnLines.contains { $0.hasPrefix("importing ") }, "no progress line was drawn: \(typed)")
            #expect(!typed.screen.contains("warning"), "\(typed)")

            let listed = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(listed.first?["files"] as? Int == files.count, "versions --json: \(listed)")
            #expect(listed.first?["logicalBytes"] as? Int == bytes, "versions --json: \(listed)")

            try assetfsOK(["export", "data@v1", dir + "/out"], store: store)
            let differences = signatureDifferences(try treeSignature(source), try treeSignature(dir + "/out"))
            #expect(differences.isEmpty, "exported v1 differs from the source: \(differences.prefix(10))")

            // Redirected, the same directory gives the same tree (same Merkle root) as the typed import.
            #expect(try assetfsOK(["import", "data", source, "--rehash"], store: store).stdout == "data v2\n")
            let both = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(both.count == 2 && both[0]["root"] as? String == both[1]["root"] as? String, "\(both)")
        }
    }

    @Test("progress lines fit a narrow terminal, and verify at a terminal checks what a redirected verify checks")
    func progressFitsTheTerminal() throws {
        try withTemporaryDirectory("tty-narrow") { dir in
            let store = try initStore(dir)
            let source = dir + "/src"
            for i in 0..<4 { try writeFile(source + "/part\(i).bin", randomBytes(6_000_000, seed: UInt64(40 + i))) }
            let columns = 52
            let typed = try runInTerminal([assetfsBinary, "import", "data", source], environment: ["ASSETFS_STORE": store],
                                          columns: UInt16(columns))
            try #require(typed.succeeded, "\(typed)")
            let progress = typed.drawnLines.filter { $0.hasPrefix("importing ") }
            #expect(!progress.isEmpty, "\(typed)")
            // The last column stays free: a line that reaches it wraps on some terminals and breaks the redraw.
            #expect(progress.allSatisfy { $0.count < columns }, "wider than \(columns - 1) columns: \(progress.filter { $0.count >= columns })")
            #expect(typed.screen.hasSuffix("data v1\n"), "\(typed)")

            let verifyTyped = try runInTerminal([assetfsBinary, "verify"], environment: ["ASSETFS_STORE": store],
                                                columns: UInt16(columns))
            let verifyRedirected = try assetfsOK(["verify"], store: store)
            try #require(verifyTyped.succeeded, "\(verifyTyped)")
            let checked = verifyRedirected.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(checked.hasPrefix("checked ") && checked.hasSuffix("no damage") && !checked.hasPrefix("checked 0 "), "\(checked)")
            #expect(verifyTyped.screen.split(separator: "\n").last.map(String.init) == checked, "\(verifyTyped)")
            let verifying = verifyTyped.drawnLines.filter { $0.hasPrefix("verifying chunks") }
            #expect(!verifying.isEmpty && verifying.allSatisfy { $0.count < columns }, "\(verifyTyped)")
        }
    }

    @Test("the README's first command, run at a terminal, imports versions that hold files and reads a pinned one")
    func demoAtTerminal() throws {
        // scripts/demo.sh with a built binary skips the machine set-up and the release build; the rest is what a
        // person sees after `bash scripts/demo.sh`.
        let demo = try withTemporaryDirectory("demo") { tmp in
            defer {
                // The demo's trap unmounts; this catches a mount left by a demo that was killed.
                for mount in MountInfo.mounts(under: tmp) {
                    _ = try? ChildProcess.spawn(["fusermount3", "-u", "-z", mount], scratch: NSTemporaryDirectory()).wait(timeout: 10)
                }
            }
            return try runInTerminal(["bash", Paths.packageRoot + "/scripts/demo.sh", assetfsBinary], environment: ["TMPDIR": tmp],
                                     columns: 120, timeout: 600)
        }
        try #require(demo.succeeded, "\(demo)")
        let lines = demo.screen.split(separator: "\n").map(String.init)
        for n in 1...3 { #expect(lines.contains("data v\(n)"), "import \(n) did not print data v\(n): \(demo)") }
        // `assetfs versions data`: VERSION PARENT CREATED(2 words) FILES SIZE ...
        let rows = lines.drop { !$0.hasPrefix("VERSION ") }.dropFirst().prefix { $0.hasPrefix("v") }
        #expect(rows.count == 3, "\(demo)")
        for row in rows {
            let fields = row.split(separator: " ", omittingEmptySubsequences: true)
            #expect(fields.count > 5 && (Int(fields[4]) ?? 0) > 0, "a version with no files: \(row)")
        }
        let pinned = try #require(lines.first { $0.hasPrefix("pinned ") }, "\(demo)")
        let csvLines = pinned.split(separator: ",").last?.split(separator: " ").first.flatMap { Int($0) } ?? 0
        #expect(pinned.contains("embeddings (512, 256)") && csvLines > 0, "\(pinned)")
        #expect(lines.contains { $0.hasPrefix("demo: done") }, "\(demo)")
    }
}
