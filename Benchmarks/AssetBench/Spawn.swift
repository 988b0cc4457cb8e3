#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// posix_spawn for the mount commands, instead of Foundation's Process.
///
/// Process notices a child's exit through a socket the child inherits, so it waits until every process holding
/// that socket is gone: `assetfs mount --background` hands its inherited descriptors to the daemon, and the
/// Process wait then lasts until the unmount. Here the child gets stdin from /dev/null, stdout and stderr to log
/// files, nothing else (closefrom 3), default signal handlers and an empty signal mask (this process ignores
/// SIGINT/SIGTERM/SIGHUP in favour of a dispatch source, and ignored dispositions survive exec).
enum Spawn {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc >= 2.34 has posix_spawn_file_actions_addclosefrom_np; Swift's Glibc module does not declare it.
    nonisolated(unsafe) private static let closeFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    static func start(_ executable: String, _ arguments: [String], environment: [String: String],
                      stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let closeFrom {
            _ = closeFrom(&actions, 3)
        } else {
            // Fallback: close what is open now (descriptors opened later by other threads may still leak).
            let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            for fd in open.compactMap(Int32.init) where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in envp { free(p) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        guard rc == 0 else { throw BenchError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Blocks until the child exits; its exit status (128 + signal when killed).
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return decode(status)
    }

    /// The exit status if the child has exited (and reaps it), nil while it runs.
    static func exited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return decode(status) }
        if r < 0 && errno == ECHILD { return -1 }  // already reaped
        return nil
    }

    private static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    /// Runs to completion; wall-clock seconds from spawn to exit, and stdout. Throws with the stderr tail.
    static func run(_ executable: String, _ arguments: [String], runner: CommandRunner, label: String) throws -> (seconds: Double, output: String) {
        let outPath = runner.logDirectory + "/" + label + ".out", errPath = runner.logDirectory + "/" + label + ".err"
        let begin = ContinuousClock.now
        let pid = try start(executable, arguments, environment: runner.environment, stdout: outPath, stderr: errPath)
        let status = wait(pid)
        let elapsed = ContinuousClock.now - begin
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let tail = ((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").split(separator: "\n").suffix(20)
                .joined(separator: "\n")
            throw BenchError("command failed (status \(status)): \(([executable] + arguments).joined(separator: " "))\n\(tail)\n(logs: \(errPath))")
        }
        return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18, output)
    }
}
