import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Workspace test machinery")
struct WatchdogTests {
    /// A daemon that stops answering must turn into a failed call (ENOTCONN after the fusectl abort), not a
    /// hung test run; teardown must still clean the mount up.
    @Test("the watchdog turns a write into a hung workspace into a failed call (ENOTCONN/ECONNABORTED)")
    func hangBecomesFailure() throws {
        let fx = try WSFixture("watchdog", backstop: 60)
        defer { fx.close() }
        try buildSmallBase(fx.src, bigSize: 100_000)
        let v = try fx.importVersion()
        let pid = try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v)
        try fx.io("a write before the hang") { try writeFile(ws + "/before.txt", Array("ok".utf8)) }

        #expect(stopProcess(pid))
        defer { kill(pid, SIGCONT) }
        let started = Date()
        let outcome = fx.io("a write into a stopped daemon", seconds: 2, expectHang: true) { () -> Int32 in
            let fd = Glibc.open(ws + "/during.txt", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            if fd < 0 { return errno }
            defer { Glibc.close(fd) }
            return Glibc.write(fd, "x", 1) == 1 ? 0 : errno
        }
        let took = Date().timeIntervalSince(started)
        // Kernels answer ENOTCONN or (newer ones) ECONNABORTED on an aborted connection.
        #expect(outcome == ENOTCONN || outcome == ECONNABORTED,
                "a call into a stopped daemon returned \(errnoName(outcome)) after \(took) s, expected ENOTCONN/ECONNABORTED from the watchdog's abort")
        #expect(took < 10, "the watchdog needed \(took) s")
        kill(pid, SIGCONT)
        // The daemon sees its connection gone and exits; auto_unmount removes the mount.
        #expect(poll(seconds: 10) { processGone(pid) } != nil, "the daemon did not exit after its connection was aborted")
    }
}
