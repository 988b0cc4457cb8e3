import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// AssetTestSupport's `MountFixture` (directory `/tmp/assetfs-rel-NAME-XXXXXX`, the store optionally on a
/// size-limited tmpfs) plus the reliability tests' helpers: raw-byte arguments, versions, export signatures,
/// verify reports, dead mounts.
final class Fixture: MountFixture, @unchecked Sendable {
    /// `backstop`: the whole test's budget, after which the mount is cut (scaled for the long variants).
    /// `tmpfsMB`: put the store on a tmpfs of that size (mounted here, unmounted in `close`).
    init(_ name: String, backstop: Double = 150, tmpfsMB: Int? = nil, initStore: Bool = true) throws {
        // Long variants do 5x the work: scale the whole-test budget with them.
        var settings = Settings(label: "rel", backstop: backstop * (Mode.long ? 8 : 1))
        settings.tmpfsMB = tmpfsMB
        settings.initStore = initStore
        settings.runTimeout = 60
        settings.cliTimeout = 90
        settings.ioSeconds = 30
        settings.umountTimeout = 30
        settings.daemonExitSeconds = 15
        settings.importMessage = "reliability"
        try super.init(name, settings: settings)
    }

    /// `assetfs` with raw-byte arguments (names that are not UTF-8).
    func cliRaw(_ args: [[UInt8]], timeout: Double = 30) -> ProcessResult {
        do {
            let child = try start(raw: [Array(Paths.assetfs.utf8)] + args)
            return child.wait(timeout: timeout) { self.abortConnection() }
        } catch {
            var r = ProcessResult(argv: args.map { String(decoding: $0, as: UTF8.self) })
            r.stderr = Data("\(error)".utf8)
            return r
        }
    }

    /// `versions ASSET --json` as (version number -> object); empty when the asset does not exist (yet).
    func versions(_ asset: String = "data") throws -> [Int: [String: Any]] {
        let r = cli(["versions", asset, "--json"])
        if r.exitCode == 1 && r.err.contains("no asset named") { return [:] }
        guard r.succeeded else { throw TestFailure("\(r)") }
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw TestFailure("versions --json is not a JSON array: \(r.out.prefix(300))")
        }
        var out: [Int: [String: Any]] = [:]
        for v in list { if let n = v["version"] as? Int { out[n] = v } }
        return out
    }

    /// Exports REF into a fresh scratch directory and returns its signature (the directory is removed).
    func exportSignature(_ ref: String) throws -> TreeSignature {
        let dest = scratchPath("export")
        defer { removeTree(dest) }
        let r = cli(["export", ref, dest], timeout: 120)
        guard r.succeeded else { throw TestFailure("export of \(ref) failed: \(r)") }
        return try treeSignature(dest)
    }

    /// `verify --json`: the result and the parsed report (nil when stdout is not the JSON object).
    func verify(_ extra: [String] = []) -> (ProcessResult, [String: Any]?) {
        let r = cli(["verify", "--json"] + extra, timeout: 180)
        let report = (try? JSONSerialization.jsonObject(with: r.stdout)) as? [String: Any]
        return (r, report)
    }

    /// `cp -a FROM TO` (TO is replaced).
    func copyTree(_ from: String, _ to: String) throws {
        removeTree(to)
        let r = run(["cp", "-a", from, to])
        guard r.succeeded else { throw TestFailure("copy failed: \(r)") }
    }

    /// After the daemon was SIGKILLed: waits for `auto_unmount` to remove the dead mount. Returns the seconds
    /// it took, or nil (the mount is then detached by force so the test can go on, and the caller reports it).
    func awaitDeadMountGone(seconds: Double = 10) -> Double? {
        let took = poll(seconds: seconds) { !MountInfo.isMounted(mnt) }
        if took == nil {
            abortConnection()
            _ = run(["fusermount3", "-u", "-z", mnt], timeout: 10)
            if MountInfo.isMounted(mnt) { _ = umount2(mnt, Int32(MNT_DETACH)) }
        }
        forgetDaemon()
        return took
    }
}
