import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One test's private world: a mkdtemp directory holding a store (optionally on a size-limited tmpfs), a source
/// tree, a mount point and a scratch directory for child output. `close()` (call it from `defer`) always cleans
/// up, however the test ended: `assetfs umount`, then `fusermount3 -u -z`, then a fusectl abort + lazy detach,
/// then SIGKILL of the daemon; then anything else still mounted below the directory (the tmpfs) is unmounted and
/// the directory removed. A watchdog aborts the FUSE connection when a guarded operation (or the whole test)
/// overruns, so a hang becomes a failure instead of a stuck test run.
///
/// The mount, workspace and reliability tests use it directly or through a subclass that adds their own helpers;
/// `Settings` holds what differs between them (budgets, timeouts, extra directories).
open class MountFixture: @unchecked Sendable {
    /// What differs between the test targets' fixtures.
    public struct Settings: Sendable {
        /// The directory is `/tmp/assetfs-<label>-<test name>-XXXXXX`.
        public var label: String
        /// The whole test's budget in seconds, after which the mount is cut.
        public var backstop: Double
        /// Directories made below the root besides src, mnt and scratch (e.g. a local reference tree).
        public var extraDirectories: [String] = []
        /// Puts the store on a tmpfs of that many MiB (mounted here, unmounted in `close`).
        public var tmpfsMB: Int?
        /// Runs `assetfs init` on the new store.
        public var initStore = true
        /// Default timeouts (seconds) of `run`, `cli` and `io`.
        public var runTimeout: Double = 30
        public var cliTimeout: Double = 60
        public var ioSeconds: Double = 20
        /// `unmount`: the `assetfs umount` timeout, and how long the daemon may take to exit after it.
        public var umountTimeout: Double = 20
        public var daemonExitSeconds: Double = 10
        /// The `-m` message of `importVersion`.
        public var importMessage = "test"
        /// Teardown: a failed `assetfs umount` counts only when the mount is still there afterwards (a daemon that
        /// is exiting on its own may have unmounted in between).
        public var umountMayRace = false
        /// Teardown issues start with `[test name] `.
        public var namesIssues = false
        /// When this environment variable is set, the directory is kept after a clean teardown.
        public var keepVariable: String?
        /// A local store under the directory, or a shared one (S3 + PostgreSQL, see `SharedStoreHandle`).
        public var backend: StoreBackend = .local
        /// With `.shared`: servers of this test alone, which it may stop and pause.
        public var dedicatedServers = false

        public init(label: String, backstop: Double) {
            self.label = label
            self.backstop = backstop
        }

        /// A mount test's settings on a shared store (S3 + PostgreSQL); `dedicatedServers`: servers of the test's
        /// own, which it may stop and pause.
        public static func sharedStore(backstop: Double = 120, dedicatedServers: Bool = false) -> Settings {
            var settings = Settings(label: "mount", backstop: backstop)
            settings.backend = .shared
            settings.dedicatedServers = dedicatedServers
            return settings
        }
    }

    public let name: String
    public let settings: Settings
    public let root: String
    public let store: String
    public let src: String
    public let mnt: String
    public let scratch: String
    /// The tmpfs holding the store, when `settings.tmpfsMB` asked for one.
    public let smallDisk: String?
    /// The shared store's servers and environment, when `settings.backend` is `.shared`.
    public let shared: SharedStoreHandle?

    private let lock = NSLock()
    // Protected by `lock`.
    private var device: String?
    private var daemon: pid_t?
    private var foreground: ChildProcess?
    private var notes: [String] = []
    private var closed = false
    private var counter = 0

    private var watchdog: Watchdog!

    public init(_ name: String, settings: Settings) throws {
        try Paths.requireBinary()
        self.name = name
        self.settings = settings
        var template = Array("/tmp/assetfs-\(settings.label)-\(name)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed: \(String(cString: strerror(errno)))") }
        let made = cArrayString(template)
        if let real = realpath(made, nil) {
            root = String(cString: real)
            free(real)
        } else {
            root = made
        }
        src = root + "/src"
        mnt = root + "/mnt"
        scratch = root + "/scratch"
        for dir in [src, mnt, scratch] { mkdir(dir, 0o755) }
        for dir in settings.extraDirectories { mkdir(root + "/" + dir, 0o755) }
        if let tmpfsMB = settings.tmpfsMB {
            let disk = root + "/small"
            mkdir(disk, 0o755)
            smallDisk = disk
            if Glibc.mount("tmpfs", disk, "tmpfs", 0, "size=\(tmpfsMB)m,mode=0755") != 0 {
                let e = errno
                removeTree(root)
                throw TestFailure("mount -t tmpfs -o size=\(tmpfsMB)m on \(disk) failed: \(String(cString: strerror(e)))")
            }
        } else {
            smallDisk = nil
        }
        if settings.backend == .shared {
            do {
                let handle = try SharedStoreHandle(directory: root, dedicated: settings.dedicatedServers)
                shared = handle
                store = handle.url
            } catch {
                removeTree(root)
                throw error
            }
        } else {
            shared = nil
            store = smallDisk.map { $0 + "/store" } ?? root + "/store"
        }
        _ = FuseControl.available  // mount fusectl before anything can hang
        watchdog = Watchdog(backstopSeconds: settings.backstop) { [weak self] _ in self?.abortConnection() }
        if settings.initStore {
            let r = cli(["init"] + (shared.map { ["--catalog", $0.catalog] } ?? []))
            guard r.succeeded else {
                close()
                throw TestFailure("assetfs init failed: \(r)")
            }
        }
    }

    deinit { close() }

    public var mountDevice: String? { lock.withLock { device } }
    public var daemonPID: pid_t? { lock.withLock { daemon } }

    /// A fresh path under the scratch directory: `<scratch>/<label>-<n>`.
    public func scratchPath(_ label: String) -> String {
        let n = lock.withLock { () -> Int in
            counter += 1
            return counter
        }
        return "\(scratch)/\(label)-\(n)"
    }

    // MARK: Running things

    /// Runs a command (never in this process); a timeout aborts this fixture's FUSE connection first, so a child
    /// stuck in the kernel can be killed and the hang reported.
    public func run(_ argv: [String], timeout: Double? = nil, environment: [String: String] = [:]) -> ProcessResult {
        do {
            let child = try start(argv, environment: environment)
            return child.wait(timeout: timeout ?? settings.runTimeout) { self.abortConnection() }
        } catch {
            var r = ProcessResult(argv: argv)
            r.stderr = Data("\(error)".utf8)
            return r
        }
    }

    /// Starts a command against this fixture's store (ASSETFS_STORE, LC_ALL=C, plus `environment`).
    public func start(_ argv: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try start(raw: argv.map { Array($0.utf8) }, environment: environment)
    }

    /// `start` with raw-byte arguments (names that are not UTF-8).
    public func start(raw argv: [[UInt8]], environment: [String: String] = [:]) throws -> ChildProcess {
        var env = ["ASSETFS_STORE": store, "LC_ALL": "C"]
        for (k, v) in shared?.environment ?? [:] { env[k] = v }
        for (k, v) in environment { env[k] = v }
        return try ChildProcess.spawn(raw: argv, scratch: scratch, environment: env)
    }

    /// `assetfs ARGS...` against this fixture's store (ASSETFS_STORE).
    public func cli(_ args: [String], timeout: Double? = nil) -> ProcessResult {
        run([Paths.assetfs] + args, timeout: timeout ?? settings.cliTimeout)
    }

    /// Runs `assetfs ARGS`, throwing with the details unless it exits 0.
    @discardableResult
    public func cliOK(_ args: [String], timeout: Double? = nil) throws -> ProcessResult {
        let r = cli(args, timeout: timeout)
        guard r.succeeded else { throw TestFailure("\(r)") }
        return r
    }

    /// `assetfs import ASSET DIR -m MESSAGE [--tag TAG] EXTRA...` (DIR defaults to `src`); returns the new version
    /// number.
    @discardableResult
    public func importVersion(_ asset: String = "data", from dir: String? = nil, message: String? = nil, tag: String? = nil,
                              extra: [String] = []) throws -> Int {
        var args = ["import", asset, dir ?? src, "-m", message ?? settings.importMessage]
        if let tag { args += ["--tag", tag] }
        let r = cli(args + extra)
        guard r.succeeded else { throw TestFailure("import failed: \(r)") }
        guard let n = parseVersionLine(r.out, asset: asset) else {
            throw TestFailure("\(r): printed \(r.out.debugDescription), expected \"\(asset) vN\"")
        }
        return n
    }

    /// Runs `body` against the mount under the watchdog (use it for every system call against the mount).
    /// `expectHang`: the watchdog still fires, but that is not reported as a failure (tests of the watchdog).
    public func io<T>(_ what: String, seconds: Double? = nil, expectHang: Bool = false, _ body: () throws -> T) rethrows -> T {
        try watchdog.guarding(what, seconds: seconds ?? settings.ioSeconds, report: !expectHang, body)
    }

    // MARK: Mounting

    /// `assetfs mount MNT --background [-o OPTION]... [ARGUMENT]...`; returns the daemon's pid.
    @discardableResult
    public func mount(options: [String] = [], arguments: [String] = []) throws -> pid_t {
        let r = cli(["mount", mnt, "--background"] + options.flatMap { ["-o", $0] } + arguments, timeout: 45)
        // Record whatever was mounted even on failure, so teardown can clean it.
        let pid = r.out.range(of: "(pid ").flatMap { range in Int32(r.out[range.upperBound...].prefix(while: \.isNumber)) }
        lock.withLock {
            device = MountInfo.device(of: mnt)
            if let pid { daemon = pid }
        }
        guard r.succeeded else { throw TestFailure("mount failed: \(r)") }
        guard r.out.hasPrefix("mounted \(mnt) (pid "), let pid else {
            throw TestFailure("mount printed \(r.out.debugDescription), expected \"mounted \(mnt) (pid N, log ...)\"")
        }
        guard mountDevice != nil else { throw TestFailure("mount returned but \(mnt) is not in /proc/self/mountinfo") }
        let magic = try io("statfs after mount") { try statfsPath(mnt).f_type }
        guard magic == fuseSuperMagic else { throw TestFailure("statfs(\(mnt)).f_type = \(String(magic, radix: 16)), expected FUSE 65735546") }
        return pid
    }

    /// `assetfs mount MNT --foreground` as our own child; returns once the mount answers.
    public func mountForeground(options: [String] = []) throws -> ChildProcess {
        let child = try start([Paths.assetfs, "mount", mnt, "--foreground"] + options.flatMap { ["-o", $0] })
        lock.withLock {
            foreground = child
            daemon = child.pid
        }
        let ready = try poll(seconds: 20) {
            if child.poll() {
                let r = child.wait(timeout: 0)
                throw TestFailure("foreground daemon exited before the mount was ready: \(r)")
            }
            guard let dev = MountInfo.device(of: mnt) else { return false }
            lock.withLock { device = dev }
            return io("statfs while waiting for the foreground mount") { (try? statfsPath(mnt).f_type) == fuseSuperMagic }
        }
        guard ready != nil else { throw TestFailure("the foreground mount on \(mnt) was not ready within 20 s") }
        return child
    }

    /// `assetfs umount MNT`, then waits for the daemon to exit. Throws with the details when either fails.
    public func unmount() throws {
        let pid = daemonPID
        let r = cli(["umount", mnt], timeout: settings.umountTimeout)
        guard r.succeeded else { throw TestFailure("umount failed: \(r)") }
        guard !MountInfo.isMounted(mnt) else { throw TestFailure("`assetfs umount` succeeded but \(mnt) is still mounted") }
        if let pid {
            let fg = lock.withLock { foreground }
            let gone = poll(seconds: settings.daemonExitSeconds) { fg?.pid == pid ? fg!.poll() : processGone(pid) }
            guard gone != nil else {
                throw TestFailure("the daemon (pid \(pid)) still runs \(Int(settings.daemonExitSeconds)) s after `assetfs umount`")
            }
        }
        forgetDaemon()
    }

    /// Forgets the mount and its daemon (after the test ended them itself, e.g. with SIGKILL).
    public func forgetDaemon() {
        lock.withLock {
            device = nil
            daemon = nil
            foreground = nil
        }
    }

    /// Cuts this fixture's FUSE connection (the watchdog's and timeouts' last resort).
    public func abortConnection() {
        guard let dev = lock.withLock({ device }) ?? MountInfo.device(of: mnt) else { return }
        if !FuseControl.abort(device: dev) { note("could not abort FUSE connection \(dev) through \(FuseControl.directory)") }
    }

    /// Something to report as a test issue at teardown.
    public func note(_ text: String) { lock.withLock { notes.append(text) } }

    // MARK: Teardown

    /// Unmounts whatever is left, ends the daemon, removes the directory, and reports anything that went wrong
    /// (watchdog firings, failed unmounts, notes) as test issues.
    public func close() {
        let alreadyClosed = lock.withLock { () -> Bool in
            defer { closed = true }
            return closed
        }
        if alreadyClosed { return }
        watchdog?.stop()
        var problems = watchdog?.fired ?? []

        if MountInfo.isMounted(mnt) {
            let r = cli(["umount", mnt], timeout: 15)
            if !r.succeeded && (!settings.umountMayRace || MountInfo.isMounted(mnt)) {
                problems.append("teardown: `assetfs umount` failed: \(r)")
            }
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

        shared?.close()  // After the daemon: it may still have been talking to the servers.

        // Anything else mounted below the fixture (the tmpfs, or a mount a test made).
        for m in MountInfo.mounts(under: root) {
            if umount2(m, 0) != 0 && umount2(m, Int32(MNT_DETACH)) != 0 {
                problems.append("teardown: cannot unmount \(m): \(String(cString: strerror(errno)))")
            }
        }
        let left = MountInfo.mounts(under: root)
        if !left.isEmpty {
            problems.append("teardown: \(left.joined(separator: ", ")) STILL mounted; left \(root) in place")
        } else if settings.keepVariable.map({ ProcessInfo.processInfo.environment[$0] == nil }) ?? true {
            removeTree(root)
        }
        problems += lock.withLock { notes }
        let prefix = settings.namesIssues ? "[\(name)] " : ""
        for p in problems { Issue.record(Comment(rawValue: prefix + p)) }
    }
}

/// "ASSET vN" (what import and commit print) -> N.
public func parseVersionLine(_ text: String, asset: String) -> Int? {
    let words = text.split(whereSeparator: \.isWhitespace)
    guard words.count == 2, words[0] == asset, words[1].hasPrefix("v") else { return nil }
    return Int(words[1].dropFirst())
}
