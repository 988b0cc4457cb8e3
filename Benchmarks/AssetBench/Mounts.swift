#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The read benchmark's FUSE mounts and the daemons behind them: started, found in the mount table, and
/// always taken down again (normal end, thrown error, SIGINT/SIGTERM/SIGHUP, or a watchdog timeout).
enum MountTable {
    struct Entry {
        /// "major:minor"; the minor is the FUSE connection id under /sys/fs/fuse/connections.
        let device: String
        let mountpoint: String
        let fstype: String
    }

    static func entries() -> [Entry] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let halves = line.components(separatedBy: " - ")
            let fields = halves[0].split(separator: " ")
            guard fields.count > 4 else { return nil }
            let fstype = halves.count > 1 ? String(halves[1].split(separator: " ").first ?? "") : ""
            return Entry(device: String(fields[2]), mountpoint: unescape(String(fields[4])), fstype: fstype)
        }
    }

    /// The last mount on `path` (the one a lookup sees), or nil.
    static func entry(_ path: String) -> Entry? { entries().last { $0.mountpoint == path } }

    static func isMounted(_ path: String) -> Bool { entry(path) != nil }

    /// The mount's root answers a stat (which reaches the daemon) with the mounted device: only call it once the
    /// mount is in the table and its daemon runs. (statfs and its FUSE magic are not exported by Glibc's module.)
    static func answers(_ path: String) -> Bool {
        guard let entry = entry(path) else { return false }
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)
        let minor = (dev & 0xFF) | ((dev >> 12) & ~0xFF)
        return entry.device == "\(major):\(minor)"
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

/// Every mount this process made, with its daemon's pid when known. `releaseAll` is idempotent and safe to call
/// from the signal-handling queue or the watchdog thread while the main thread is blocked in a read.
final class MountGuard: @unchecked Sendable {
    static let shared = MountGuard()
    private let lock = NSLock()
    private var mounts: [String: Int32] = [:]  // mountpoint -> daemon pid (0: not known yet)
    private var interruptedBy: Int32 = 0
    /// Mounts under this directory are ours even if not registered (a start racing with an interrupt).
    private var sweepPrefix: String?

    func setSweepPrefix(_ prefix: String) {
        lock.lock(); defer { lock.unlock() }
        sweepPrefix = prefix
    }

    /// Registers a mount before it is started; refuses once the run is interrupted, so no new mount can appear
    /// while the cleanup runs.
    func add(_ mountpoint: String, pid: Int32 = 0) throws {
        lock.lock(); defer { lock.unlock() }
        if interruptedBy != 0 { throw BenchError("interrupted by signal \(interruptedBy)") }
        mounts[mountpoint] = pid
    }

    /// The daemon's pid once known (even when interrupted meanwhile: the cleanup then waits for it).
    func record(_ mountpoint: String, pid: Int32) {
        lock.lock(); defer { lock.unlock() }
        mounts[mountpoint] = pid
    }

    /// The signal that interrupted the run, 0 if none.
    var interruption: Int32 {
        lock.lock(); defer { lock.unlock() }
        return interruptedBy
    }

    func checkInterrupted() throws {
        let s = interruption
        if s != 0 { throw BenchError("interrupted by signal \(s)") }
    }

    /// Signal path: no new mounts from now on, and the current ones are aborted and detached so whatever the main
    /// thread is blocked on fails; the main thread then unwinds and calls releaseAll.
    func interrupt(_ signal: Int32) {
        lock.lock()
        if interruptedBy == 0 { interruptedBy = signal }
        lock.unlock()
        abortAll()
    }

    func remove(_ mountpoint: String) {
        lock.lock(); defer { lock.unlock() }
        mounts[mountpoint] = nil
    }

    private func snapshot() -> [(String, Int32)] {
        lock.lock(); defer { lock.unlock() }
        return mounts.map { ($0.key, $0.value) }
    }

    /// Unmounts every registered mount (polite, then lazy, then by aborting the connection) and ends its daemon.
    func releaseAll() {
        for (mountpoint, pid) in snapshot() {
            Self.takeDown(mountpoint, pid: pid)
            remove(mountpoint)
        }
        lock.lock()
        let prefix = sweepPrefix
        lock.unlock()
        if let prefix {
            for entry in MountTable.entries() where entry.mountpoint.hasPrefix(prefix) {
                Self.takeDown(entry.mountpoint, pid: 0)
            }
        }
    }

    /// Watchdog path: the main thread is stuck in a request. Abort the connections first (the stuck call then
    /// fails with ENOTCONN), then detach; the main thread's error path calls releaseAll for the rest.
    func abortAll() {
        for (mountpoint, _) in snapshot() {
            Self.abortConnection(mountpoint)
            _ = Self.fusermount(["-u", "-z", mountpoint])
        }
    }

    /// Unmount `mountpoint` and wait for `pid` (if any) to exit; SIGTERM then SIGKILL a daemon that lingers.
    static func takeDown(_ mountpoint: String, pid: Int32) {
        if MountTable.isMounted(mountpoint) {
            if !fusermount(["-u", mountpoint]) {
                progress("cleanup: \(mountpoint) busy, detaching lazily (fusermount3 -u -z)")
                if !fusermount(["-u", "-z", mountpoint]) {
                    abortConnection(mountpoint)
                    _ = fusermount(["-u", "-z", mountpoint])
                }
            }
            if MountTable.isMounted(mountpoint) { progress("cleanup: WARNING \(mountpoint) is still mounted") }
        }
        if pid > 0 && !waitForExit(pid, seconds: 10) {
            progress("cleanup: daemon \(pid) of \(mountpoint) still running; SIGTERM")
            kill(pid, SIGTERM)
            if !waitForExit(pid, seconds: 5) { kill(pid, SIGKILL); _ = waitForExit(pid, seconds: 5) }
        }
    }

    /// Polls until the process is gone (or a zombie: reaped by whoever owns it).
    static func waitForExit(_ pid: Int32, seconds: Double) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if !isAlive(pid) { return true }
            usleep(10_000)
        }
        return !isAlive(pid)
    }

    static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    static func fusermount(_ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileIO.executable("fusermount3") ?? "/usr/bin/fusermount3")
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// Writes 1 to /sys/fs/fuse/connections/<minor>/abort (mounting fusectl first if needed).
    static func abortConnection(_ mountpoint: String) {
        guard let entry = MountTable.entry(mountpoint), entry.fstype.hasPrefix("fuse"),
              let minor = entry.device.split(separator: ":").last else { return }
        let connections = "/sys/fs/fuse/connections"
        if !MountTable.isMounted(connections) { _ = mount("none", connections, "fusectl", 0, nil) }
        let fd = open("\(connections)/\(minor)/abort", O_WRONLY)
        guard fd >= 0 else { progress("cleanup: cannot open the abort file of connection \(minor)"); return }
        _ = write(fd, "1", 1)
        close(fd)
        progress("cleanup: aborted FUSE connection \(minor) of \(mountpoint)")
    }
}

/// Turns a hang inside a FUSE request into an error: when a phase overruns its deadline, every registered
/// connection is aborted, so the blocked system call returns ENOTCONN and the run fails cleanly.
final class Watchdog: @unchecked Sendable {
    static let shared = Watchdog()
    private let lock = NSLock()
    private var deadline: ContinuousClock.Instant?
    private var label = ""
    private var started = false

    func start() {
        lock.lock(); defer { lock.unlock() }
        guard !started else { return }
        started = true
        let thread = Thread { [self] in
            while true {
                usleep(250_000)
                lock.lock()
                let expired = deadline.map { ContinuousClock.now > $0 } ?? false
                let what = label
                if expired { deadline = nil }
                lock.unlock()
                if expired {
                    progress("watchdog: \(what) did not finish in time; aborting the FUSE connections")
                    MountGuard.shared.abortAll()
                }
            }
        }
        thread.start()
    }

    /// Runs `body` under a deadline.
    func guarded<T>(_ seconds: Int, _ what: String, _ body: () throws -> T) throws -> T {
        try MountGuard.shared.checkInterrupted()
        lock.lock()
        deadline = ContinuousClock.now + .seconds(seconds)
        label = what
        lock.unlock()
        defer { lock.lock(); deadline = nil; lock.unlock() }
        return try body()
    }
}

/// One way of reading version 3: a directory tree that may need a daemon first.
protocol ReadTarget: AnyObject {
    var name: String { get }
    /// Root of version 3's tree (valid while started).
    var root: String { get }
    /// Seconds from spawning the mount command to the tree answering; nil when nothing is mounted.
    func start() throws -> Double?
    func stop() throws
    /// The daemon serving the current mount, if any.
    var daemonPID: Int32? { get }
}

/// `assetfs export bench@v3` on local disk: the native baseline.
final class NativeTarget: ReadTarget {
    let name = "native"
    let root: String
    init(root: String) { self.root = root }
    func start() throws -> Double? { nil }
    func stop() throws {}
    var daemonPID: Int32? { nil }
}

/// `assetfs mount MNT --background [-o ro]`; version 3 at MNT/bench/v3.
final class AssetfsMountTarget: ReadTarget {
    let name: String
    let binary, store, mountpoint: String
    /// `--cache-size`; nil: the binary's default.
    let cacheSize: String?
    /// Extra `assetfs mount` arguments, e.g. ["-o", "ro"].
    let extra: [String]
    let runner: CommandRunner
    private(set) var daemonPID: Int32?
    private var starts = 0
    var root: String { mountpoint + "/bench/v3" }

    init(name: String = "assetfs", binary: String, store: String, mountpoint: String, cacheSize: String?, extra: [String] = [],
         runner: CommandRunner) {
        (self.name, self.binary, self.store, self.mountpoint, self.cacheSize, self.extra, self.runner) =
            (name, binary, store, mountpoint, cacheSize, extra, runner)
    }

    /// Wall clock of `assetfs mount --background` alone (spawn to exit); readiness is the command's own promise.
    func start() throws -> Double? {
        starts += 1
        try MountGuard.shared.add(mountpoint)
        let result = try Spawn.run(binary, ["mount", mountpoint, "--background", "--store", store]
                                   + (cacheSize.map { ["--cache-size", $0] } ?? []) + extra,
                                   runner: runner, label: "\(name)-mount-\(starts)")
        guard let pid = Self.pid(in: result.output) else {
            throw BenchError("cannot find the daemon pid in `assetfs mount` output: \(result.output)")
        }
        daemonPID = pid
        MountGuard.shared.record(mountpoint, pid: pid)
        guard MountTable.isMounted(mountpoint) else { throw BenchError("assetfs mount returned but \(mountpoint) is not mounted") }
        return result.seconds
    }

    func stop() throws {
        defer { MountGuard.takeDown(mountpoint, pid: daemonPID ?? 0); MountGuard.shared.remove(mountpoint); daemonPID = nil }
        try Spawn.run(binary, ["umount", mountpoint], runner: runner, label: "\(name)-umount-\(starts)")
    }

    /// "mounted MNT (pid N, log ...)" -> N.
    static func pid(in output: String) -> Int32? {
        guard let range = output.range(of: "(pid ") else { return nil }
        return Int32(output[range.upperBound...].prefix { $0.isNumber })
    }
}

/// A peer's mount command run in the foreground as our child, so its pid is known; stopped by unmounting.
final class PeerMountTarget: ReadTarget {
    let name: String
    let executable: String
    let arguments: [String]
    let mountpoint: String
    let root: String
    let runner: CommandRunner
    private(set) var daemonPID: Int32?
    private var starts = 0

    init(name: String, executable: String, arguments: [String], mountpoint: String, root: String, runner: CommandRunner) {
        (self.name, self.executable, self.arguments, self.mountpoint, self.root, self.runner) =
            (name, executable, arguments, mountpoint, root, runner)
    }

    /// Spawn to the moment the version's tree root can be stat'ed (restic loads snapshots lazily, on first access).
    func start() throws -> Double? {
        starts += 1
        let label = "\(name)-mount-\(starts)"
        let errPath = runner.logDirectory + "/" + label + ".err"
        try MountGuard.shared.add(mountpoint)
        let begin = ContinuousClock.now
        let pid = try Spawn.start(executable, arguments, environment: runner.environment,
                                  stdout: runner.logDirectory + "/" + label + ".out", stderr: errPath)
        daemonPID = pid
        MountGuard.shared.record(mountpoint, pid: pid)
        let deadline = begin + .seconds(120)
        while ContinuousClock.now < deadline {
            if let status = Spawn.exited(pid) {
                daemonPID = nil
                let tail = ((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").split(separator: "\n")
                    .suffix(20).joined(separator: "\n")
                throw BenchError("\(name) mount exited (status \(status)) before the mount was ready:\n\(tail)\n(logs: \(errPath))")
            }
            var st = stat()
            if MountTable.isMounted(mountpoint), MountTable.answers(mountpoint), stat(root, &st) == 0 {
                let elapsed = ContinuousClock.now - begin
                return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            }
            usleep(5_000)
        }
        throw BenchError("\(name) mount on \(mountpoint) did not show \(root) within 120 s (logs: \(errPath))")
    }

    /// Unmounts (the tool then exits on its own), reaps the child.
    func stop() throws {
        guard let pid = daemonPID else { return }
        MountGuard.takeDown(mountpoint, pid: pid)
        MountGuard.shared.remove(mountpoint)
        if Spawn.exited(pid) == nil { kill(pid, SIGKILL); _ = Spawn.wait(pid) }
        daemonPID = nil
    }
}
