import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Paths {
    /// The examples: `mount-examples/<name>/run.sh ASSETFS WORKDIR`.
    static let examples = packageRoot + "/mount-examples"
}

/// What a finished (or killed) example script did.
struct ScriptResult {
    var exitCode: Int32?
    var signal: Int32?
    var timedOut = false
    var seconds = 0.0
    var stdout = ""
    var stderr = ""

    var succeeded: Bool { exitCode == 0 && !timedOut }

    /// Exit status, duration and the last lines of both streams, for failure messages.
    func report(_ argv: [String], keptIn dir: String) -> String {
        var s = "`\(argv.joined(separator: " "))`"
        if timedOut { s += " TIMED OUT after \(String(format: "%.0f", seconds)) s (process group killed)" }
        if let exitCode { s += " exited \(exitCode)" }
        if let signal { s += " was killed by signal \(signal)" }
        s += " after \(String(format: "%.1f", seconds)) s; logs kept in \(dir)"
        s += "\n--- stderr (last 40 lines)\n" + Self.tail(stderr, 40)
        s += "\n--- stdout (last 40 lines)\n" + Self.tail(stdout, 40)
        return s
    }

    static func tail(_ text: String, _ n: Int) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(n).joined(separator: "\n")
    }
}

// MARK: Spawning

/// Runs `argv` in its own process group (`spawnProcess`: empty signal mask, default signal handlers, stdin from
/// /dev/null, no other inherited descriptor), stdout and stderr into `<logPrefix>.stdout.log` and
/// `<logPrefix>.stderr.log`. Waits up to `timeout` seconds; on timeout sends SIGTERM to the process group (the
/// script's trap then unmounts), SIGKILL 5 s later, then runs `onTimeout`.
func runScript(_ argv: [String], logPrefix: String, timeout: Double, environment: [String: String] = [:],
               onTimeout: () -> Void) throws -> ScriptResult {
    let outPath = logPrefix + ".stdout.log"
    let errPath = logPrefix + ".stderr.log"
    let outFD = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    let errFD = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    defer {
        if outFD >= 0 { close(outFD) }
        if errFD >= 0 { close(errFD) }
    }
    guard outFD >= 0, errFD >= 0 else { throw TestFailure("cannot create \(outPath): \(String(cString: strerror(errno)))") }

    let started = Date()
    let pid = try spawnProcess(argv.map { Array($0.utf8) }, stdout: outFD, stderr: errFD, environment: environment,
                               ownProcessGroup: true)

    var result = ScriptResult()
    var status: Int32 = 0
    func reaped() -> Bool {
        let r = waitpid(pid, &status, WNOHANG)
        return r == pid || (r < 0 && errno == ECHILD)
    }
    let deadline = started.addingTimeInterval(timeout)
    var done = false
    while !done {
        if reaped() { done = true; break }
        if Date() >= deadline { break }
        usleep(20_000)
    }
    if !done {
        result.timedOut = true
        kill(-pid, SIGTERM)
        let grace = Date().addingTimeInterval(5)
        while !done && Date() < grace {
            if reaped() { done = true } else { usleep(20_000) }
        }
        kill(-pid, SIGKILL)  // whatever is left of the group (the script's own children)
        let hard = Date().addingTimeInterval(10)
        while !done && Date() < hard {
            if reaped() { done = true } else { usleep(20_000) }
        }
        onTimeout()
    }
    result.seconds = Date().timeIntervalSince(started)
    if done { (result.exitCode, result.signal) = decodeWaitStatus(status) }
    result.stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    result.stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return result
}

/// Runs a short helper command (same spawning rules, no timeout handling beyond `timeout`).
@discardableResult
func runQuietly(_ argv: [String], logDir: String, timeout: Double = 20) -> Bool {
    (try? runScript(argv, logPrefix: logDir + "/helper", timeout: timeout, onTimeout: {}))?.succeeded ?? false
}

// MARK: Mounts

/// Lazily unmounts everything left under `dir` (`fusermount3 -u -z`, then `umount -l`); returns what is still
/// mounted afterwards.
func detachMounts(under dir: String, logDir: String) -> [String] {
    for m in MountInfo.mounts(under: dir) {
        if !runQuietly(["fusermount3", "-u", "-z", m], logDir: logDir) {
            runQuietly(["umount", "-l", m], logDir: logDir)
        }
    }
    return MountInfo.mounts(under: dir)
}

/// A fresh `mkdtemp` directory, mode 0755 so that other uids (the examples' uid 1000 checks) can reach the work
/// dir inside it.
func makeTemporaryDirectory(_ name: String) throws -> String {
    var template = Array("/tmp/assetfs-example-\(name).XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed: \(String(cString: strerror(errno)))") }
    let path = cArrayString(template)
    chmod(path, 0o755)
    return path
}
