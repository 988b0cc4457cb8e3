import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a person's terminal showed while a command ran.
public struct TerminalSession: CustomStringConvertible, Sendable {
    public var argv: [String]
    public var exitCode: Int32?
    public var signal: Int32?
    public var timedOut = false
    /// Everything written to the terminal, stdout and stderr interleaved as they arrived, with the terminal's
    /// "\r\n" turned back into "\n" (a lone "\r", as progress lines use, is kept).
    public var transcript = ""

    public var succeeded: Bool { exitCode == 0 && !timedOut }

    /// The transcript with ESC [ ... sequences removed and each line shown as it was last redrawn (what stays on
    /// the screen once a "\r" line has been overwritten).
    public var screen: String {
        transcript.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            let drawn = line.split(separator: "\r", omittingEmptySubsequences: false).map { stripEscapes(String($0)) }
            return drawn.last(where: { !$0.isEmpty }) ?? ""
        }.joined(separator: "\n")
    }

    /// Every text the terminal drew on one line: the pieces between "\n" and "\r", escape sequences removed.
    public var drawnLines: [String] {
        transcript.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { stripEscapes(String($0)) }
    }

    public var description: String {
        var s = "`\(argv.joined(separator: " "))` at a terminal"
        if timedOut { s += " TIMED OUT (process group killed)" }
        if let exitCode { s += " exited \(exitCode)" }
        if let signal { s += " killed by signal \(signal)" }
        return s + "; the terminal showed:\n" + String(screen.suffix(4000))
    }
}

/// Removes ANSI control sequences (ESC [ params letter).
public func stripEscapes(_ text: String) -> String {
    var out = ""
    var it = text.unicodeScalars.makeIterator()
    while let c = it.next() {
        if c == "\u{1B}" {
            guard let next = it.next() else { break }
            if next == "[" {
                while let p = it.next(), !(("@"..."~").contains(p)) {}
            }
            continue
        }
        out.unicodeScalars.append(c)
    }
    return out
}

/// Runs `argv` the way a person at a terminal does: stdin, stdout and stderr on a new pseudo-terminal of
/// `columns` x `rows` (so isatty is true and TIOCGWINSZ answers), in its own process group, with `environment`
/// added to ours (see `spawnProcess`). Reads the terminal until the command has exited and every process
/// holding the terminal has closed it; after `timeout` seconds kills the process group.
///
/// Written here rather than calling `script -qec`: the arguments need no shell quoting, and the test sees the
/// exit status and the window size it chose.
public func runInTerminal(_ argv: [String], environment: [String: String] = [:], columns: UInt16 = 100, rows: UInt16 = 40,
                          timeout: Double = 120) throws -> TerminalSession {
    // posix_openpt, unlockpt and ptsname are not in Swift's Glibc module; they are these calls on Linux (grantpt
    // has nothing to do with devpts). TIOCSPTLCK = _IOW('T', 0x31, int), TIOCGPTN = _IOR('T', 0x30, unsigned int),
    // the same on x86_64 and arm64.
    let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard master >= 0 else { throw TestFailure("open /dev/ptmx: \(String(cString: strerror(errno)))") }
    defer { close(master) }
    var unlock: Int32 = 0
    var number: UInt32 = 0
    guard ioctl(master, 0x4004_5431, &unlock) == 0, ioctl(master, 0x8004_5430, &number) == 0 else {
        throw TestFailure("cannot set up the pseudo-terminal: \(String(cString: strerror(errno)))")
    }
    let slavePath = "/dev/pts/\(number)"
    let slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard slave >= 0 else { throw TestFailure("open \(slavePath): \(String(cString: strerror(errno)))") }
    var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
    guard ioctl(slave, UInt(TIOCSWINSZ), &size) == 0 else {
        close(slave)
        throw TestFailure("TIOCSWINSZ on \(slavePath): \(String(cString: strerror(errno)))")
    }
    let pid: pid_t
    do {
        pid = try spawnProcess(argv.map { Array($0.utf8) }, stdout: slave, stderr: slave, environment: environment,
                               ownProcessGroup: true, stdin: slave)
    } catch {
        close(slave)
        throw error
    }
    close(slave)  // Only the child holds it now: reads of the master end with EIO once every holder is gone.

    var session = TerminalSession(argv: argv)
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var status: Int32 = 0
    var exited = false
    var quietAfterExit = 0
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        var fds = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        let ready = poll(&fds, 1, 50)
        if ready > 0 {
            let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress!, $0.count) }
            if n > 0 {
                bytes += buffer[0..<n]
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if exited { break }  // EIO: nobody holds the terminal any more.
        }
        if !exited {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { exited = true }
        } else {
            // A background process started by the command (a mount daemon detaches from the terminal; anything
            // else that kept it) must not hold the test: 1 s of silence after the exit ends the reading.
            quietAfterExit += 1
            if quietAfterExit > 20 { break }
        }
        if !exited && Date() >= deadline {
            session.timedOut = true
            kill(-pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            break
        }
    }
    if exited { (session.exitCode, session.signal) = decodeWaitStatus(status) }
    session.transcript = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
    return session
}
