@testable import AssetVFS
import AssetCatalog
import AssetStore
import Foundation
import Logging
import Testing

/// Processes that exist only in the test: pid -> facts, and which groups are alive.
private final class FakeProcesses: ProcessInspector, @unchecked Sendable {
    private let lock = Lock()
    private var facts: [Int32: ProcessFacts] = [:]  // Protected by `lock`.
    private var commands: [Int32: [String]] = [:]
    private var dead = Set<Int32>()
    private(set) var procReads = 0

    func add(_ pid: Int32, group: Int32, session: Int32 = 1, cgroup: String? = "/user.slice/session-1.scope", command: [String] = []) {
        lock.withLock {
            facts[pid] = ProcessFacts(processGroup: group, session: session, cgroup: cgroup)
            if !command.isEmpty { commands[pid] = command }
        }
    }

    func kill(group: Int32) { lock.withLock { _ = dead.insert(group) } }

    func facts(of pid: Int32) -> ProcessFacts? { lock.withLock { procReads += 1; return facts[pid] } }
    func command(of pid: Int32) -> [String]? { lock.withLock { commands[pid] } }
    func startNs(of pid: Int32) -> Int64? { 1_000 }
    func groupAlive(_ processGroup: Int32) -> Bool { lock.withLock { !dead.contains(processGroup) } }
    func cgroupAlive(_ path: String) -> Bool { true }
}

/// What the recorder wrote, per workspace: job id -> record.
private final class Sink: @unchecked Sendable {
    private let lock = Lock()
    private var rows: [Int64: [String: LineageRecord]] = [:]  // Protected by `lock`.

    func save(_ workspace: Int64, _ new: [(jobID: String, record: String)]) throws {
        try lock.withLock {
            for row in new { rows[workspace, default: [:]][row.jobID] = try LineageRecord.decode(row.record) }
        }
    }

    func merged(_ workspace: Int64) -> LineageRecord {
        lock.withLock {
            var out = LineageRecord()
            for record in (rows[workspace] ?? [:]).values { out.merge(record) }
            return out
        }
    }
}

private func recorder(_ procs: FakeProcesses, _ sink: Sink, limits: LineageRecorder.Limits = .init()) -> LineageRecorder {
    LineageRecorder(inspector: procs, limits: limits, host: "testhost", store: "/store", logger: Logger(label: "test")) {
        try sink.save($0, $1)
    }
}

private func caller(_ pid: Int32) -> Caller { Caller(pid: pid, uid: 0, gid: 0) }

/// A version file; its inode is made from its name, as the mount's deterministic numbers would be.
private func source(_ asset: String, _ version: Int, _ path: String) -> LineageSource {
    var h: UInt64 = 1469598103934665603
    for b in "\(asset)@\(version)/\(path)".utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
    return LineageSource(inode: h, version: VersionKey(asset: asset, version: version), path: Array(path.utf8))
}

@Suite("LineageRecorder: jobs, writers and bounds")
struct LineageRecorderTests {
    @Test("a process group's reads become inputs of the workspace it writes; a bystander's do not")
    func writersOnly() throws {
        let procs = FakeProcesses(), sink = Sink()
        let r = recorder(procs, sink)
        procs.add(100, group: 100, command: ["python3", "train.py"])
        for worker in Int32(101)...104 { procs.add(worker, group: 100) }  // multiprocessing workers: same group
        procs.add(200, group: 200, command: ["cat"])  // bystander
        for (i, pid) in [Int32(101), 102, 103, 104].enumerated() {
            let tap = r.opened(try #require(r.job(caller(pid))), source("data", 2, "part-\(i)"))
            r.served(tap, bytes: 1000 + i)
        }
        r.served(r.opened(try #require(r.job(caller(200))), source("data", 3, "x")), bytes: 5)
        r.wrote(caller(100), workspace: 7)
        let record = sink.merged(7)
        #expect(record.inputs.map(\.ref) == ["data@v2"])
        #expect(record.inputs.first?.files.map(\.path) == ["part-0", "part-1", "part-2", "part-3"])
        #expect(record.inputs.first?.bytes == 4006)
        #expect(record.jobs.map(\.command) == [["python3", "train.py"]])
        #expect(record.jobs.first?.attribution == "process-group")
        #expect(record.jobs.first?.host == "testhost")
        #expect(record.inputs.first?.store == "/store")

        // Read after the write: written at the next flush.
        let tap = r.opened(try #require(r.job(caller(101))), source("labels", 5, "labels.csv"))
        r.served(tap, bytes: 10)
        #expect(sink.merged(7).inputs.count == 1)
        r.flush()
        #expect(sink.merged(7).inputs.map(\.ref) == ["data@v2", "labels@v5"])
        #expect(sink.merged(8).inputs.isEmpty, "nothing was written into workspace 8")
    }

    @Test("a container's processes are one job named by its cgroup; a run's session beats the process group")
    func attribution() throws {
        let procs = FakeProcesses(), sink = Sink()
        let r = recorder(procs, sink)
        let id = String(repeating: "ab", count: 32)
        let cgroup = "/system.slice/docker-\(id).scope"
        procs.add(300, group: 300, cgroup: cgroup)
        procs.add(301, group: 301, cgroup: cgroup)
        #expect(r.job(caller(300)) === r.job(caller(301)))
        #expect(r.job(caller(300))?.info.container == id)
        #expect(r.job(caller(300))?.info.attribution == "cgroup")

        procs.add(400, group: 400, session: 400)
        procs.add(401, group: 401, session: 400)  // a shell pipeline's other group, same session
        #expect(r.job(caller(400)) !== r.job(caller(401)), "without a run, process groups are separate jobs")
        r.beginRun(session: 400, id: "RUN-1", name: "r1", command: ["sh", "job.sh"], startedNs: 5)
        let a = try #require(r.job(caller(400))), b = try #require(r.job(caller(401)))
        #expect(a === b)
        r.served(r.opened(a, source("data", 1, "f")), bytes: 3)
        r.served(r.opened(b, source("data", 1, "g")), bytes: 4)
        let record = try #require(r.endRun(session: 400))
        #expect(record.jobs.map(\.id) == ["RUN-1"])
        #expect(record.jobs.first?.name == "r1")
        #expect(record.inputs.first?.files.map(\.path) == ["f", "g"])
        #expect(record.inputs.first?.bytes == 7)
        #expect(r.endRun(session: 400) == nil, "a run ends once")
    }

    @Test("thread ids are looked up in /proc once per second, not per request")
    func threadCache() throws {
        let procs = FakeProcesses(), sink = Sink()
        let r = recorder(procs, sink)
        procs.add(500, group: 500)
        for _ in 0..<1000 { _ = r.job(caller(500)) }
        #expect(procs.procReads == 1)
    }

    @Test("5,000 short-lived jobs opening 200,000 files stay within the bounds, and a writer's inputs are never lost")
    func bounds() throws {
        let procs = FakeProcesses(), sink = Sink()
        var limits = LineageRecorder.Limits()
        limits.jobs = 256
        limits.filesPerJob = 1000
        limits.files = 8000
        let r = recorder(procs, sink, limits: limits)
        // A long-lived writer that reads 3,000 files: 1,000 listed, the rest counted.
        procs.add(9, group: 9, command: ["train"])
        r.wrote(caller(9), workspace: 1)
        let writer = try #require(r.job(caller(9)))
        for f in 0..<3000 { r.served(r.opened(writer, source("data", 2, "f\(f)")), bytes: 1) }
        // 5,000 short-lived readers, 40 files each, each exiting after its reads.
        for p in Int32(1000)..<6000 {
            procs.add(p, group: p)
            let job = try #require(r.job(caller(p)))
            for f in 0..<40 { _ = r.opened(job, source("data", 3, "g\(Int(p) * 40 + f)")) }
            procs.kill(group: p)
        }
        let tracked = r.tracked
        #expect(tracked.jobs <= limits.jobs, "\(tracked)")
        #expect(tracked.files <= limits.files, "\(tracked)")
        #expect(tracked.threads <= limits.pids)
        r.flush()
        let record = sink.merged(1)
        let input = try #require(record.inputs.first)
        #expect(record.inputs.map(\.ref) == ["data@v2"])
        #expect(input.files.count == 1000)
        #expect(input.filesOmitted == 2000)
        #expect(input.fileCount == 3000)
        #expect(input.bytes == 3000)
        #expect(input.opens == 3000)

        // Live jobs that hold the whole file bound keep their versions as counts; a job that writes later
        // still has every asset@version it read.
        let crowd = recorder(procs, sink, limits: limits)
        for p in Int32(7000)..<7009 {
            procs.add(p, group: p)
            let job = try #require(crowd.job(caller(p)))
            for f in 0..<1000 { crowd.served(crowd.opened(job, source("data", 4, "h\(p)-\(f)")), bytes: 3) }
        }
        #expect(crowd.tracked.files <= limits.files, "\(crowd.tracked)")
        #expect(crowd.tracked.jobs == 9, "live jobs are summarised, not dropped")
        crowd.wrote(caller(7000), workspace: 2)
        let kept = try #require(sink.merged(2).inputs.first)
        #expect(kept.ref == "data@v4" && kept.fileCount == 1000 && kept.bytes == 3000 && kept.opens == 1000, "\(kept)")
    }

    @Test("merging records sums per file and keeps the file bound")
    func merge() {
        var a = LineageRecord(inputs: [LineageInput(asset: "d", version: 1, kind: .observed,
                                                    files: [LineageFile(path: "x", bytes: 5, opens: 1)], bytes: 5, opens: 1, jobs: ["J1"])])
        let b = LineageRecord(inputs: [LineageInput(asset: "d", version: 1, kind: .observed,
                                                    files: [LineageFile(path: "x", bytes: 2, opens: 1), LineageFile(path: "y", bytes: 3, opens: 1)],
                                                    bytes: 5, opens: 2, jobs: ["J2"]),
                                       LineageInput(asset: "d", version: 1, kind: .declared)])
        a.merge(b, fileLimit: 1)
        #expect(a.inputs.count == 2, "declared and observed inputs stay apart")
        let observed = a.inputs.first { $0.kind == .observed }
        #expect(observed?.files == [LineageFile(path: "x", bytes: 7, opens: 2)])
        #expect(observed?.filesOmitted == 1)
        #expect(observed?.bytes == 10)
        #expect(observed?.jobs == ["J1", "J2"])
        let cut = LineageJob.truncate([String(repeating: "a", count: 300)] + Array(repeating: "b", count: 10))
        #expect(cut.truncated && cut.command[0].utf8.count == LineageLimits.argumentBytes)
        let long = LineageJob.truncate(Array(repeating: String(repeating: "c", count: 200), count: 100))
        #expect(long.truncated && long.command.joined().utf8.count <= LineageLimits.commandBytes)
    }
}
