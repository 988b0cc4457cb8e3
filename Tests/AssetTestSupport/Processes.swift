import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished (or killed) child process did.
public struct ProcessResult: CustomStringConvertible, Sendable {
    public var argv: [String]
    /// The exit code when the process exited normally.
    public var exitCode: Int32?
    /// The signal that ended the process, if one did.
    public var signal: Int32?
    public var timedOut = false
    public var stdout = Data()
    public var stderr = Data()
    public var seconds = 0.0

    public init(argv: [String]) { self.argv = argv }

    public var out: String { String(decoding: stdout, as: UTF8.self) }
    public var err: String { String(decoding: stderr, as: UTF8.self) }
    public var succeeded: Bool { exitCode == 0 && !timedOut }
    public var killed: Bool { signal != nil }
    public var lines: [String] { out.split(separator: "\n").map(String.init) }
    public var errLines: [String] { err.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    /// The command (arguments with spaces quoted, very long ones shortened), how it ended and its output.
    public var description: String {
        let shown = argv.map { arg -> String in
            if arg.count > 80 { return String(arg.prefix(80)) + "...(\(arg.count) chars)" }
            return arg.contains(" ") ? "'\(arg)'" : arg
        }
        var s = "`\(shown.joined(separator: " "))`"
        if timedOut { s += " TIMED OUT after \(String(format: "%.1f", seconds)) s (killed)" }
        if let code = exitCode { s += " exited \(code)" }
        if let sig = signal { s += " killed by signal \(sig)" }
        let e = err.trimmingCharacters(in: .whitespacesAndNewlines)
        if !e.isEmpty { s += "; stderr: \(e.prefix(2000))" }
        let o = out.trimmingCharacters(in: .whitespacesAndNewlines)
        if !o.isEmpty { s += "; stdout: \(o.prefix(1000))" }
        return s
    }
}

/// Starts `argv` (looked up in PATH when it has no slash; raw bytes, so a test can pass names that are not
/// UTF-8) with posix_spawn: stdin from /dev/null (or `stdin`), stdout and stderr into the given descriptors, no other
/// inherited descriptor (a child must never hold a file of another test's mount open), an empty signal mask and
/// default TERM/INT/HUP/PIPE/QUIT/USR1/USR2 handlers (children of a Swift test thread otherwise inherit its
/// blocked signals, and a FUSE daemon would never see SIGTERM). The environment is ours without ASSETFS_STORE,
/// plus `environment`. `ownProcessGroup`: the child leads a new process group, so that a timeout can end all of
/// it. Returns the child's pid.
public func spawnProcess(_ argv: [[UInt8]], stdout: Int32, stderr: Int32, environment: [String: String] = [:],
                         ownProcessGroup: Bool = false, stdin: Int32? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let stdin {
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
    } else {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    }
    posix_spawn_file_actions_adddup2(&actions, stdout, 1)
    posix_spawn_file_actions_adddup2(&actions, stderr, 2)
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
    var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    if ownProcessGroup {
        posix_spawnattr_setpgroup(&attr, 0)
        flags |= POSIX_SPAWN_SETPGROUP
    }
    posix_spawnattr_setflags(&attr, Int16(flags))

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
        let display = argv.map { String(decoding: $0, as: UTF8.self) }
        throw TestFailure("cannot start `\(display.joined(separator: " "))`: \(String(cString: strerror(rc)))")
    }
    return pid
}

/// A child started with `spawnProcess`, its stdout and stderr going into files in a scratch directory (removed
/// once the result is read).
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let argv: [String]
    public let started = Date()
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

    /// Starts `argv`; `environment` entries are added to ours (see `spawnProcess`).
    public static func spawn(_ argv: [String], scratch: String, environment: [String: String] = [:]) throws -> ChildProcess {
        try spawn(raw: argv.map { Array($0.utf8) }, scratch: scratch, environment: environment)
    }

    /// Arguments as raw bytes, so a test can pass names that are not UTF-8.
    public static func spawn(raw argv: [[UInt8]], scratch: String, environment: [String: String] = [:]) throws -> ChildProcess {
        var outTemplate = Array((scratch + "/stdout-XXXXXX").utf8CString)
        var errTemplate = Array((scratch + "/stderr-XXXXXX").utf8CString)
        let outFD = mkstemp(&outTemplate)
        let errFD = mkstemp(&errTemplate)
        for fd in [outFD, errFD] where fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer {
            if outFD >= 0 { Glibc.close(outFD) }
            if errFD >= 0 { Glibc.close(errFD) }
        }
        guard outFD >= 0, errFD >= 0 else { throw TestFailure("mkstemp in \(scratch) failed: \(String(cString: strerror(errno)))") }
        let outPath = cArrayString(outTemplate)
        let errPath = cArrayString(errTemplate)
        do {
            let pid = try spawnProcess(argv, stdout: outFD, stderr: errFD, environment: environment)
            return ChildProcess(pid: pid, argv: argv.map { String(decoding: $0, as: UTF8.self) }, outPath: outPath, errPath: errPath)
        } catch {
            unlink(outPath)
            unlink(errPath)
            throw error
        }
    }

    /// Reaps the child if it has exited; true once it has.
    public func poll() -> Bool {
        lock.withLock {
            if status != nil { return true }
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid { status = s; return true }
            if r < 0 && errno == ECHILD { status = -1; return true }
            return false
        }
    }

    /// Waits up to `timeout` seconds, polling from every 0.5 ms up to every 10 ms. On timeout calls `onTimeout`
    /// (which should cut a hung FUSE connection, so that a reader stuck in the kernel can die), then SIGKILLs the
    /// child and reaps it.
    public func wait(timeout: Double, onTimeout: () -> Void = {}) -> ProcessResult {
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

    public func signal(_ signal: Int32) { if !poll() { kill(pid, signal) } }

    /// The stdout written so far (the process may still run).
    public func currentStdout() -> String {
        String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self)
    }

    private func result(timedOut: Bool) -> ProcessResult {
        var r = ProcessResult(argv: argv)
        r.timedOut = timedOut
        r.seconds = Date().timeIntervalSince(started)
        if let s = lock.withLock({ status }), s >= 0 {
            (r.exitCode, r.signal) = decodeWaitStatus(s)
        }
        r.stdout = FileManager.default.contents(atPath: outPath) ?? Data()
        r.stderr = FileManager.default.contents(atPath: errPath) ?? Data()
        unlink(outPath)
        unlink(errPath)
        return r
    }
}

/// The exit code (exited normally) or the signal (killed) in a raw wait status. WIFEXITED / WEXITSTATUS /
/// WTERMSIG are macros the Glibc module does not export: decoded by hand.
public func decodeWaitStatus(_ s: Int32) -> (exitCode: Int32?, signal: Int32?) {
    if s & 0x7F == 0 { return ((s >> 8) & 0xFF, nil) }
    if s & 0x7F != 0x7F { return (nil, s & 0x7F) }
    return (nil, nil)
}

/// A NUL-terminated C array as a String.
public func cArrayString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// True once `pid` no longer runs (gone, or a zombie waiting for a parent that is not us).
public func processGone(_ pid: pid_t) -> Bool {
    if kill(pid, 0) != 0 && errno == ESRCH { return true }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.range(of: ") ", options: .backwards) else { return true }
    return stat[close.upperBound...].first == "Z"
}

/// Polls `condition` every 20 ms for up to `seconds`; returns how long it took, or nil if it never held.
@discardableResult
public func poll(seconds: Double, _ condition: () throws -> Bool) rethrows -> Double? {
    let start = Date()
    while true {
        if try condition() { return Date().timeIntervalSince(start) }
        if Date().timeIntervalSince(start) > seconds { return nil }
        usleep(20_000)
    }
}

/// Sends SIGSTOP and waits until every thread of `pid` is stopped: the signal takes effect asynchronously, so
/// a daemon thread could otherwise still answer the next request. False if that did not happen within 5 s.
public func stopProcess(_ pid: pid_t) -> Bool {
    guard kill(pid, SIGSTOP) == 0 else { return false }
    return poll(seconds: 5) {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
        return tasks.allSatisfy { task in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                  let close = stat.range(of: ") ", options: .backwards) else { return true }  // the thread is gone
            let state = stat[close.upperBound...].first
            return state == "T" || state == "t"
        }
    } != nil
}
