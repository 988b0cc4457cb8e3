import AssetVFS
import CFUSE3
import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct MountOptions: Sendable {
    public var allowOther = false
    /// Mount read-only (`ro`): the kernel refuses every write before it reaches the daemon.
    public var readOnly = false
    public var threads = 16
    /// Raise the mount's read_ahead_kb so the kernel asks for 1 MiB per read (root only).
    public var readAheadKiB = 1024
    /// Shown as the mount's source in /proc/mounts, so tools can tell which store a mount serves.
    public var source = "assetfs"
    public init() {}

    /// `nosuid,nodev` always; `default_permissions` with `allow_other` so the kernel enforces file modes;
    /// `auto_unmount` so a killed daemon leaves no dead mount.
    var kernelOptions: String {
        let name = source.contains(",") ? "assetfs" : source
        var options = ["fsname=\(name)", "subtype=assetfs", "nosuid", "nodev", "noatime", "auto_unmount"]
        if allowOther { options += ["allow_other", "default_permissions"] }
        if readOnly { options.append("ro") }
        return options.joined(separator: ",")
    }
}

public struct MountError: Error, CustomStringConvertible {
    public let description: String
}

/// Mount lifecycle: create the session, mount, serve on the multithreaded loop, and stop cleanly.
///
/// Stopping: `fuse_session_exit` alone does not end the loop (it waits for one more request). SIGINT, SIGTERM
/// and SIGHUP are therefore handled by a thread that detaches the mount; the loop's next read of /dev/fuse
/// then fails and the loop returns. `fusermount3 -u` and `assetfs umount` end it the same way.
public final class FUSEMount {
    let fs: AssetFileSystem
    let mountpoint: String
    let options: MountOptions
    let logger: Logger

    public init(fs: AssetFileSystem, mountpoint: String, options: MountOptions, logger: Logger) {
        self.fs = fs
        self.mountpoint = mountpoint
        self.options = options
        self.logger = logger
    }

    /// Serves until unmounted. `ready` is called once the mount is live.
    public func run(ready: () -> Void = {}) throws {
        // Block the stop signals in every thread the loop will create; one thread waits for them instead.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        // SIGUSR2 is used internally to wake the waiting thread when the loop ends on its own.
        for s in [SIGINT, SIGTERM, SIGHUP, SIGUSR2] { sigaddset(&stopSignals, s) }
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        var args = fuse_args(argc: 0, argv: nil, allocated: 0)
        for arg in ["assetfs", "-o", options.kernelOptions] { fuse_opt_add_arg(&args, arg) }
        defer { fuse_opt_free_args(&args) }
        var ops = FUSEOperations.make()
        let userdata = Unmanaged.passRetained(fs)
        defer { userdata.release() }
        guard let session = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata.toOpaque()) else {
            throw MountError(description: "cannot create a FUSE session (is libfuse3 installed and /dev/fuse present?)")
        }
        defer { fuse_session_destroy(session) }
        guard fuse_session_mount(session, mountpoint) == 0 else {
            throw MountError(description: "cannot mount on \(mountpoint): check that it is an existing empty directory, that /dev/fuse exists, and that nothing is mounted there (fusermount3 -u \(mountpoint))")
        }
        let lastDescriptor = Self.holdConnectionLast(fuse_session_fd(session))
        defer { if lastDescriptor >= 0 { close(lastDescriptor) } }
        let stopper = SignalStopper(mountpoint: mountpoint, signals: stopSignals, logger: logger)
        stopper.start()
        logger.info("mounted", metadata: ["mountpoint": "\(mountpoint)", "store": "\(fs.repo.root)"])
        ready()

        // The kernel resets read_ahead_kb when the session answers INIT, the first request the loop serves.
        // Raise it a little later, without any system call into our own mount: a thread blocked on its own
        // mount when the daemon is killed would keep the mount (and the process) from ever going away.
        let mountpoint = self.mountpoint, readAhead = options.readAheadKiB
        let raiser = Thread {
            usleep(50_000)
            FUSEMount.raiseReadAhead(mountpoint, kib: readAhead)
        }
        raiser.start()
        let config = fuse_loop_cfg_create()
        fuse_loop_cfg_set_max_threads(config, UInt32(options.threads))
        fuse_loop_cfg_set_clone_fd(config, 0)
        let status = fuse_session_loop_mt(session, config)
        fuse_loop_cfg_destroy(config)
        stopper.finished()
        fuse_session_unmount(session)
        logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)", "status": "\(status)"])
    }

    /// Keeps a duplicate of the /dev/fuse descriptor numbered above fusermount3's control socket.
    ///
    /// Why: when the daemon is killed, fusermount3 (auto_unmount) wakes as soon as its control socket closes
    /// and unmounts only if opening the mountpoint fails with ENOTCONN, i.e. only if the connection is
    /// already gone. A dying process closes descriptors in ascending order and the kernel then releases them
    /// last-closed first, so the connection must hold a higher number than the socket to go first.
    /// Without this, a descriptor number freed by another thread during mount could put /dev/fuse below the
    /// socket: fusermount3's open then waited on the dying connection, failed with ECONNABORTED, and the
    /// dead mount stayed (about 1 kill in 40 under load).
    /// (Any number above the socket's does; 1023, or just under a lower limit, keeps the kernel's descriptor
    /// table small where the limit is in the millions.)
    static func holdConnectionLast(_ fd: Int32) -> Int32 {
        var limit = rlimit()
        guard fd >= 0, getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
        return fcntl(fd, F_DUPFD_CLOEXEC, Int32(clamping: min(limit.rlim_cur, 1024)) - 1)
    }

    /// Finds the mount's device in /proc/self/mountinfo and raises its bdi read-ahead, so sequential reads
    /// arrive as 1 MiB requests (root only; a no-op elsewhere).
    static func raiseReadAhead(_ mountpoint: String, kib: Int) {
        guard geteuid() == 0, kib > 0, let device = MountTable.device(of: mountpoint) else { return }
        let fd = open("/sys/class/bdi/\(device)/read_ahead_kb", O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let text = "\(kib)\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }
}

/// Reads /proc/self/mountinfo.
public enum MountTable {
    /// "major:minor" of the last mount at `path`, or nil.
    public static func device(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        var found: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, unescape(String(fields[4])) == path { found = String(fields[2]) }
        }
        return found
    }

    public static func isMounted(_ path: String) -> Bool { device(of: path) != nil }

    /// Mountpoints of assetfs mounts serving the store at `root` (their source is `assetfs:<root>`).
    public static func mounts(ofStore root: String) -> [String] {
        assetfsMounts().filter { $0.store == root }.map(\.mountpoint)
    }

    /// Every assetfs mount of this host: mountpoint and the store it serves (from its source `assetfs:<store>`).
    public static func assetfsMounts() -> [(mountpoint: String, store: String)] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        var out: [(String, String)] = []
        for line in text.split(separator: "\n") {
            guard let dash = line.range(of: " - ") else { continue }
            let tail = line[dash.upperBound...].split(separator: " ")
            let head = line[..<dash.lowerBound].split(separator: " ")
            guard tail.count >= 2, tail[0] == "fuse.assetfs", head.count > 4 else { continue }
            let source = unescape(String(tail[1]))
            guard source.hasPrefix("assetfs:") else { continue }
            out.append((unescape(String(head[4])), String(source.dropFirst("assetfs:".count))))
        }
        return out
    }

    /// True when `path` is served by a FUSE file system that answers (statfs reaches the daemon).
    public static func answersAsFUSE(_ path: String) -> Bool {
        var fs = statfs()
        return statfs(path, &fs) == 0 && fs.f_type == 0x6573_5546
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

#if canImport(Foundation)
import Foundation
#endif
