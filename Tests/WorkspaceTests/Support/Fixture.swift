import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// AssetTestSupport's `MountFixture` (directory `/tmp/assetfs-ws-NAME-XXXXXX`) plus a local reference tree and
/// the workspace, commit and version helpers. Teardown issues are prefixed with the test's name; with
/// WORKSPACE_TESTS_KEEP set, the directory of a cleanly ended test is kept.
final class WSFixture: MountFixture, @unchecked Sendable {
    /// The local reference tree: the same edits made on a plain file system.
    var local: String { root + "/local" }

    /// `backstop`: the whole test's budget, after which the mount is cut.
    /// `backend`: a local store, or a shared one (S3 + PostgreSQL).
    init(_ name: String, backstop: Double = 100, backend: StoreBackend = .local) throws {
        var settings = Settings(label: "ws", backstop: backstop)
        settings.backend = backend
        settings.extraDirectories = ["local"]
        settings.importMessage = "test import"
        settings.umountMayRace = true
        settings.namesIssues = true
        settings.keepVariable = "WORKSPACE_TESTS_KEEP"
        try super.init(name, settings: settings)
    }

    /// "ASSET vN" -> N.
    static func parseVersion(_ r: ProcessResult, asset: String) throws -> Int {
        guard let n = parseVersionLine(r.out, asset: asset) else {
            throw TestFailure("\(r): printed \(r.out.debugDescription), expected \"\(asset) vN\"")
        }
        return n
    }

    // MARK: Killing the daemon

    /// What `killDaemon` found.
    struct KillOutcome {
        /// The mount was still there `autoUnmountSeconds` after SIGKILL and had to be cut (fusectl abort).
        var stuck = false
        /// The dead daemon's threads that had not exited (state, wait channel, kernel stack), when stuck.
        var diagnosis = ""
    }

    /// kill -9 of the daemon; waits until it is gone and its mount has disappeared (auto_unmount). A mount
    /// still there after `autoUnmountSeconds` is cut with a fusectl abort (which releases threads of the dead
    /// daemon stuck in requests to their own mount) and reported in the outcome; throws only if even that fails.
    @discardableResult
    func killDaemon(autoUnmountSeconds: Double = 5) throws -> KillOutcome {
        guard let pid = daemonPID else { throw TestFailure("no daemon to kill") }
        guard kill(pid, SIGKILL) == 0 else { throw SysError(op: "kill -9", path: "pid \(pid)", code: errno) }
        var outcome = KillOutcome()
        if poll(seconds: autoUnmountSeconds, { processGone(pid) && !MountInfo.isMounted(mnt) }) == nil {
            outcome.stuck = true
            outcome.diagnosis = threadReport(pid)
            abortConnection()
            if poll(seconds: 5, { !MountInfo.isMounted(mnt) }) == nil {
                outcome.diagnosis += "; the fusectl abort did not remove the mount either (auto_unmount never ran): detached it"
                if umount2(mnt, Int32(MNT_DETACH)) != 0 || MountInfo.isMounted(mnt) {
                    throw TestFailure("\(mnt) is still mounted after kill -9 of the daemon, a fusectl abort and a lazy unmount: \(outcome.diagnosis)")
                }
            }
        }
        guard poll(seconds: 10, { processGone(pid) }) != nil else { throw TestFailure("daemon \(pid) survived SIGKILL for 10 s") }
        forgetDaemon()
        return outcome
    }

    /// State, wait channel and kernel stack of every thread of `pid` still present.
    func threadReport(_ pid: pid_t) -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        // Other processes naming the mount point (the fusermount3 auto_unmount helper).
        var helpers: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
            guard let cmd = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !cmd.isEmpty else { continue }
            let text = String(decoding: cmd.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if text.contains(mnt) && !text.contains(Paths.assetfs) { helpers.append("pid \(entry): \(text.prefix(160))") }
        }
        let helperText = helpers.isEmpty ? "no helper process names \(mnt)" : "helpers: " + helpers.joined(separator: ", ")
        if tasks.isEmpty { return "the daemon process \(pid) is gone; \(helperText)" }
        return helperText + "; " + tasks.sorted().map { t -> String in
            let base = "/proc/\(pid)/task/\(t)"
            let stat = (try? String(contentsOfFile: base + "/stat", encoding: .utf8)) ?? ""
            let state = stat.range(of: ") ", options: .backwards).map { String(stat[$0.upperBound...].prefix(1)) } ?? "?"
            let wchan = (try? String(contentsOfFile: base + "/wchan", encoding: .utf8)) ?? "?"
            let stack = ((try? String(contentsOfFile: base + "/stack", encoding: .utf8)) ?? "")
                .split(separator: "\n").prefix(4).map { $0.split(separator: " ").last.map(String.init) ?? "" }.joined(separator: " < ")
            return "thread \(t) state \(state) wchan \(wchan)" + (stack.isEmpty ? "" : " stack \(stack)")
        }.joined(separator: "; ")
    }

    // MARK: Workspaces and versions

    func workspacePath(_ asset: String, _ name: String) -> String { "\(mnt)/\(asset)/workspaces/\(name)" }

    /// `assetfs workspace create ASSET NAME --from vN`; returns the workspace's path in the mount.
    @discardableResult
    func createWorkspace(_ name: String, asset: String = "data", from version: Int? = nil) throws -> String {
        var args = ["workspace", "create", asset, name]
        if let version { args += ["--from", "v\(version)"] }
        try cliOK(args)
        return workspacePath(asset, name)
    }

    /// The usual start of a workspace test: the small base tree in `src` and in the local model, imported as
    /// the first version, mounted, and a workspace "ws" on it. Returns the version and the workspace's path.
    func mountedWorkspace(bigSize: Int = 3_000_000) throws -> (version: Int, ws: String) {
        try buildSmallBase(src, bigSize: bigSize)
        try buildSmallBase(local, bigSize: bigSize)
        let version = try importVersion()
        try mount()
        return (version, try createWorkspace("ws", from: version))
    }

    /// `assetfs commit ASSET/NAME -m MSG EXTRA...` (not checked).
    func commit(_ spec: String, _ extra: [String] = [], timeout: Double = 120) -> ProcessResult {
        cli(["commit", spec, "-m", "test commit"] + extra, timeout: timeout)
    }

    /// Commits and returns the new version number, throwing with the details on failure.
    func commitOK(_ spec: String, _ extra: [String] = [], asset: String = "data") throws -> Int {
        let r = commit(spec, extra)
        guard r.succeeded else { throw TestFailure("commit failed: \(r)") }
        return try Self.parseVersion(r, asset: asset)
    }

    /// `assetfs versions ASSET --json`.
    func versions(_ asset: String = "data") throws -> [[String: Any]] {
        let r = try cliOK(["versions", asset, "--json"])
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw TestFailure("versions --json printed no JSON array: \(r)")
        }
        return list
    }

    func version(_ number: Int, _ asset: String = "data") throws -> [String: Any] {
        guard let v = try versions(asset).first(where: { ($0["version"] as? Int) == number }) else {
            throw TestFailure("\(asset) has no v\(number) in `assetfs versions --json`")
        }
        return v
    }

    /// Workspace names of an asset (`assetfs workspace list --json`).
    func workspaceNames(_ asset: String = "data") throws -> [String] {
        let r = try cliOK(["workspace", "list", "--json"])
        guard let list = try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw TestFailure("workspace list --json printed no JSON array: \(r)")
        }
        return list.filter { ($0["asset"] as? String) == asset }.compactMap { $0["name"] as? String }.sorted()
    }

    /// `assetfs export REF DEST` into a fresh directory under scratch; returns DEST.
    func export(_ ref: String) throws -> String {
        let dest = scratchPath("export")
        try cliOK(["export", ref, dest], timeout: 120)
        return dest
    }

    /// `assetfs verify`; throws with its output unless it passes.
    func verifyOK() throws {
        let r = cli(["verify"], timeout: 120)
        guard r.succeeded else { throw TestFailure("assetfs verify failed: \(r)") }
    }
}
