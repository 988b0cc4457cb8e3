import AssetFUSE
import AssetRepository
import Foundation

/// Starts `assetfs mount --foreground` as a detached child and waits until its mount answers.
enum Daemon {
    static func start(arguments: [String], mountpoint: String, store: String, quiet: Bool) throws {
        let logDir = store + "/logs"
        mkdir(logDir, 0o700)  // Failure shows up below as a missing log file; the mount itself does not need it.
        let logPath = logDir + "/mount.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The daemon outlives us: it must not hold our pipes open (a caller reading our output would hang).
        _ = posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        // New session: a Ctrl-C in the starting terminal must not reach the daemon.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | 0x80 /* POSIX_SPAWN_SETSID */))
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, environ)
        guard rc == 0 else { throw RepositoryError(.failure, "cannot start the mount daemon \(executable): \(String(cString: strerror(rc)))") }

        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                let tail = log.split(separator: "\n").suffix(5).joined(separator: "\n")
                throw RepositoryError(.failure, "the mount daemon exited before the mount was ready; its log (\(logPath)) ends with:\n\(tail)")
            }
            if MountTable.isMounted(mountpoint), MountTable.answersAsFUSE(mountpoint) {
                if !quiet { print("mounted \(mountpoint) (pid \(pid), log \(logPath))") } else { print(pid) }
                return
            }
            usleep(5_000)
        }
        kill(pid, SIGTERM)
        throw RepositoryError(.failure, "the mount on \(mountpoint) did not become ready within 30 s; see \(logPath)")
    }
}

/// glibc 2.34+; not exported by Swift's Glibc module.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
func posix_spawn_file_actions_addclosefrom_np(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32
