import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Waits for SIGINT/SIGTERM/SIGHUP on its own thread and ends the mount by detaching it.
final class SignalStopper: @unchecked Sendable {
    let mountpoint: String
    let signals: sigset_t
    let logger: Logger
    private var thread = pthread_t()

    init(mountpoint: String, signals: sigset_t, logger: Logger) {
        self.mountpoint = mountpoint
        self.signals = signals
        self.logger = logger
    }

    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { raw in
            let me = Unmanaged<SignalStopper>.fromOpaque(raw!).takeRetainedValue()
            var set = me.signals
            var signal: Int32 = 0
            sigwait(&set, &signal)
            if signal == SIGUSR2 { return nil }  // The loop ended by itself: nothing to do.
            me.logger.info("signal \(signal): unmounting", metadata: ["mountpoint": "\(me.mountpoint)"])
            Unmount.detach(me.mountpoint)
            return nil
        }, context)
    }

    /// The loop has returned: wake the waiting thread and let it exit.
    func finished() {
        pthread_kill(thread, SIGUSR2)
        pthread_join(thread, nil)
    }
}

public enum Unmount {
    /// Lazily detaches a FUSE mount: umount2(MNT_DETACH) as root, `fusermount3 -u -z` otherwise.
    @discardableResult
    public static func detach(_ mountpoint: String) -> Bool {
        if geteuid() == 0, umount2(mountpoint, Int32(MNT_DETACH)) == 0 { return true }
        return run(["/usr/bin/fusermount3", "-u", "-z", mountpoint]) == 0 || run(["/bin/fusermount3", "-u", "-z", mountpoint]) == 0
    }

    /// Unmounts unless busy: umount2 as root, `fusermount3 -u` otherwise.
    public static func unmount(_ mountpoint: String) -> Bool {
        if geteuid() == 0 { return umount2(mountpoint, 0) == 0 }
        return run(["/usr/bin/fusermount3", "-u", mountpoint]) == 0
    }

    /// Spawns a helper with an empty signal mask and default handlers, and waits for it.
    static func run(_ argv: [String]) -> Int32 {
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
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid = pid_t()
        guard posix_spawn(&pid, argv[0], nil, &attr, cargs, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}
