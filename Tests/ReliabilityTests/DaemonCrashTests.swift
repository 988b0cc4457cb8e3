import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What the in-process writer managed to make durable before the daemon died.
final class WriterLog: @unchecked Sendable {
    private let lock = NSLock()
    // All protected by `lock`.
    private var _durable: [String: [UInt8]] = [:]  // closed: the whole content must survive
    private var _synced: [String: [UInt8]] = [:]   // fsynced, still open: this prefix must survive
    private var _uncertain: Set<String> = []       // an operation on it was cut off: no promise
    private var _stop = false
    private var _error: String?
    private var _operations = 0
    private var _nextBase = 0

    var stop: Bool {
        get { lock.withLock { _stop } }
        set { lock.withLock { _stop = newValue } }
    }
    var durable: [String: [UInt8]] { lock.withLock { _durable } }
    var synced: [String: [UInt8]] { lock.withLock { _synced } }
    var uncertain: Set<String> { lock.withLock { _uncertain } }
    var error: String? { lock.withLock { _error } }
    var operations: Int { lock.withLock { _operations } }

    func closed(_ path: String, _ bytes: [UInt8]) {
        lock.withLock {
            _durable[path] = bytes
            _synced.removeValue(forKey: path)
            _operations += 1
        }
    }
    /// The next base file index to patch.
    func takeBase() -> Int { lock.withLock { defer { _nextBase += 1 }; return _nextBase } }
    func fsynced(_ path: String, _ prefix: [UInt8]) { lock.withLock { _synced[path] = prefix } }
    func cutOff(_ path: String, _ error: String) {
        lock.withLock {
            _uncertain.insert(path)
            _error = error
        }
    }
}

extension Reliability.CrashTests {
    /// One writer round: new files written and closed, files grown with fsync between parts, base files patched
    /// in place. Stops at the first error (the daemon is gone) or when asked to.
    private static func writerRound(_ ws: String, round: Int, log: WriterLog, baseFiles: [String]) {
        var g = SplitMix64(seed: Mode.seed &+ UInt64(round) &* 7919)
        var j = 0
        while !log.stop {
            let kind = j % 3
            switch kind {
            case 0:
                let rel = "r\(round)/closed-\(j).bin"
                let bytes = randomBytes(65_536 * Int(1 + g.next() % 6), seed: g.next())
                let fd = Glibc.open(ws + "/" + rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd < 0 { return log.cutOff(rel, "open \(rel): errno \(errno)") }
                var ok = true
                for start in stride(from: 0, to: bytes.count, by: 65_536) where ok {
                    let part = Array(bytes[start..<min(start + 65_536, bytes.count)])
                    do { try writeAll(fd: fd, part, path: rel) } catch { ok = false; log.cutOff(rel, "\(error)") }
                }
                if Glibc.close(fd) != 0 && ok { ok = false; log.cutOff(rel, "close \(rel): errno \(errno)") }
                if !ok { return }
                log.closed(rel, bytes)
            case 1:
                let rel = "r\(round)/synced-\(j).bin"
                let fd = Glibc.open(ws + "/" + rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd < 0 { return log.cutOff(rel, "open \(rel): errno \(errno)") }
                var written: [UInt8] = []
                for _ in 0..<4 {
                    let part = randomBytes(65_536 + Int(g.next() % 4096), seed: g.next())
                    do { try writeAll(fd: fd, part, path: rel) } catch {
                        Glibc.close(fd)
                        return log.cutOff(rel, "\(error)")
                    }
                    written += part
                    if fsync(fd) != 0 {
                        let e = errno
                        Glibc.close(fd)
                        return log.cutOff(rel, "fsync \(rel): errno \(e)")
                    }
                    log.fsynced(rel, written)
                }
                if Glibc.close(fd) != 0 { return log.cutOff(rel, "close \(rel): errno \(errno)") }
                log.closed(rel, written)
            default:
                let index = log.takeBase()
                guard index < baseFiles.count else { j += 1; continue }
                let rel = baseFiles[index]
                let path = ws + "/" + rel
                guard var content = try? readAll(path) else { return log.cutOff(rel, "read \(rel) failed") }
                let patch = randomBytes(4096 * Int(1 + g.next() % 8), seed: g.next())
                let at = Int(g.next() % UInt64(max(1, content.count - patch.count)))
                let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
                if fd < 0 { return log.cutOff(rel, "open \(rel): errno \(errno)") }
                let n = patch.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(at)) }
                if n != patch.count {
                    let e = errno
                    Glibc.close(fd)
                    return log.cutOff(rel, "pwrite \(rel): \(n) errno \(e)")
                }
                if Glibc.close(fd) != 0 { return log.cutOff(rel, "close \(rel): errno \(errno)") }
                content.replaceSubrange(at..<(at + patch.count), with: patch)
                log.closed(rel, content)
            }
            j += 1
        }
    }

    @Test("mount daemon: SIGKILL during workspace writes; data closed or fsynced before the kill is there after remount")
    func daemonKills() throws {
        let f = try Fixture("crash-daemon", backstop: 500)
        defer { f.close() }
        var rng = SplitMix64(seed: Mode.seed &+ 6)
        // Base files at the top level and in a subdirectory (an in-place edit below an untouched directory was
        // once lost by commit: see WorkspaceEditTests).
        let baseFiles = (0..<(Mode.kills * 3)).map { $0 % 2 == 0 ? "b\($0).bin" : "base/b\($0).bin" }
        try makeTree(f.src, baseFiles.enumerated().map { ($1, randomBytes(200_000, seed: 300 + UInt64($0))) } + [("keep.csv", csvBytes(300_000, seed: 9))])
        let baseSig = try treeSignature(f.src)
        try f.importVersion()
        try f.cliOK(["workspace", "create", "data", "ws"])
        let ws = f.mnt + "/data/workspaces/ws"
        let log = WriterLog()
        var pid = try f.mount()
        var totalOps = 0

        for k in 1...Mode.kills {
            let opsBefore = log.operations
            log.stop = false
            let round = k
            let done = DispatchSemaphore(value: 0)
            try f.io("mkdir round \(k)") {
                guard mkdir(ws + "/r\(round)", 0o755) == 0 else { throw SysError(op: "mkdir", path: ws + "/r\(round)", code: errno) }
            }
            let writer = Thread { Self.writerRound(ws, round: round, log: log, baseFiles: baseFiles); done.signal() }
            writer.start()
            let delay = 0.1 + Double(rng.next() % 1_100) / 1000
            usleep(UInt32(delay * 1_000_000))
            kill(pid, SIGKILL)
            // The writer must come back (ENOTCONN) promptly; if it hangs in the kernel the watchdog cuts the connection.
            let returned = f.io("writer after daemon kill \(k)", seconds: 20) { done.wait(timeout: .now() + 25) == .success }
            if !returned {
                log.stop = true
                Issue.record("daemon kill \(k): the writer did not return within 25 s")
                done.wait()
            }
            log.stop = true
            var healthy = true
            if f.awaitDeadMountGone() == nil {
                healthy = false
                Issue.record("daemon kill \(k): the dead mount was still in the mount table 10 s after SIGKILL (auto_unmount)")
            }
            let (vr, _) = f.verify()
            if !vr.succeeded { healthy = false; Issue.record("daemon kill \(k): verify after the kill: \(vr)") }
            pid = try f.mount()
            // Everything closed or fsynced before the kill must be there.
            let uncertain = log.uncertain
            var checked = 0
            try f.io("check after remount \(k)", seconds: 60) {
                for (rel, bytes) in log.durable where !uncertain.contains(rel) {
                    checked += 1
                    do {
                        let got = try readAll(ws + "/" + rel)
                        if !sameBytes(got, bytes) { healthy = false; Issue.record("daemon kill \(k) after \(ms(delay)): \(rel) was closed before the kill but reads back different: \(firstDifference(got, bytes))") }
                    } catch {
                        healthy = false
                        Issue.record("daemon kill \(k) after \(ms(delay)): \(rel) was closed before the kill but cannot be read after remount: \(error)")
                    }
                }
                for (rel, prefix) in log.synced {
                    checked += 1
                    do {
                        let got = try readAll(ws + "/" + rel)
                        if got.count < prefix.count || !sameBytes(Array(got[0..<prefix.count]), prefix) {
                            healthy = false
                            Issue.record("daemon kill \(k): \(rel) had \(prefix.count) bytes fsynced before the kill; after remount: \(got.count) bytes, \(firstDifference(Array(got.prefix(prefix.count)), prefix))")
                        }
                    } catch {
                        healthy = false
                        Issue.record("daemon kill \(k): \(rel) was fsynced before the kill but cannot be read after remount: \(error)")
                    }
                }
            }
            totalOps += log.operations - opsBefore
            Ledger.shared.crash("mount daemon during workspace writes", killed: true, healthy: healthy, versions: 0,
                                note: nil)
            _ = checked
        }
        Ledger.shared.measurement("daemon kills: \(totalOps) workspace writes completed (closed) across \(Mode.kills) kills, \(log.uncertain.count) cut off by the kill")

        // The workspace still commits (open-for-write records of killed daemons do not block it), and the
        // version holds every closed file.
        let status = f.cli(["workspace", "status", "data/ws"])
        #expect(status.succeeded, "\(status)")
        let commit = f.cli(["commit", "data/ws", "-m", "after daemon kills"])
        #expect(commit.succeeded, "commit after \(Mode.kills) daemon kills: \(commit)")
        try f.unmount()
        let (vr, _) = f.verify()
        #expect(vr.succeeded, "verify after the commit: \(vr)")
        guard let n = parseVersionLine(commit.out, asset: "data") else { return }
        let sig = try f.exportSignature("data@v\(n)")
        let uncertain = log.uncertain
        var expected = baseSig
        for (rel, bytes) in log.durable where !uncertain.contains(rel) { expected[rel] = "file 644 \(bytes.count) \(sha256Hex(bytes))" }
        var lost: [String] = []
        for (rel, want) in expected.sorted(by: { $0.key < $1.key }) where !uncertain.contains(rel) && want.hasPrefix("file") {
            let got = sig[rel].map { $0.split(separator: " ").dropFirst(2).joined(separator: " ") }
            let wantTail = want.split(separator: " ").dropFirst(2).joined(separator: " ")
            if got != wantTail { lost.append("\(rel): expected \(wantTail), got \(got ?? "nothing")") }
        }
        #expect(lost.isEmpty, "committed v\(n) after the daemon kills differs from what was closed in the workspace in \(lost.count) files:\n\(lost.prefix(10).joined(separator: "\n"))")
    }
}
