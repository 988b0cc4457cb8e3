import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a crash test knows about one asset: the trees it tried to create and the versions the CLI reported.
/// `check` compares that knowledge with the store after every kill.
final class AssetModel {
    let asset: String
    /// Versions reported as created (printed by import/commit), or found complete and adopted: they must stay,
    /// byte for byte, until a delete of them is reported.
    var expected: [Int: TreeSignature] = [:]
    /// Every tree an operation tried to create: a visible version must equal one of them.
    var attempts: [TreeSignature] = []
    /// Versions whose delete was reported: they must never be visible again.
    var deleted: Set<Int> = []
    /// Versions whose delete was killed: either complete or gone.
    var maybeDeleted: Set<Int> = []
    /// Version -> Merkle root, recorded when its bytes were checked by an export.
    private var roots: [Int: String] = [:]

    init(_ asset: String) { self.asset = asset }

    /// The store's health after a kill. Records an issue for each problem and returns (healthy, versions re-read).
    /// Versions are immutable: one already checked by export is re-exported only in `full` checks (and a few at
    /// random otherwise); its root must not change and `verify` re-hashes every chunk and file every time.
    func check(_ f: Fixture, _ context: String, full: Bool = false, rng: inout SplitMix64,
               sourceLocation: SourceLocation = #_sourceLocation) -> (Bool, Int) {
        var problems: [String] = []
        var reread = 0
        let (vr, report) = f.verify()
        if vr.killed || vr.exitCode != 0 {
            problems.append("verify: \(vr)")
        } else if let report, let damaged = report["damagedChunks"] as? [Any], !damaged.isEmpty {
            problems.append("verify exited 0 but reports damage: \(vr.out.prefix(800))")
        }
        do {
            let listed = try f.versions(asset)
            for (n, _) in expected where !maybeDeleted.contains(n) && listed[n] == nil {
                problems.append("v\(n) was reported as created but is not listed")
            }
            for n in deleted where listed[n] != nil { problems.append("v\(n) was reported deleted but is listed") }
            let reexport = Set(listed.keys.filter { roots[$0] != nil }.shuffled(using: &rng).prefix(full ? Int.max : 2))
            for (n, info) in listed.sorted(by: { $0.key < $1.key }) {
                let root = info["root"] as? String ?? "?"
                if let known = roots[n], known != root { problems.append("v\(n)'s root changed from \(known) to \(root)") }
                guard roots[n] == nil || reexport.contains(n) else { continue }
                let sig: TreeSignature
                do { sig = try f.exportSignature("\(asset)@v\(n)") } catch {
                    problems.append("v\(n) is listed but does not export: \(error)")
                    continue
                }
                reread += 1
                if let want = expected[n] {
                    let diff = signatureDifferences(expected: want, actual: sig)
                    if !diff.isEmpty { problems.append("v\(n) does not read back as created:\n  " + diff.joined(separator: "\n  ")) }
                } else if attempts.contains(sig) {
                    expected[n] = sig  // complete although never reported (killed after its commit): keep it from now on
                } else {
                    let nearest = attempts.min { signatureDifferences(expected: $0, actual: sig).count < signatureDifferences(expected: $1, actual: sig).count }
                    let diff = nearest.map { signatureDifferences(expected: $0, actual: sig) } ?? []
                    problems.append("v\(n) is visible but equals no tree that was ever imported or committed (half-made?); nearest attempt differs in:\n  " + diff.joined(separator: "\n  "))
                }
                roots[n] = root
            }
            for n in maybeDeleted {
                if listed[n] == nil {
                    maybeDeleted.remove(n)
                    deleted.insert(n)
                    expected.removeValue(forKey: n)
                } else if expected[n] != nil {
                    maybeDeleted.remove(n)  // the delete did not happen: the version must stay as it was
                }
            }
        } catch {
            problems.append("the store does not open / list versions: \(error)")
        }
        for p in problems { Issue.record(Comment(rawValue: "\(context): \(p)"), sourceLocation: sourceLocation) }
        return (problems.isEmpty, reread)
    }
}

/// Ways to kill a CLI operation.
enum Killer {
    /// Starts `args`, SIGKILLs it after a random delay in [0, window), returns the result and the delay.
    static func random(_ f: Fixture, _ args: [String], window: Double, rng: inout SplitMix64) -> (ProcessResult, Double) {
        let delay = Double(rng.next() % 1_000_000) / 1_000_000 * window
        do {
            let child = try f.start([Paths.assetfs] + args)
            usleep(UInt32(delay * 1_000_000))
            child.signal(SIGKILL)
            return (child.wait(timeout: 60) { f.abortConnection() }, delay)
        } catch {
            var r = ProcessResult(argv: args)
            r.stderr = Data("\(error)".utf8)
            return (r, delay)
        }
    }

    /// System calls at which `strace` injects SIGKILL: the points where durability and visibility change.
    /// (Data writes, pwrite64, are not enumerated: a commit has hundreds of them, mostly SQLite pages; random
    /// kills cover kills in the middle of writing.)
    static let durabilityCalls = "fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,ftruncate,rmdir"

    /// Runs `args` under strace, which SIGKILLs the process when it reaches the `point`-th call (counted per
    /// thread) of one of `durabilityCalls`: a crash exactly before that call. Returns the result and whether the
    /// process was killed (false: it finished before reaching that point).
    static func atPoint(_ f: Fixture, _ args: [String], point: Int) -> (ProcessResult, Bool) {
        let calls = durabilityCalls
        let r = f.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=\(calls)",
                       "-e", "inject=\(calls):signal=SIGKILL:when=\(point)", Paths.assetfs] + args, timeout: 120)
        return (r, r.signal == SIGKILL || r.exitCode == 128 + SIGKILL)
    }

    /// Upper bound on injection points per operation (the loops end earlier, when the operation completes).
    static let maxPoints = 120

    static func requireStrace() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else {
            throw TestFailure("strace is required for the systematic crash tests (apt-get install strace)")
        }
    }
}

func ms(_ seconds: Double) -> String { String(format: "%.0f ms", seconds * 1000) }
