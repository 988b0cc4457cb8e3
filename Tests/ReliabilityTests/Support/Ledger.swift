import AssetTestSupport
import Foundation
import Synchronization
import Testing

/// Counts what the reliability tests injected and what they saw, for the table printed after the suite.
final class Ledger: Sendable {
    static let shared = Ledger()

    struct CrashRow {
        var injected = 0
        var killedMidway = 0
        var finishedFirst = 0
        var healthyAfter = 0
        var unhealthyAfter = 0
        var versionsChecked = 0
        var notes: Set<String> = []
    }

    struct CorruptionRow {
        var injected = 0
        var detected = 0
        var exactReport = 0
        var mountExact = 0
        var mountChecked = 0
        var notes: Set<String> = []
    }

    struct SoakRow {
        var seconds = 0.0
        var operations: [String: Int] = [:]
        var errors: [String: Int] = [:]
        var reads = 0
        var readBytes = 0
        var mismatches = 0
        var verifyOK = false
    }

    struct State {
        var crash: [String: CrashRow] = [:]
        var corruption: [String: CorruptionRow] = [:]
        var enospc: [(String, String, Bool)] = []
        var soak: SoakRow?
        var hostile: [String: (tried: Int, ok: Int)] = [:]
        var property: [String: (executions: Int, findings: Int)] = [:]
        var findings: [String] = []
        var measurements: [String] = []
    }

    private let state = Mutex(State())

    func crash(_ op: String, killed: Bool, healthy: Bool, versions: Int = 0, note: String? = nil) {
        state.withLock {
            var row = $0.crash[op] ?? CrashRow()
            row.injected += 1
            if killed { row.killedMidway += 1 } else { row.finishedFirst += 1 }
            if healthy { row.healthyAfter += 1 } else { row.unhealthyAfter += 1 }
            row.versionsChecked += versions
            if let note { row.notes.insert(note) }
            $0.crash[op] = row
        }
    }

    func corruption(_ kind: String, detected: Bool, exact: Bool, mountChecked: Bool = false, mountExact: Bool = false, note: String? = nil) {
        state.withLock {
            var row = $0.corruption[kind] ?? CorruptionRow()
            row.injected += 1
            if detected { row.detected += 1 }
            if exact { row.exactReport += 1 }
            if mountChecked { row.mountChecked += 1 }
            if mountExact { row.mountExact += 1 }
            if let note { row.notes.insert(note) }
            $0.corruption[kind] = row
        }
    }

    func enospc(_ scenario: String, _ outcome: String, ok: Bool) {
        state.withLock { $0.enospc.append((scenario, outcome, ok)) }
    }

    func soak(_ row: SoakRow) { state.withLock { $0.soak = row } }

    func hostile(_ kind: String, ok: Bool) {
        state.withLock {
            var row = $0.hostile[kind] ?? (0, 0)
            row.tried += 1
            if ok { row.ok += 1 }
            $0.hostile[kind] = row
        }
    }

    func property(_ target: String, executions: Int, findings: Int) {
        state.withLock {
            var row = $0.property[target] ?? (0, 0)
            row.executions += executions
            row.findings += findings
            $0.property[target] = row
        }
    }

    /// A bug or notable behaviour, listed under the table.
    func finding(_ text: String) { state.withLock { if !$0.findings.contains(text) { $0.findings.append(text) } } }

    func measurement(_ text: String) { state.withLock { $0.measurements.append(text) } }

    // MARK: The table

    func report(seconds: Double) -> String {
        let s = state.withLock { $0 }
        var out: [String] = []
        out.append("## Reliability")
        out.append("")
        out.append("`swift test --skip-build --filter ReliabilityTests` (\(Mode.long ? "ASSETFS_LONG=1" : "default run"), seed \(Mode.seed), \(String(format: "%.0f", seconds)) s on \(ProcessInfo.processInfo.activeProcessorCount) cores). Fuzzing: `Fuzz/run.sh SECONDS`.")
        out.append("")
        if !s.crash.isEmpty {
            out.append("| crash injected (SIGKILL) | kills | mid-operation | after it finished | store healthy after | versions re-read |")
            out.append("|:--|--:|--:|--:|--:|--:|")
            for (op, r) in s.crash.sorted(by: { $0.key < $1.key }) {
                out.append("| \(op) | \(r.injected) | \(r.killedMidway) | \(r.finishedFirst) | \(r.healthyAfter)/\(r.injected) | \(r.versionsChecked) |")
            }
            out.append("")
            out.append("Healthy = the store opens, `verify` exits 0, every version reported as created exports byte for byte, every visible version equals a tree that was imported or committed, and (daemon kills) closed or fsynced workspace data is there after remount.")
            out.append("")
        }
        if !s.corruption.isEmpty {
            out.append("| corruption injected | cases | `verify` fails | names exactly the damaged chunks and version:paths | mount: EIO exactly for affected files |")
            out.append("|:--|--:|--:|--:|--:|")
            for (k, r) in s.corruption.sorted(by: { $0.key < $1.key }) {
                let mount = r.mountChecked == 0 ? "n/a" : "\(r.mountExact)/\(r.mountChecked)"
                out.append("| \(k) | \(r.injected) | \(r.detected)/\(r.injected) | \(r.exactReport)/\(r.injected) | \(mount) |")
            }
            out.append("")
        }
        if !s.enospc.isEmpty {
            out.append("| disk full (tmpfs) | outcome | as required |")
            out.append("|:--|:--|:--:|")
            for (scenario, outcome, ok) in s.enospc { out.append("| \(scenario) | \(outcome) | \(ok ? "yes" : "NO") |") }
            out.append("")
        }
        if let soak = s.soak {
            let ops = soak.operations.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let errs = soak.errors.isEmpty ? "none" : soak.errors.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            out.append("| concurrency soak | value |")
            out.append("|:--|:--|")
            out.append("| duration | \(String(format: "%.0f", soak.seconds)) s |")
            out.append("| operations | \(ops) |")
            out.append("| reads through the mount checked against sha256 | \(soak.reads) files (\(soak.readBytes / 1_000_000) MB), \(soak.mismatches) mismatches |")
            out.append("| errors | \(errs) |")
            out.append("| `verify` after | \(soak.verifyOK ? "passes" : "FAILS") |")
            out.append("")
        }
        if !s.hostile.isEmpty {
            out.append("| hostile input | cases | handled as required |")
            out.append("|:--|--:|--:|")
            for (k, r) in s.hostile.sorted(by: { $0.key < $1.key }) { out.append("| \(k) | \(r.tried) | \(r.ok)/\(r.tried) |") }
            out.append("")
        }
        var fuzzRows = s.property.sorted(by: { $0.key < $1.key }).map { "| in-test property fuzz: \($0.key) | \($0.value.executions) | \($0.value.findings) |" }
        fuzzRows += FuzzStats.lastRun()
        if !fuzzRows.isEmpty {
            out.append("| fuzzing | executions | findings |")
            out.append("|:--|--:|--:|")
            out += fuzzRows
            out.append("")
        }
        if !s.measurements.isEmpty {
            out.append("Measured: " + s.measurements.joined(separator: "; ") + ".")
            out.append("")
        }
        if !s.findings.isEmpty {
            out.append("Findings:")
            out.append("")
            for f in s.findings { out.append("- \(f)") }
            out.append("")
        }
        return out.joined(separator: "\n")
    }
}

/// The last `Fuzz/run.sh` result, if one was run (it writes `.build/fuzz/last-run.txt`: one table row per target).
enum FuzzStats {
    static func lastRun() -> [String] {
        let path = Paths.packageRoot + "/.build/fuzz/last-run.txt"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return ["| libFuzzer (`Fuzz/run.sh SECONDS`) | not run yet | - |"]
        }
        return text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("|") }
    }
}

/// Prints the reliability table once every test of the suite it is attached to has finished.
struct ReliabilityReportTrait: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let start = Date()
        defer {
            let text = Ledger.shared.report(seconds: Date().timeIntervalSince(start))
            print("\n" + text + "\n")
            let dir = Paths.packageRoot + "/.build"
            if FileManager.default.fileExists(atPath: dir) {
                try? text.write(toFile: dir + "/reliability-report.md", atomically: true, encoding: .utf8)
            }
        }
        try await function()
    }
}

extension Trait where Self == ReliabilityReportTrait {
    static var reliabilityReport: Self { Self() }
}

/// Every reliability suite is nested in this one, so the table is printed once, after all of them.
@Suite("Reliability", .reliabilityReport)
struct Reliability {}
