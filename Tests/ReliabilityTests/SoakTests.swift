import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Shared state of the soak: what every version must contain, which versions readers may read, counters.
final class SoakRegistry: @unchecked Sendable {
    private let lock = NSLock()
    // All protected by `lock`.
    private var signatures: [String: TreeSignature] = [:]  // "alpha/v3" -> content
    private var readable: [String] = []                    // versions never deleted: readers pick from these
    private var disposable: [String] = []                  // versions the deleter may delete
    private var deletedSet: Set<String> = []
    private var ops: [String: Int] = [:]
    private var errs: [String: Int] = [:]
    private var problems: [String] = []
    let listPath: String

    init(listPath: String) { self.listPath = listPath }

    func add(_ version: String, _ sig: TreeSignature, readable isReadable: Bool) {
        lock.withLock {
            signatures[version] = sig
            if isReadable { readable.append(version) } else { disposable.append(version) }
            let text = readable.joined(separator: "\n") + "\n"
            let tmp = listPath + ".tmp"
            try? text.write(toFile: tmp, atomically: false, encoding: .utf8)
            rename(tmp, listPath)
        }
    }

    func signature(_ version: String) -> TreeSignature? { lock.withLock { signatures[version] } }
    var allSignatures: [String: TreeSignature] { lock.withLock { signatures } }
    var deleted: Set<String> { lock.withLock { deletedSet } }

    func latestReadable(_ asset: String) -> String? { lock.withLock { readable.last { $0.hasPrefix(asset + "/") } } }

    func takeDisposable() -> String? {
        lock.withLock { disposable.isEmpty ? nil : disposable.removeFirst() }
    }

    func markDeleted(_ version: String) { lock.withLock { _ = deletedSet.insert(version) } }

    func count(_ op: String, ok: Bool, _ detail: @autoclosure () -> String = "") {
        lock.withLock {
            ops[op, default: 0] += 1
            if !ok {
                errs[op, default: 0] += 1
                if problems.count < 30 { problems.append("\(op): \(detail())") }
            }
        }
    }

    var operations: [String: Int] { lock.withLock { ops } }
    var errors: [String: Int] { lock.withLock { errs } }
    var problemList: [String] { lock.withLock { problems } }
}

extension Reliability {
    @Suite("Concurrency soak")
    struct SoakTests {
        static let readerScript = """
            #!/bin/bash
            # Reads random readable versions through the mount until STOP exists; one line per file:
            # R <asset/vN> <path> <sha256 of the bytes read> <user.assetfs.sha256>, or E <asset/vN> <path> <error>.
            MNT=$1; LIST=$2; STOP=$3; LISTING=$4
            while [ ! -e "$STOP" ]; do
              line=$(shuf -n 1 "$LIST" 2>/dev/null)
              if [ -z "$line" ]; then sleep 0.05; continue; fi
              dir="$MNT/$line"
              if ! find "$dir" -type f > "$LISTING" 2>&1; then echo "E $line . find: $(head -c 300 "$LISTING" | tr '\\n' ' ')"; continue; fi
              while IFS= read -r file; do
                [ -e "$STOP" ] && break
                rel="${file#$dir/}"
                if ! sum=$(sha256sum < "$file" 2>&1); then echo "E $line $rel read: $sum" | tr '\\n' ' '; echo; continue; fi
                if ! x=$(getfattr --absolute-names --only-values -n user.assetfs.sha256 "$file" 2>&1); then echo "E $line $rel xattr: $x" | tr '\\n' ' '; echo; continue; fi
                echo "R $line $rel ${sum%% *} $x"
              done < "$LISTING"
            done
            """

        @Test("soak: importers into two assets, workspace writers + commits, gc, deletes and 8 readers checking sha256 through the mount")
        func soak() throws {
            let env = ProcessInfo.processInfo.environment
            let seconds = env["ASSETFS_SOAK_SECONDS"].flatMap(Double.init) ?? (Mode.long ? 300 : 40)
            let f = try Fixture("soak", backstop: seconds + 300)
            defer { f.close() }
            let registry = SoakRegistry(listPath: f.root + "/readable.txt")
            let script = f.root + "/reader.sh"
            try Self.readerScript.write(toFile: script, atomically: true, encoding: .utf8)
            let shared = randomBytes(1_500_000, seed: 77)

            /// A source tree for importer `who`, round `k`: shared bytes (dedup across assets), own bytes, a table.
            @Sendable func source(_ who: String, _ k: Int) throws -> (String, TreeSignature) {
                let dir = f.root + "/src-\(who)"
                removeTree(dir)
                var g = SplitMix64(seed: Mode.seed &+ UInt64(k) &* 131 &+ UInt64(who.hashValue & 0xFFFF))
                try makeTree(dir, [
                    ("shared.bin", shared),
                    ("own/\(who).bin", randomBytes(200_000 + Int(g.next() % 1_000_000), seed: g.next())),
                    ("rows.csv", csvBytes(100_000 + Int(g.next() % 200_000), seed: g.next())),
                    ("meta/\(k).json", Array("{\"who\":\"\(who)\",\"k\":\(k)}\n".utf8)),
                ])
                return (dir, try treeSignature(dir))
            }
            // One readable version per asset before anything starts.
            for asset in ["alpha", "beta"] {
                let (dir, sig) = try source(asset + "-seed", 0)
                let n = try f.importVersion(asset, from: dir)
                registry.add("\(asset)/v\(n)", sig, readable: true)
            }
            try f.mount()
            let deadline = Date().addingTimeInterval(seconds)
            let stopFile = f.root + "/stop"
            var readers: [ChildProcess] = []
            for i in 0..<8 {
                readers.append(try f.start(["bash", script, f.mnt, registry.listPath, stopFile, f.root + "/listing-\(i)"]))
            }
            let group = DispatchGroup()
            func worker(_ name: String, _ body: @escaping @Sendable () -> Void) {
                group.enter()
                let t = Thread {
                    body()
                    group.leave()
                }
                t.name = name
                t.start()
            }

            // Importers: two into alpha, one into beta (every third beta version is disposable).
            for (who, asset) in [("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")] {
                worker("importer-\(who)") {
                    var k = 1
                    while Date() < deadline {
                        guard let (dir, sig) = try? source(who, k) else { registry.count("import", ok: false, "source"); break }
                        let r = f.cli(["import", asset, dir, "-m", "\(who) \(k)"], timeout: 120)
                        if r.succeeded, let n = parseVersionLine(r.out, asset: asset) {
                            registry.count("import", ok: true)
                            registry.add("\(asset)/v\(n)", sig, readable: !(asset == "beta" && k % 3 == 0))
                        } else {
                            registry.count("import", ok: false, "\(r)")
                        }
                        k += 1
                    }
                }
            }
            // Workspace writer + committer.
            worker("workspaces") {
                var k = 0
                while Date() < deadline {
                    let asset = k % 2 == 0 ? "alpha" : "beta"
                    let ws = "w\(k)"
                    k += 1
                    guard let base = registry.latestReadable(asset), let baseSig = registry.signature(base) else { continue }
                    let baseN = base.split(separator: "/")[1]
                    let c = f.cli(["workspace", "create", asset, ws, "--from", String(baseN)])
                    registry.count("workspace create", ok: c.succeeded, "\(c)")
                    guard c.succeeded else { continue }
                    let dir = f.mnt + "/\(asset)/workspaces/\(ws)"
                    guard poll(seconds: 10, { access(dir, F_OK) == 0 }) != nil else {
                        registry.count("workspace write", ok: false, "\(dir) did not appear")
                        continue
                    }
                    var sig = baseSig
                    do {
                        let fresh = randomBytes(300_000 + k * 100, seed: 90_000 + UInt64(k))
                        try writeFile(dir + "/added/\(k).bin", fresh)
                        sig["added"] = "dir"
                        sig["added/\(k).bin"] = "file 644 \(fresh.count) \(sha256Hex(fresh))"
                        // Rewrite the table completely and remove the per-round json.
                        let table = csvBytes(50_000, seed: 91_000 + UInt64(k))
                        try writeFile(dir + "/rows.csv", table)
                        sig["rows.csv"] = "file 644 \(table.count) \(sha256Hex(table))"
                        registry.count("workspace write", ok: true)
                    } catch {
                        registry.count("workspace write", ok: false, "\(ws): \(error)")
                        _ = f.cli(["workspace", "discard", "\(asset)/\(ws)"])
                        continue
                    }
                    let r = f.cli(["commit", "\(asset)/\(ws)", "--allow-diverge", "-m", "soak \(ws)"], timeout: 120)
                    if r.succeeded, let n = parseVersionLine(r.out, asset: asset) {
                        registry.count("commit", ok: true)
                        registry.add("\(asset)/v\(n)", sig, readable: true)
                    } else {
                        registry.count("commit", ok: false, "\(r)")
                    }
                }
            }
            // gc and deletes.
            worker("gc") {
                while Date() < deadline {
                    usleep(2_500_000)
                    let r = f.cli(["gc"], timeout: 120)
                    registry.count("gc", ok: r.succeeded, "\(r)")
                }
            }
            worker("deleter") {
                while Date() < deadline {
                    usleep(1_500_000)
                    guard let v = registry.takeDisposable() else { continue }
                    let parts = v.split(separator: "/")
                    let r = f.cli(["delete", "\(parts[0])@\(parts[1])"])
                    registry.count("delete", ok: r.succeeded, "\(r)")
                    if r.succeeded { registry.markDeleted(v) }
                }
            }

            let joined = group.wait(timeout: .now() + seconds + 180)
            _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
            if joined == .timedOut { Issue.record("soak workers did not finish within \(Int(seconds + 180)) s") }
            var reads = 0, mismatches = 0, readErrors = 0, readBytes = 0
            var readProblems: [String] = []
            for (i, reader) in readers.enumerated() {
                let r = f.io("reader \(i) shutdown", seconds: 60) { reader.wait(timeout: 60) { f.abortConnection() } }
                if r.killed || r.timedOut || r.exitCode != 0 { readProblems.append("reader \(i): \(r)") }
                for line in r.out.split(separator: "\n") {
                    let w = line.split(separator: " ", omittingEmptySubsequences: false)
                    if w.first == "E" {
                        readErrors += 1
                        if readProblems.count < 20 { readProblems.append(String(line)) }
                        continue
                    }
                    guard w.count == 5, w[0] == "R" else {
                        readErrors += 1
                        if readProblems.count < 20 { readProblems.append("unparsable reader line: \(line.prefix(200))") }
                        continue
                    }
                    reads += 1
                    let version = String(w[1]), path = String(w[2]), sum = String(w[3]), xattr = String(w[4])
                    let want = registry.signature(version)?[path]
                    if let size = want?.split(separator: " ").dropFirst(2).first.flatMap({ Int($0) }) { readBytes += size }
                    if sum != xattr || want?.hasSuffix(" " + sum) != true {
                        mismatches += 1
                        if readProblems.count < 20 { readProblems.append("MISMATCH \(version):\(path): read \(sum), xattr \(xattr), expected \(want ?? "no such file")") }
                    }
                }
            }
            try f.unmount()
            let (vr, _) = f.verify()
            #expect(vr.succeeded, "verify after the soak: \(vr)")
            // Every registered version that was not deleted reads back as created.
            var exportMismatch = 0
            let all = registry.allSignatures.filter { !registry.deleted.contains($0.key) }
            var g = SplitMix64(seed: Mode.seed &+ 50)
            let sample = Mode.long ? Array(all.keys) : Array(all.keys.shuffled(using: &g).prefix(30))
            for v in sample.sorted() {
                let parts = v.split(separator: "/")
                do {
                    let got = try f.exportSignature("\(parts[0])@\(parts[1])")
                    let diff = signatureDifferences(expected: all[v]!, actual: got)
                    if !diff.isEmpty { exportMismatch += 1; Issue.record("\(v) after the soak: \(diff.joined(separator: "; "))") }
                } catch {
                    exportMismatch += 1
                    Issue.record("\(v) after the soak: \(error)")
                }
            }
            var ops = registry.operations
            ops["read (files)"] = reads
            ops["export check"] = sample.count
            var errors = registry.errors
            if readErrors > 0 { errors["read"] = readErrors }
            if exportMismatch > 0 { errors["export check"] = exportMismatch }
            Ledger.shared.soak(Ledger.SoakRow(seconds: seconds, operations: ops, errors: errors, reads: reads, readBytes: readBytes,
                                              mismatches: mismatches, verifyOK: vr.succeeded))
            #expect(mismatches == 0, "reads that did not match their sha256: \(mismatches)\n\(readProblems.joined(separator: "\n"))")
            #expect(readErrors == 0 && readProblems.isEmpty, "reader errors: \(readErrors)\n\(readProblems.joined(separator: "\n"))")
            #expect(registry.errors.isEmpty, "operations that failed during the soak: \(registry.errors)\n\(registry.problemList.joined(separator: "\n"))")
            #expect(reads > 100, "the readers read only \(reads) files")
            #expect((ops["import"] ?? 0) >= 6 && (ops["commit"] ?? 0) >= 2 && (ops["gc"] ?? 0) >= 2, "too little happened: \(ops)")
        }
    }
}
