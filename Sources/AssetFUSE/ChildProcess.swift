#if canImport(Glibc)
import Glibc
#endif

/// Starts helper processes (fusermount3, the mount daemon) the one safe way: empty signal mask and default
/// handlers (the caller's threads block SIGTERM and friends for their own reasons), no inherited descriptors
/// beyond 0-2 when asked, and optionally a new session.
public enum ChildProcess {
    public struct Options {
        /// Paths for stdin and for stdout+stderr; nil inherits ours.
        public var input: String?
        public var output: String?
        public var newSession = false
        public var closeInherited = false
        /// Descriptors to hand over: `from` (ours) becomes `to` in the child.
        public var descriptors: [(from: Int32, to: Int32)] = []
        public init() {}
    }

    /// The child's pid, or the posix_spawn error.
    public static func start(_ argv: [String], _ options: Options = Options()) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input = options.input { posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0) }
        if let output = options.output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        for d in options.descriptors { posix_spawn_file_actions_adddup2(&actions, d.from, d.to) }
        if options.closeInherited { _ = posix_spawn_file_actions_addclosefrom_np(&actions, 3 + Int32(options.descriptors.count)) }
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
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if options.newSession { flags |= 0x80 /* POSIX_SPAWN_SETSID */ }
        posix_spawnattr_setflags(&attr, Int16(flags))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, environ)
        return rc == 0 ? .success(pid) : .failure(SpawnError(code: rc))
    }

    /// Runs to completion; the wait status, or -1 if it could not start.
    public static func run(_ argv: [String]) -> Int32 {
        guard case .success(let pid) = start(argv) else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public let code: Int32
        public var description: String { String(cString: strerror(code)) }
    }
}

/// glibc 2.34+; not exported by Swift's Glibc module.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
func posix_spawn_file_actions_addclosefrom_np(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32
