import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the package and the binary under test are.
enum Paths {
    /// The package root, four levels above this file (`Tests/ReliabilityTests/Support/Processes.swift`).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let assetfs = packageRoot + "/.build/debug/assetfs"

    /// Fails (never skips) when the binary has not been built.
    static func requireBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: assetfs) else {
            throw Failure("the assetfs binary is missing at \(assetfs): build it first with `swift build --build-tests` in \(packageRoot)")
        }
    }
}

/// Long variants (50 kills per operation, bigger trees, longer soak) run only with ASSETFS_LONG=1.
enum Mode {
    static let long: Bool = ProcessInfo.processInfo.environment["ASSETFS_LONG"] == "1"
    /// Kills per operation in the crash tests.
    static var kills: Int { long ? 50 : 10 }
    /// Seed for everything random; printed in the report so a failing run can be repeated with ASSETFS_SEED.
    static let seed: UInt64 = {
        if let s = ProcessInfo.processInfo.environment["ASSETFS_SEED"], let v = UInt64(s) { return v }
        var g = SystemRandomNumberGenerator()
        return g.next() % 1_000_000_007
    }()
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a finished (or killed) child process did.
struct ProcessResult: CustomStringConvertible, Sendable {
    var argv: [String]
    /// The exit code when the process exited normally.
    var exitCode: Int32?
    /// The signal that ended the process, if one did.
    var signal: Int32?
    var timedOut = false
    var stdout = Data()
    var stderr = Data()
    var seconds = 0.0

    init(argv: [String]) { self.argv = argv }

    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
    var succeeded: Bool { exitCode == 0 && !timedOut }
    var killed: Bool { signal != nil }
    var errLines: [String] { err.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    var description: String {
        var s = "`\(argv.map { $0.count > 80 ? String($0.prefix(80)) + "...(\($0.count) chars)" : $0 }.joined(separator: " "))`"
        if timedOut { s += " TIMED OUT after \(String(format: "%.1f", seconds)) s (killed)" }
        if let code = exitCode { s += " exited \(code)" }
        if let sig = signal { s += " killed by signal \(sig)" }
        let e = err.trimmingCharacters(in: .whitespacesAndNewlines)
        if !e.isEmpty { s += "; stderr: \(e.prefix(1500))" }
        let o = out.trimmingCharacters(in: .whitespacesAndNewlines)
        if !o.isEmpty { s += "; stdout: \(o.prefix(500))" }
        return s
    }
}

/// A child started with posix_spawn: empty signal mask, default TERM/INT/HUP/PIPE handlers, stdin from
/// /dev/null, stdout/stderr into files, and no other inherited descriptors.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    let argv: [String]
    let started = Date()
    private let outPath: String
    private let errPath: String
    private let lock = NSLock()
    private var status: Int32?  // Protected by `lock`: the raw wait status once reaped.

    private init(pid: pid_t, argv: [String], outPath: String, errPath: String) {
        self.pid = pid
        self.argv = argv
        self.outPath = outPath
        self.errPath = errPath
    }

    static func spawn(_ argv: [String], scratch: String, environment: [String: String] = [:]) throws -> ChildProcess {
        try spawn(raw: argv.map { Array($0.utf8) }, scratch: scratch, environment: environment)
    }

    /// Arguments as raw bytes, so a test can pass names that are not UTF-8.
    static func spawn(raw argv: [[UInt8]], scratch: String, environment: [String: String] = [:]) throws -> ChildProcess {
        let display = argv.map { String(decoding: $0, as: UTF8.self) }
        var outTemplate = Array((scratch + "/stdout-XXXXXX").utf8CString)
        var errTemplate = Array((scratch + "/stderr-XXXXXX").utf8CString)
        let outFD = mkstemp(&outTemplate)
        let errFD = mkstemp(&errTemplate)
        for fd in [outFD, errFD] where fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer {
            if outFD >= 0 { Glibc.close(outFD) }
            if errFD >= 0 { Glibc.close(errFD) }
        }
        guard outFD >= 0, errFD >= 0 else { throw Failure("mkstemp in \(scratch) failed: \(String(cString: strerror(errno)))") }
        let outPath = cArrayString(outTemplate)
        let errPath = cArrayString(errTemplate)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outFD, 1)
        posix_spawn_file_actions_adddup2(&actions, errFD, 2)
        _ = addCloseFrom(&actions, 3)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ASSETFS_STORE")
        for (k, v) in environment { env[k] = v }
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { bytes in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
            p[bytes.count] = 0
            return p
        } + [nil]
        defer {
            for p in envp { free(p) }
            for p in cargs { p?.deallocate() }
        }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, cargs[0]!, &actions, &attr, cargs, envp)
        guard rc == 0 else {
            unlink(outPath)
            unlink(errPath)
            throw Failure("cannot start `\(display.joined(separator: " "))`: \(String(cString: strerror(rc)))")
        }
        return ChildProcess(pid: pid, argv: display, outPath: outPath, errPath: errPath)
    }

    /// Reaps the child if it has exited; true once it has.
    func poll() -> Bool {
        lock.withLock {
            if status != nil { return true }
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid { status = s; return true }
            if r < 0 && errno == ECHILD { status = -1; return true }
            return false
        }
    }

    /// Waits up to `timeout` seconds. On timeout calls `onTimeout` (which should cut a hung FUSE connection),
    /// then SIGKILLs the child and reaps it.
    func wait(timeout: Double, onTimeout: () -> Void = {}) -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        var sleep: UInt32 = 500
        while !poll() {
            if Date() >= deadline {
                timedOut = true
                onTimeout()
                kill(pid, SIGKILL)
                let hard = Date().addingTimeInterval(10)
                while !poll() && Date() < hard { usleep(10_000) }
                break
            }
            usleep(sleep)
            sleep = min(sleep * 2, 10_000)
        }
        return result(timedOut: timedOut)
    }

    func signal(_ signal: Int32) { if !poll() { kill(pid, signal) } }

    /// The stdout written so far (the process may still run).
    func currentStdout() -> String {
        String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self)
    }

    private func result(timedOut: Bool) -> ProcessResult {
        var r = ProcessResult(argv: argv)
        r.timedOut = timedOut
        r.seconds = Date().timeIntervalSince(started)
        if let s = lock.withLock({ status }), s >= 0 {
            // WIFEXITED / WEXITSTATUS / WTERMSIG are macros: decode by hand.
            if s & 0x7F == 0 { r.exitCode = (s >> 8) & 0xFF } else if s & 0x7F != 0x7F { r.signal = s & 0x7F }
        }
        r.stdout = FileManager.default.contents(atPath: outPath) ?? Data()
        r.stderr = FileManager.default.contents(atPath: errPath) ?? Data()
        unlink(outPath)
        unlink(errPath)
        return r
    }
}

/// A NUL-terminated C array as a String.
func cArrayString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// True once `pid` no longer runs (gone, or a zombie waiting for a parent that is not us).
func processGone(_ pid: pid_t) -> Bool {
    if kill(pid, 0) != 0 && errno == ESRCH { return true }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.range(of: ") ", options: .backwards) else { return true }
    return stat[close.upperBound...].first == "Z"
}

/// Polls `condition` every 20 ms for up to `seconds`; returns how long it took, or nil if it never held.
@discardableResult
func poll(seconds: Double, _ condition: () throws -> Bool) rethrows -> Double? {
    let start = Date()
    while true {
        if try condition() { return Date().timeIntervalSince(start) }
        if Date().timeIntervalSince(start) > seconds { return nil }
        usleep(20_000)
    }
}

/// "ASSET vN" (what import and commit print) -> N.
func parseVersionLine(_ text: String, asset: String) -> Int? {
    let words = text.split(whereSeparator: \.isWhitespace)
    guard words.count == 2, words[0] == asset, words[1].hasPrefix("v") else { return nil }
    return Int(words[1].dropFirst())
}
