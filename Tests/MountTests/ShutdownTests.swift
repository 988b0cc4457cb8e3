import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Shutdown")
struct ShutdownTests {
    /// A small store: one asset, one version.
    private func smallFixture(_ name: String) throws -> (MountFixture, [UInt8]) {
        let f = try MountFixture(name)
        let bytes = randomBytes(700_000, seed: 77)
        do {
            try writeSourceFile(f.src, "file.bin", bytes, mtime: 1_700_000_000)
            try f.importVersion("data")
        } catch {
            f.close()
            throw error
        }
        return (f, bytes)
    }

    @Test("kill -9 of the daemon leaves no mount behind (auto_unmount) within 5 s")
    func killedDaemon() throws {
        let (f, bytes) = try smallFixture("kill9")
        defer { f.close() }
        let pid = try f.mount()
        let got = try f.io("read before kill") { try readAll(f.path("data/v1/file.bin")) }
        #expect(sameBytes(got, bytes))

        #expect(kill(pid, SIGKILL) == 0, "kill -9 \(pid): \(String(cString: strerror(errno)))")
        let daemonGone = poll(seconds: 5) { processGone(pid) }
        #expect(daemonGone != nil, "the daemon survived SIGKILL")
        let unmounted = poll(seconds: 5) { !MountInfo.isMounted(f.mnt) }
        #expect(unmounted != nil, "\(f.mnt) is still in /proc/self/mountinfo 5 s after the daemon was killed (auto_unmount did not clean up)")
        if unmounted == nil {
            // Say what a user would see: ENOTCONN, fast.
            let started = Date()
            let r = f.io("stat a dead mount", seconds: 5) { () -> Int32 in
                var st = stat()
                return lstat(f.path("data"), &st) == 0 ? 0 : errno
            }
            Issue.record("accessing the dead mount gave errno \(r) (\(String(cString: strerror(r)))) after \(Date().timeIntervalSince(started)) s")
        } else {
            // The mount point is a plain empty directory again.
            #expect(try listDirectory(f.mnt) == [], "mount point after auto_unmount")
            #expect(try statfsPath(f.mnt).f_type != fuseSuperMagic)
        }
    }

    @Test("a --foreground daemon exits 0 and unmounts on SIGTERM, SIGINT and SIGHUP", arguments: [SIGTERM, SIGINT, SIGHUP])
    func foregroundSignal(_ signal: Int32) throws {
        let (f, bytes) = try smallFixture("signal\(signal)")
        defer { f.close() }
        let daemon = try f.mountForeground()
        let got = try f.io("read") { try readAll(f.path("data/v1/file.bin")) }
        #expect(sameBytes(got, bytes))

        daemon.signal(signal)
        let result = daemon.wait(timeout: 15) { f.abortConnection() }
        #expect(result.exitCode == 0 && !result.timedOut, "after signal \(signal): \(result)")
        #expect(!MountInfo.isMounted(f.mnt), "\(f.mnt) still mounted after the daemon exited on signal \(signal)")
        let log = result.err + result.out
        #expect(log.contains("unmounted"), "the daemon should log its unmount: \(result)")
    }

    @Test("`assetfs umount` ends the daemon; a busy mount is refused until its file is closed")
    func umountEndsDaemon() throws {
        let (f, bytes) = try smallFixture("umount")
        defer { f.close() }
        let pid = try f.mount()
        #expect(!processGone(pid))

        // Busy: an open file inside keeps `assetfs umount` from unmounting (exit 1, a helpful message).
        let fd = try f.io("open") { try openRead(f.path("data/v1/file.bin")) }
        var fdOpen = true
        defer { if fdOpen { Glibc.close(fd) } }
        let busy = f.cli(["umount", f.mnt], timeout: 20)
        #expect(busy.exitCode == 1 && busy.err.contains("busy"), "umount with an open file: \(busy)")
        #expect(MountInfo.isMounted(f.mnt) && !processGone(pid), "a refused umount must leave the mount and daemon alive")
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        let head = try f.io("read while busy") { try preadFully(fd, offset: 0, count: 4096, buffer: buffer, path: "file.bin") }
        #expect(sameBytes(head, Array(bytes[0..<4096])))
        Glibc.close(fd)
        fdOpen = false

        let r = f.cli(["umount", f.mnt], timeout: 20)
        #expect(r.succeeded, "\(r)")
        #expect(!MountInfo.isMounted(f.mnt), "still mounted after assetfs umount")
        let gone = poll(seconds: 5) { processGone(pid) }
        #expect(gone != nil, "daemon pid \(pid) still runs 5 s after `assetfs umount`")
        let log = (try? String(contentsOfFile: f.store + "/logs/mount.log", encoding: .utf8)) ?? ""
        #expect(log.contains("unmounted"), "mount.log: \(log.suffix(1000))")

        // Unmounting again says nothing is mounted (exit 1), and a new mount works.
        let again = f.cli(["umount", f.mnt])
        #expect(again.exitCode == 1 && again.err.contains("nothing is mounted"), "\(again)")
        let pid2 = try f.mount()
        #expect(pid2 != pid)
        // `fusermount3 -u` also ends the daemon.
        let fu = f.run(["fusermount3", "-u", f.mnt])
        #expect(fu.succeeded, "\(fu)")
        #expect(poll(seconds: 5) { processGone(pid2) } != nil, "daemon pid \(pid2) still runs 5 s after fusermount3 -u")
        #expect(!MountInfo.isMounted(f.mnt))
    }

    @Test("harness: a hung daemon (SIGSTOP) becomes ENOTCONN via the watchdog and the child timeout, not a hang")
    func hungDaemonIsCut() throws {
        let (f, _) = try smallFixture("hang")
        defer { f.close() }

        // In-process call: the watchdog aborts the connection after its budget.
        let pid = try f.mount()
        #expect(stopProcess(pid))
        let started = Date()
        let (rc, code) = f.io("statfs on a stopped daemon", seconds: 2, expectHang: true) { () -> (Int32, Int32) in
            do {
                _ = try statfsPath(f.mnt)
                return (0, 0)
            } catch let e as SysError {
                return (-1, e.code)
            } catch {
                return (-1, -1)
            }
        }
        let took = Date().timeIntervalSince(started)
        // Linux answers ECONNABORTED after a fusectl abort (ENOTCONN once the daemon is gone).
        #expect(rc == -1 && (code == ENOTCONN || code == ECONNABORTED), "statfs on an aborted connection: rc \(rc) errno \(code)")
        #expect(took >= 1.5 && took < 10, "the watchdog should cut the hang after ~2 s, took \(took) s")
        // Resumed, the daemon finds its connection gone and exits; auto_unmount removes the mount.
        kill(pid, SIGCONT)
        #expect(poll(seconds: 5) { processGone(pid) } != nil, "daemon \(pid) should exit once its connection is gone")
        #expect(poll(seconds: 5) { !MountInfo.isMounted(f.mnt) } != nil, "the aborted mount should go away")
        if MountInfo.isMounted(f.mnt) { _ = f.cli(["umount", f.mnt], timeout: 20) }

        // Child process: the timeout aborts the connection so the stuck child can be killed and reaped.
        let pid2 = try f.mount()
        #expect(stopProcess(pid2))
        let child = f.run(["stat", "-f", f.mnt], timeout: 2)
        #expect(child.timedOut && child.seconds < 15, "\(child)")
        #expect(child.signal == SIGKILL || child.exitCode != 0, "\(child)")
        kill(pid2, SIGCONT)
        #expect(poll(seconds: 5) { processGone(pid2) } != nil, "daemon \(pid2) should exit once its connection is gone")
        #expect(poll(seconds: 5) { !MountInfo.isMounted(f.mnt) } != nil, "the aborted mount should go away")
    }
}
