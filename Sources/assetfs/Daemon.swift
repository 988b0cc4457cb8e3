import AssetFUSE
import AssetRepository
import Foundation

/// Starts `assetfs mount --foreground` as a detached child and waits until its mount answers.
enum Daemon {
    static func start(arguments: [String], mountpoint: String, logDirectory logDir: String, quiet: Bool) throws {
        mkdir(logDir, 0o700)  // Failure shows up below as a missing log file; the mount itself does not need it.
        let logPath = logDir + "/mount.log"
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var options = ChildProcess.Options()
        options.input = "/dev/null"
        options.output = logPath
        // New session: a Ctrl-C in the starting terminal must not reach the daemon. And it outlives us: it
        // must not hold our pipes open (a caller reading our output would hang).
        options.newSession = true
        options.closeInherited = true
        let pid: pid_t
        switch ChildProcess.start([executable] + arguments, options) {
        case .success(let p): pid = p
        case .failure(let e): throw RepositoryError(.failure, "cannot start the mount daemon \(executable): \(e)")
        }

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
