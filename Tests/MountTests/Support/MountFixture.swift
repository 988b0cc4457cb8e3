import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One test's private world: a mkdtemp directory holding a store, a source tree, a mount point and a scratch
/// directory for child output. `close()` (call it from `defer`) always unmounts, however the test ended:
/// `assetfs umount`, then `fusermount3 -u -z`, then a fusectl abort + lazy detach, then SIGKILL of the daemon.
final class MountFixture: @unchecked Sendable {
    let root: String
    let store: String
    let src: String
    let mnt: String
    let scratch: String

    private let lock = NSLock()
    // Protected by `lock`.
    private var device: String?
    private var daemon: pid_t?
    private var foreground: ChildProcess?
    private var notes: [String] = []
    private var closed = false

    private var watchdog: Watchdog!

    /// `backstop`: the whole test's budget, after which the mount is cut.
    init(_ name: String, backstop: Double = 90) throws {
        try Paths.requireBinary()
        var template = Array("/tmp/assetfs-mount-\(name)-XXXXXX".utf8CString)
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
        mnt = root + "/mnt"
        scratch = root + "/scratch"
        for dir in [src, mnt, scratch] { mkdir(dir, 0o755) }
        _ = FuseControl.available  // mount fusectl before anything can hang
        watchdog = Watchdog(backstopSeconds: backstop) { [weak self] _ in self?.abortConnection() }
        let r = cli(["init"])
        guard r.succeeded else {
            close()
            throw Failure("assetfs init failed: \(r)")
        }
    }

    deinit { close() }

    var mountDevice: String? { lock.withLock { device } }
    var daemonPID: pid_t? { lock.withLock { daemon } }

    // MARK: Running things

    /// Runs a command; a timeout aborts this fixture's FUSE connection first, so a child stuck in the kernel
    /// can be killed and the hang reported.
    func run(_ argv: [String], timeout: Double = 30) -> ProcessResult {
        do {
            let child = try ChildProcess.spawn(argv, scratch: scratch, environment: ["ASSETFS_STORE": store, "LC_ALL": "C"])
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

    /// `assetfs import ASSET DIR`; returns the new version number.
    @discardableResult
    func importVersion(_ asset: String = "data", from dir: String? = nil, message: String = "test", tag: String? = nil) throws -> Int {
        var args = ["import", asset, dir ?? src, "-m", message]
        if let tag { args += ["--tag", tag] }
        let r = cli(args)
        guard r.succeeded else { throw Failure("import failed: \(r)") }
        let words = r.out.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, words[0] == asset, words[1].hasPrefix("v"), let n = Int(words[1].dropFirst()) else {
            throw Failure("import printed \(r.out.debugDescription), expected \"\(asset) vN\"")
        }
        return n
    }

    /// Runs `body` against the mount under the watchdog.
    func io<T>(_ what: String, seconds: Double = 20, expectHang: Bool = false, _ body: () throws -> T) rethrows -> T {
        try watchdog.guarding(what, seconds: seconds, report: !expectHang, body)
    }

    func path(_ relative: String) -> String { relative.isEmpty ? mnt : mnt + "/" + relative }

    // MARK: Mounting

    /// `assetfs mount MNT --background`; returns the daemon's pid.
    @discardableResult
    func mount(options: [String] = []) throws -> pid_t {
        let r = cli(["mount", mnt, "--background"] + options.flatMap { ["-o", $0] }, timeout: 45)
        // Record whatever was mounted even on failure, so teardown can clean it.
        let pid = r.out.range(of: "(pid ").flatMap { range in Int32(r.out[range.upperBound...].prefix(while: \.isNumber)) }
        lock.withLock {
            device = MountInfo.device(of: mnt)
            if let pid { daemon = pid }
        }
        guard r.succeeded else { throw Failure("mount failed: \(r)") }
        guard r.out.hasPrefix("mounted \(mnt) (pid "), let pid else {
            throw Failure("mount printed \(r.out.debugDescription), expected \"mounted \(mnt) (pid N, log ...)\"")
        }
        guard mountDevice != nil else { throw Failure("mount returned but \(mnt) is not in /proc/self/mountinfo") }
        let magic = try io("statfs after mount") { try statfsPath(mnt).f_type }
        guard magic == fuseSuperMagic else { throw Failure("statfs(\(mnt)).f_type = \(String(magic, radix: 16)), expected FUSE 65735546") }
        return pid
    }

    /// `assetfs mount MNT --foreground` as our own child; returns once the mount answers.
    func mountForeground(options: [String] = []) throws -> ChildProcess {
        let child = try start([Paths.assetfs, "mount", mnt, "--foreground"] + options.flatMap { ["-o", $0] })
        lock.withLock {
            foreground = child
            daemon = child.pid
        }
        let ready = try poll(seconds: 20) {
            if child.poll() {
                let r = child.wait(timeout: 0)
                throw Failure("foreground daemon exited before the mount was ready: \(r)")
            }
            guard let dev = MountInfo.device(of: mnt) else { return false }
            lock.withLock { device = dev }
            return io("statfs while waiting for the foreground mount") { (try? statfsPath(mnt).f_type) == fuseSuperMagic }
        }
        guard ready != nil else { throw Failure("the foreground mount on \(mnt) was not ready within 20 s") }
        return child
    }

    /// `assetfs umount MNT`, then waits for the daemon to exit. Throws with the details when either fails.
    func unmount() throws {
        let pid = daemonPID
        let r = cli(["umount", mnt], timeout: 20)
        guard r.succeeded else { throw Failure("umount failed: \(r)") }
        guard !MountInfo.isMounted(mnt) else { throw Failure("`assetfs umount` succeeded but \(mnt) is still in mountinfo") }
        if let pid {
            let fg = lock.withLock { foreground }
            let gone = poll(seconds: 10) { fg?.pid == pid ? fg!.poll() : processGone(pid) }
            guard gone != nil else { throw Failure("the daemon (pid \(pid)) still runs 10 s after `assetfs umount`") }
        }
        lock.withLock {
            device = nil
            daemon = nil
            foreground = nil
        }
    }

    /// Cuts this fixture's FUSE connection (the watchdog's and timeouts' last resort).
    func abortConnection() {
        guard let dev = lock.withLock({ device }) ?? MountInfo.device(of: mnt) else { return }
        if !FuseControl.abort(device: dev) {
            note("could not abort FUSE connection \(dev) through \(FuseControl.directory)")
        }
    }

    func note(_ text: String) { lock.withLock { notes.append(text) } }

    // MARK: Teardown

    /// Unmounts whatever is left, ends the daemon, removes the directory, and reports anything that went wrong
    /// (watchdog firings, failed unmounts) as test issues.
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
            if !r.succeeded { problems.append("teardown: `assetfs umount` failed: \(r)") }
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

        let (pid, fg) = lock.withLock { (daemon, foreground) }
        if let fg {
            if poll(seconds: 5, { fg.poll() }) == nil {
                problems.append("teardown: the foreground daemon (pid \(fg.pid)) did not exit after unmount; killed")
                fg.signal(SIGKILL)
                _ = fg.wait(timeout: 10)
            }
        } else if let pid, !processGone(pid) {
            if poll(seconds: 5, { processGone(pid) }) == nil {
                problems.append("teardown: the daemon (pid \(pid)) did not exit after unmount; killed")
                kill(pid, SIGKILL)
                _ = poll(seconds: 5) { processGone(pid) }
            }
        }

        if MountInfo.isMounted(mnt) {
            problems.append("teardown: \(mnt) is STILL mounted; left \(root) in place")
        } else {
            try? FileManager.default.removeItem(atPath: root)
        }
        problems += lock.withLock { notes }
        for p in problems { Issue.record(Comment(rawValue: p)) }
    }
}
