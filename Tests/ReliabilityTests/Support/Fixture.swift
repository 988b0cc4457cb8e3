import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One test's private world: a mkdtemp directory holding a store (optionally on a size-limited tmpfs), a source
/// tree, a mount point and a scratch directory. `close()` (call it from `defer`) always cleans up, however the
/// test ended: `assetfs umount`, `fusermount3 -u -z`, a fusectl abort + lazy detach, SIGKILL of the daemon,
/// then the tmpfs is unmounted and the directory removed. A watchdog aborts the FUSE connection when a guarded
/// operation (or the whole test) overruns, so a hang becomes a failure instead of a stuck run.
final class Fixture: @unchecked Sendable {
    let name: String
    let root: String
    let store: String
    let src: String
    let mnt: String
    let scratch: String
    /// The tmpfs holding the store, when the fixture was made with `tmpfsMB`.
    let smallDisk: String?

    private let lock = NSLock()
    // Protected by `lock`.
    private var device: String?
    private var daemon: pid_t?
    private var notes: [String] = []
    private var closed = false
    private var counter = 0

    private var watchdog: Watchdog!

    /// `backstop`: the whole test's budget, after which the mount is cut. `tmpfsMB`: put the store on a tmpfs of
    /// that size (mounted here, unmounted in `close`).
    init(_ name: String, backstop: Double = 150, tmpfsMB: Int? = nil, initStore: Bool = true) throws {
        try Paths.requireBinary()
        self.name = name
        var template = Array("/tmp/assetfs-rel-\(name)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw Failure("mkdtemp failed: \(String(cString: strerror(errno)))") }
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
        if let tmpfsMB {
            let disk = root + "/small"
            mkdir(disk, 0o755)
            smallDisk = disk
            store = disk + "/store"
            if Glibc.mount("tmpfs", disk, "tmpfs", 0, "size=\(tmpfsMB)m,mode=0755") != 0 {
                let e = errno
                removeTree(root)
                throw Failure("mount -t tmpfs -o size=\(tmpfsMB)m on \(disk) failed: \(String(cString: strerror(e)))")
            }
        } else {
            smallDisk = nil
            store = root + "/store"
        }
        _ = FuseControl.available  // mount fusectl before anything can hang
        // Long variants do 5x the work: scale the whole-test budget with them.
        watchdog = Watchdog(backstopSeconds: backstop * (Mode.long ? 8 : 1)) { [weak self] _ in self?.abortConnection() }
        if initStore {
            let r = cli(["init"])
            guard r.succeeded else {
                close()
                throw Failure("assetfs init failed: \(r)")
            }
        }
    }

    deinit { close() }

    var daemonPID: pid_t? { lock.withLock { daemon } }

    /// A fresh path under the scratch directory.
    func scratchPath(_ label: String) -> String {
        let n = lock.withLock { () -> Int in counter += 1; return counter }
        return "\(scratch)/\(label)-\(n)"
    }

    // MARK: Running things

    /// Runs a command (never in this process); a timeout aborts this fixture's FUSE connection first.
    func run(_ argv: [String], timeout: Double = 60, environment: [String: String] = [:]) -> ProcessResult {
        do {
            let child = try start(argv, environment: environment)
            return child.wait(timeout: timeout) { self.abortConnection() }
        } catch {
            var r = ProcessResult(argv: argv)
            r.stderr = Data("\(error)".utf8)
            return r
        }
    }

    func start(_ argv: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        var env = ["ASSETFS_STORE": store, "LC_ALL": "C"]
        for (k, v) in environment { env[k] = v }
        return try ChildProcess.spawn(argv, scratch: scratch, environment: env)
    }

    /// `assetfs ARGS...` against this fixture's store (ASSETFS_STORE).
    func cli(_ args: [String], timeout: Double = 90) -> ProcessResult {
        run([Paths.assetfs] + args, timeout: timeout)
    }

    /// `assetfs` with raw-byte arguments (names that are not UTF-8).
    func cliRaw(_ args: [[UInt8]], timeout: Double = 30) -> ProcessResult {
        do {
            let child = try ChildProcess.spawn(raw: [Array(Paths.assetfs.utf8)] + args, scratch: scratch,
                                               environment: ["ASSETFS_STORE": store, "LC_ALL": "C"])
            return child.wait(timeout: timeout) { self.abortConnection() }
        } catch {
            var r = ProcessResult(argv: args.map { String(decoding: $0, as: UTF8.self) })
            r.stderr = Data("\(error)".utf8)
            return r
        }
    }

    @discardableResult
    func cliOK(_ args: [String], timeout: Double = 90) throws -> ProcessResult {
        let r = cli(args, timeout: timeout)
        guard r.succeeded else { throw Failure("\(r)") }
        return r
    }

    /// `assetfs import ASSET DIR`; returns the new version number.
    @discardableResult
    func importVersion(_ asset: String = "data", from dir: String? = nil, extra: [String] = []) throws -> Int {
        let r = try cliOK(["import", asset, dir ?? src, "-m", "reliability"] + extra)
        guard let n = parseVersionLine(r.out, asset: asset) else {
            throw Failure("\(r): printed \(r.out.debugDescription), expected \"\(asset) vN\"")
        }
        return n
    }

    /// `versions ASSET --json` as (version number -> object); empty when the asset does not exist (yet).
    func versions(_ asset: String = "data") throws -> [Int: [String: Any]] {
        let r = cli(["versions", asset, "--json"])
        if r.exitCode == 1 && r.err.contains("no asset named") { return [:] }
        guard r.succeeded else { throw Failure("\(r)") }
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw Failure("versions --json is not a JSON array: \(r.out.prefix(300))")
        }
        var out: [Int: [String: Any]] = [:]
        for v in list { if let n = v["version"] as? Int { out[n] = v } }
        return out
    }

    /// Exports REF into a fresh scratch directory and returns its signature (the directory is removed).
    func exportSignature(_ ref: String) throws -> TreeSignature {
        let dest = scratchPath("export")
        defer { removeTree(dest) }
        let r = cli(["export", ref, dest], timeout: 120)
        guard r.succeeded else { throw Failure("export of \(ref) failed: \(r)") }
        return try treeSignature(dest)
    }

    /// `verify --json`: the result and the parsed report (nil when stdout is not the JSON object).
    func verify(_ extra: [String] = []) -> (ProcessResult, [String: Any]?) {
        let r = cli(["verify", "--json"] + extra, timeout: 180)
        let report = (try? JSONSerialization.jsonObject(with: r.stdout)) as? [String: Any]
        return (r, report)
    }

    /// `cp -a FROM TO` (TO is replaced).
    func copyTree(_ from: String, _ to: String) throws {
        removeTree(to)
        let r = run(["cp", "-a", from, to])
        guard r.succeeded else { throw Failure("copy failed: \(r)") }
    }

    /// Runs `body` under the watchdog (use for every system call against the mount).
    func io<T>(_ what: String, seconds: Double = 30, _ body: () throws -> T) rethrows -> T {
        try watchdog.guarding(what, seconds: seconds, body)
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
        guard let pid else { throw Failure("mount printed \(r.out.debugDescription), expected \"mounted \(mnt) (pid N, ...)\"") }
        guard MountInfo.isMounted(mnt) else { throw Failure("mount returned but \(mnt) is not in /proc/self/mountinfo") }
        let magic = try io("statfs after mount") { try statfsPath(mnt).f_type }
        guard magic == fuseSuperMagic else { throw Failure("statfs(\(mnt)).f_type = \(String(magic, radix: 16)), expected FUSE") }
        return pid
    }

    /// `assetfs umount MNT`, then waits for the daemon to exit.
    func unmount() throws {
        let pid = daemonPID
        let r = cli(["umount", mnt], timeout: 30)
        guard r.succeeded else { throw Failure("umount failed: \(r)") }
        guard !MountInfo.isMounted(mnt) else { throw Failure("`assetfs umount` succeeded but \(mnt) is still mounted") }
        if let pid, poll(seconds: 15, { processGone(pid) }) == nil {
            throw Failure("the daemon (pid \(pid)) still runs 15 s after `assetfs umount`")
        }
        lock.withLock {
            device = nil
            daemon = nil
        }
    }

    /// After the daemon was SIGKILLed: waits for `auto_unmount` to remove the dead mount. Returns the seconds
    /// it took, or nil (the mount is then detached by force so the test can go on, and the caller reports it).
    func awaitDeadMountGone(seconds: Double = 10) -> Double? {
        let took = poll(seconds: seconds) { !MountInfo.isMounted(mnt) }
        if took == nil {
            abortConnection()
            _ = run(["fusermount3", "-u", "-z", mnt], timeout: 10)
            if MountInfo.isMounted(mnt) { _ = umount2(mnt, Int32(MNT_DETACH)) }
        }
        lock.withLock {
            device = nil
            daemon = nil
        }
        return took
    }

    /// Cuts this fixture's FUSE connection (the watchdog's and timeouts' last resort).
    func abortConnection() {
        guard let dev = lock.withLock({ device }) ?? MountInfo.device(of: mnt) else { return }
        if !FuseControl.abort(device: dev) { note("could not abort FUSE connection \(dev) through \(FuseControl.directory)") }
    }

    func note(_ text: String) { lock.withLock { notes.append(text) } }

    // MARK: Teardown

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
        if let pid = lock.withLock({ daemon }), !processGone(pid) {
            if poll(seconds: 5, { processGone(pid) }) == nil {
                problems.append("teardown: the daemon (pid \(pid)) did not exit after unmount; killed")
                kill(pid, SIGKILL)
                _ = poll(seconds: 5) { processGone(pid) }
            }
        }
        // Anything else mounted below the fixture (the tmpfs, or a mount a test made).
        for m in MountInfo.mounts(under: root) {
            if umount2(m, 0) != 0 && umount2(m, Int32(MNT_DETACH)) != 0 {
                problems.append("teardown: cannot unmount \(m): \(String(cString: strerror(errno)))")
            }
        }
        if !MountInfo.mounts(under: root).isEmpty {
            problems.append("teardown: something below \(root) is STILL mounted; left it in place")
        } else {
            removeTree(root)
        }
        problems += lock.withLock { notes }
        for p in problems { Issue.record(Comment(rawValue: p)) }
    }
}
