import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One test's private world: a mkdtemp directory holding a store, a source tree, a local reference tree, a
/// mount point and a scratch directory. `close()` (call it from `defer`) always unmounts, however the test
/// ended: `assetfs umount`, then `fusermount3 -u -z`, then a fusectl abort + lazy detach, then SIGKILL of the
/// daemon. A watchdog aborts the FUSE connection when a guarded operation (or the whole test) overruns, so a
/// hang becomes a failure instead of a stuck test run.
final class WSFixture: @unchecked Sendable {
    let name: String
    let root: String
    let store: String
    let src: String
    let local: String
    let mnt: String
    let scratch: String

    private let lock = NSLock()
    // Protected by `lock`.
    private var device: String?
    private var daemon: pid_t?
    private var notes: [String] = []
    private var closed = false
    private var exports = 0

    private var watchdog: Watchdog!

    /// `backstop`: the whole test's budget, after which the mount is cut.
    init(_ name: String, backstop: Double = 100) throws {
        try Paths.requireBinary()
        self.name = name
        var template = Array("/tmp/assetfs-ws-\(name)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw Failure("mkdtemp failed: \(String(cString: strerror(errno)))") }
        let made = cArrayString(template)
        if let real = realpath(made, nil) {
            root = String(cString: real)
            free(real)
        } else {
            root = made
        }
        store = root + "/store"
        src = root + "/src"
        local = root + "/local"
        mnt = root + "/mnt"
        scratch = root + "/scratch"
        for dir in [src, local, mnt, scratch] { mkdir(dir, 0o755) }
        _ = FuseControl.available  // mount fusectl before anything can hang
        watchdog = Watchdog(backstopSeconds: backstop) { [weak self] _ in self?.abortConnection() }
        let r = cli(["init"])
        guard r.succeeded else {
            close()
            throw Failure("assetfs init failed: \(r)")
        }
    }

    deinit { close() }

    var daemonPID: pid_t? { lock.withLock { daemon } }

    // MARK: Running things

    /// Runs a command (never in this process); a timeout aborts this fixture's FUSE connection first.
    func run(_ argv: [String], timeout: Double = 30) -> ProcessResult {
        do {
            let child = try start(argv)
            return child.wait(timeout: timeout) { self.abortConnection() }
        } catch {
            var r = ProcessResult(argv: argv)
            r.stderr = Data("\(error)".utf8)
            return r
        }
    }

    func start(_ argv: [String]) throws -> ChildProcess {
        try ChildProcess.spawn(argv, scratch: scratch, environment: ["ASSETFS_STORE": store, "LC_ALL": "C"])
    }

    /// `assetfs ARGS...` against this fixture's store (ASSETFS_STORE).
    func cli(_ args: [String], timeout: Double = 60) -> ProcessResult {
        run([Paths.assetfs] + args, timeout: timeout)
    }

    /// Runs `assetfs ARGS`, throwing with the details unless it exits 0.
    @discardableResult
    func cliOK(_ args: [String], timeout: Double = 60) throws -> ProcessResult {
        let r = cli(args, timeout: timeout)
        guard r.succeeded else { throw Failure("\(r)") }
        return r
    }

    /// `assetfs import ASSET DIR`; returns the new version number.
    @discardableResult
    func importVersion(_ asset: String = "data", from dir: String? = nil) throws -> Int {
        let r = try cliOK(["import", asset, dir ?? src, "-m", "test import"])
        return try Self.parseVersion(r, asset: asset)
    }

    /// "ASSET vN" -> N.
    static func parseVersion(_ r: ProcessResult, asset: String) throws -> Int {
        let words = r.out.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, words[0] == asset, words[1].hasPrefix("v"), let n = Int(words[1].dropFirst()) else {
            throw Failure("\(r): printed \(r.out.debugDescription), expected \"\(asset) vN\"")
        }
        return n
    }

    /// Runs `body` against the mount under the watchdog.
    /// `expectHang`: the watchdog still fires, but that is not reported as a failure (tests of the watchdog).
    func io<T>(_ what: String, seconds: Double = 20, expectHang: Bool = false, _ body: () throws -> T) rethrows -> T {
        try watchdog.guarding(what, seconds: seconds, report: !expectHang, body)
    }

    // MARK: Mounting

    /// `assetfs mount MNT --background`; returns the daemon's pid.
    @discardableResult
    func mount() throws -> pid_t {
        let r = cli(["mount", mnt, "--background"], timeout: 45)
        let pid = r.out.range(of: "(pid ").flatMap { range in Int32(r.out[range.upperBound...].prefix(while: \.isNumber)) }
        lock.withLock {
            device = MountInfo.device(of: mnt)
            if let pid { daemon = pid }
        }
        guard r.succeeded else { throw Failure("mount failed: \(r)") }
        guard r.out.hasPrefix("mounted \(mnt) (pid "), let pid else {
            throw Failure("mount printed \(r.out.debugDescription), expected \"mounted \(mnt) (pid N, log ...)\"")
        }
        guard lock.withLock({ device }) != nil else { throw Failure("mount returned but \(mnt) is not in /proc/self/mountinfo") }
        let magic = try io("statfs after mount") { try statfsPath(mnt).f_type }
        guard magic == fuseSuperMagic else { throw Failure("statfs(\(mnt)).f_type = \(String(magic, radix: 16)), expected FUSE 65735546") }
        return pid
    }

    /// `assetfs umount MNT`, then waits for the daemon to exit.
    func unmount() throws {
        let pid = daemonPID
        let r = cli(["umount", mnt], timeout: 20)
        guard r.succeeded else { throw Failure("umount failed: \(r)") }
        guard !MountInfo.isMounted(mnt) else { throw Failure("`assetfs umount` succeeded but \(mnt) is still mounted") }
        if let pid, poll(seconds: 10, { processGone(pid) }) == nil {
            throw Failure("the daemon (pid \(pid)) still runs 10 s after `assetfs umount`")
        }
        lock.withLock {
            device = nil
            daemon = nil
        }
    }

    /// What `killDaemon` found.
    struct KillOutcome {
        /// The mount was still there `autoUnmountSeconds` after SIGKILL and had to be cut (fusectl abort).
        var stuck = false
        /// The dead daemon's threads that had not exited (state, wait channel, kernel stack), when stuck.
        var diagnosis = ""
    }

    /// kill -9 of the daemon; waits until it is gone and its mount has disappeared (auto_unmount). A mount
    /// still there after `autoUnmountSeconds` is cut with a fusectl abort (which releases threads of the dead
    /// daemon stuck in requests to their own mount) and reported in the outcome; throws only if even that fails.
    @discardableResult
    func killDaemon(autoUnmountSeconds: Double = 5) throws -> KillOutcome {
        guard let pid = daemonPID else { throw Failure("no daemon to kill") }
        guard kill(pid, SIGKILL) == 0 else { throw SysError(op: "kill -9", path: "pid \(pid)", code: errno) }
        var outcome = KillOutcome()
        if poll(seconds: autoUnmountSeconds, { processGone(pid) && !MountInfo.isMounted(mnt) }) == nil {
            outcome.stuck = true
            outcome.diagnosis = threadReport(pid)
            abortConnection()
            if poll(seconds: 5, { !MountInfo.isMounted(mnt) }) == nil {
                outcome.diagnosis += "; the fusectl abort did not remove the mount either (auto_unmount never ran): detached it"
                if umount2(mnt, Int32(MNT_DETACH)) != 0 || MountInfo.isMounted(mnt) {
                    throw Failure("\(mnt) is still mounted after kill -9 of the daemon, a fusectl abort and a lazy unmount: \(outcome.diagnosis)")
                }
            }
        }
        guard poll(seconds: 10, { processGone(pid) }) != nil else { throw Failure("daemon \(pid) survived SIGKILL for 10 s") }
        lock.withLock {
            device = nil
            daemon = nil
        }
        return outcome
    }

    /// State, wait channel and kernel stack of every thread of `pid` still present.
    func threadReport(_ pid: pid_t) -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        // Other processes naming the mount point (the fusermount3 auto_unmount helper).
        var helpers: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
            guard let cmd = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !cmd.isEmpty else { continue }
            let text = String(decoding: cmd.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if text.contains(mnt) && !text.contains(Paths.assetfs) { helpers.append("pid \(entry): \(text.prefix(160))") }
        }
        let helperText = helpers.isEmpty ? "no helper process names \(mnt)" : "helpers: " + helpers.joined(separator: ", ")
        if tasks.isEmpty { return "the daemon process \(pid) is gone; \(helperText)" }
        return helperText + "; " + tasks.sorted().map { t -> String in
            let base = "/proc/\(pid)/task/\(t)"
            let stat = (try? String(contentsOfFile: base + "/stat", encoding: .utf8)) ?? ""
            let state = stat.range(of: ") ", options: .backwards).map { String(stat[$0.upperBound...].prefix(1)) } ?? "?"
            let wchan = (try? String(contentsOfFile: base + "/wchan", encoding: .utf8)) ?? "?"
            let stack = ((try? String(contentsOfFile: base + "/stack", encoding: .utf8)) ?? "")
                .split(separator: "\n").prefix(4).map { $0.split(separator: " ").last.map(String.init) ?? "" }.joined(separator: " < ")
            return "thread \(t) state \(state) wchan \(wchan)" + (stack.isEmpty ? "" : " stack \(stack)")
        }.joined(separator: "; ")
    }

    // MARK: Workspaces and versions

    func workspacePath(_ asset: String, _ name: String) -> String { "\(mnt)/\(asset)/workspaces/\(name)" }

    /// `assetfs workspace create ASSET NAME --from vN`; returns the workspace's path in the mount.
    @discardableResult
    func createWorkspace(_ name: String, asset: String = "data", from version: Int? = nil) throws -> String {
        var args = ["workspace", "create", asset, name]
        if let version { args += ["--from", "v\(version)"] }
        try cliOK(args)
        return workspacePath(asset, name)
    }

    /// `assetfs commit ASSET/NAME -m MSG EXTRA...` (not checked).
    func commit(_ spec: String, _ extra: [String] = [], timeout: Double = 120) -> ProcessResult {
        cli(["commit", spec, "-m", "test commit"] + extra, timeout: timeout)
    }

    /// Commits and returns the new version number, throwing with the details on failure.
    func commitOK(_ spec: String, _ extra: [String] = [], asset: String = "data") throws -> Int {
        let r = commit(spec, extra)
        guard r.succeeded else { throw Failure("commit failed: \(r)") }
        return try Self.parseVersion(r, asset: asset)
    }

    /// `assetfs versions ASSET --json`.
    func versions(_ asset: String = "data") throws -> [[String: Any]] {
        let r = try cliOK(["versions", asset, "--json"])
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw Failure("versions --json printed no JSON array: \(r)")
        }
        return list
    }

    func version(_ number: Int, _ asset: String = "data") throws -> [String: Any] {
        guard let v = try versions(asset).first(where: { ($0["version"] as? Int) == number }) else {
            throw Failure("\(asset) has no v\(number) in `assetfs versions --json`")
        }
        return v
    }

    /// Workspace names of an asset (`assetfs workspace list --json`).
    func workspaceNames(_ asset: String = "data") throws -> [String] {
        let r = try cliOK(["workspace", "list", "--json"])
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw Failure("workspace list --json printed no JSON array: \(r)")
        }
        return list.filter { ($0["asset"] as? String) == asset }.compactMap { $0["name"] as? String }.sorted()
    }

    /// `assetfs export REF DEST` into a fresh directory under scratch; returns DEST.
    func export(_ ref: String) throws -> String {
        let n = lock.withLock { () -> Int in
            exports += 1
            return exports
        }
        let dest = "\(scratch)/export-\(n)"
        try cliOK(["export", ref, dest], timeout: 120)
        return dest
    }

    /// `assetfs verify`; throws with its output unless it passes.
    func verifyOK() throws {
        let r = cli(["verify"], timeout: 120)
        guard r.succeeded else { throw Failure("assetfs verify failed: \(r)") }
    }

    // MARK: Teardown

    /// Cuts this fixture's FUSE connection (the watchdog's and timeouts' last resort).
    func abortConnection() {
        guard let dev = lock.withLock({ device }) ?? MountInfo.device(of: mnt) else { return }
        if !FuseControl.abort(device: dev) { note("could not abort FUSE connection \(dev) through \(FuseControl.directory)") }
    }

    func note(_ text: String) { lock.withLock { notes.append(text) } }

    /// Unmounts whatever is left, ends the daemon, removes the directory, and reports anything that went wrong
    /// (watchdog firings, failed unmounts) as issues.
    func close() {
        let alreadyClosed = lock.withLock { () -> Bool in
            defer { closed = true }
            return closed
        }
        if alreadyClosed { return }
        watchdog?.stop()
        var problems = watchdog?.fired ?? []

        if MountInfo.isMounted(mnt) {
            let r = cli(["umount", mnt], timeout: 15)
            // (A daemon that is exiting on its own may have unmounted in between: only a mount left behind counts.)
            if !r.succeeded && MountInfo.isMounted(mnt) { problems.append("teardown: `assetfs umount` failed: \(r)") }
        }
        if MountInfo.isMounted(mnt) {
            let r = run(["fusermount3", "-u", "-z", mnt], timeout: 10)
            if !r.succeeded { problems.append("teardown: `fusermount3 -u -z` failed: \(r)") }
        }
        if MountInfo.isMounted(mnt) {
            abortConnection()
            if umount2(mnt, Int32(MNT_DETACH)) != 0 {
                problems.append("teardown: umount2(MNT_DETACH) failed: \(String(cString: strerror(errno)))")
            }
        }
        if let pid = lock.withLock({ daemon }), !processGone(pid) {
            if poll(seconds: 5, { processGone(pid) }) == nil {
                problems.append("teardown: the daemon (pid \(pid)) did not exit after unmount; killed")
                kill(pid, SIGKILL)
                _ = poll(seconds: 5) { processGone(pid) }
            }
        }
        if MountInfo.isMounted(mnt) {
            problems.append("teardown: \(mnt) is STILL mounted; left \(root) in place")
        } else if ProcessInfo.processInfo.environment["WORKSPACE_TESTS_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
        problems += lock.withLock { notes }
        for p in problems { Issue.record(Comment(rawValue: "[\(name)] " + p)) }
    }
}
