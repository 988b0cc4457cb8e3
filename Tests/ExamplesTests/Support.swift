import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the package, the binary under test and the examples are.
enum Paths {
    /// The package root, three path components above this file (`Tests/ExamplesTests/Support.swift`).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let assetfs = packageRoot + "/.build/debug/assetfs"
    static let examples = packageRoot + "/mount-examples"

    /// Fails (never skips) when the binary has not been built.
    static func requireBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: assetfs) else {
            throw Failure("the assetfs binary is missing at \(assetfs): build it first with `swift build --build-tests` in \(packageRoot)")
        }
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
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

private typealias CloseFromFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+), which the Glibc module does not export.
private let cAddCloseFrom: CloseFromFn? = {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") else {
        return nil
    }
    return unsafeBitCast(symbol, to: CloseFromFn.self)
}()

/// Runs `argv` in its own process group with an empty signal mask and default TERM/INT/HUP/PIPE handlers
/// (children of a Swift test thread otherwise inherit its blocked signals, and a FUSE daemon started by the
/// script would never see SIGTERM), stdin from /dev/null, stdout and stderr into files, and no
/// other inherited descriptor. Waits up to `timeout` seconds; on timeout sends SIGTERM to the process group
/// (the script's trap then unmounts), SIGKILL 5 s later, then runs `onTimeout`. The streams go to
/// `<logPrefix>.stdout.log` and `<logPrefix>.stderr.log`.
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
    guard outFD >= 0, errFD >= 0 else { throw Failure("cannot create \(outPath): \(String(cString: strerror(errno)))") }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, outFD, 1)
    posix_spawn_file_actions_adddup2(&actions, errFD, 2)
    if let cAddCloseFrom { _ = withUnsafeMutablePointer(to: &actions) { cAddCloseFrom($0, 3) } }

    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setpgroup(&attr, 0)  // its own process group, so that a timeout can end all of it
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    let cargs = argv.map { strdup($0) } + [nil]
    defer {
        for p in envp { free(p) }
        for p in cargs { free(p) }
    }
    let started = Date()
    var pid = pid_t()
    let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cargs, envp)
    guard rc == 0 else { throw Failure("cannot start `\(argv.joined(separator: " "))`: \(String(cString: strerror(rc)))") }

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
    if done {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros: decode by hand.
        if status & 0x7F == 0 { result.exitCode = (status >> 8) & 0xFF } else if status & 0x7F != 0x7F { result.signal = status & 0x7F }
    }
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

enum MountTable {
    /// Mount points at or below `dir`, deepest first, from /proc/self/mountinfo (no FUSE daemon is asked).
    static func mounts(under dir: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        var found: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { continue }
            let path = unescape(String(fields[4]))
            if path == dir || path.hasPrefix(dir + "/") { found.append(path) }
        }
        return Array(Set(found)).sorted(by: >)
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }

    /// Lazily unmounts everything left under `dir` (`fusermount3 -u -z`, then `umount -l`); returns what is
    /// still mounted afterwards.
    static func detachAll(under dir: String, logDir: String) -> [String] {
        for m in mounts(under: dir) {
            if !runQuietly(["fusermount3", "-u", "-z", m], logDir: logDir) {
                runQuietly(["umount", "-l", m], logDir: logDir)
            }
        }
        return mounts(under: dir)
    }
}

/// A fresh `mkdtemp` directory, mode 0755 so that other uids (the examples' uid 1000 checks) can reach the work
/// dir inside it.
func makeTemporaryDirectory(_ name: String) throws -> String {
    var template = Array("/tmp/assetfs-example-\(name).XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw Failure("mkdtemp failed: \(String(cString: strerror(errno)))") }
    let path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    chmod(path, 0o755)
    return path
}
