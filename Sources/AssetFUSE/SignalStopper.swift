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

    static func run(_ argv: [String]) -> Int32 { ChildProcess.run(argv) }
}
