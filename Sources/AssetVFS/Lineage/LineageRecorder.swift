import AssetCatalog
import AssetStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Records, per job, which version files it opened and the bytes the daemon served it, and which workspaces it
/// wrote into; writes a writer job's observations into that workspace's metadata, where commit finds them
/// (Documentation/Lineage.md).
///
/// One lock guards everything (`lock`); callers hold no lock of the VFS while they call in, and persisting
/// happens outside it.
public final class LineageRecorder: @unchecked Sendable {
    public struct Limits: Sendable {
        public var filesPerJob = LineageLimits.filesPerInput
        /// Files listed across all jobs; past it (after dropping what can go), new files are counted only.
        public var files = 100_000
        public var jobs = 2048
        public var pids = 8192
        public var pidTTLNs: Int64 = 1_000_000_000
        public init() {}
    }

    /// Writes the rows (job id, JSON record) of jobs that wrote into workspace `id` to its metadata.
    public typealias Persist = @Sendable (_ workspace: Int64, _ rows: [(jobID: String, record: String)]) throws -> Void

    private let inspector: ProcessInspector
    private let limits: Limits
    private let host: String
    /// The store this mount serves (`Repository.root`), named on every observed input.
    private let store: String
    private let persist: Persist
    private let logger: Logger
    private let lock = Lock()
    // Protected by `lock`.
    private var threads: [Int32: (job: Job, seenNs: Int64)] = [:]
    private var jobs: [JobKey: Job] = [:]
    private var runs: [Int32: RunRegistration] = [:]
    private var dirtyJobs: [ObjectIdentifier: Job] = [:]
    private var droppedJobs = 0
    /// Files listed, over every job in `jobs`.
    private var listedFiles = 0
    /// When the next trim runs (see `trimJobs`).
    private var jobTrimAt: Int
    private var fileTrimAt: Int
    private var failureLogged = false

    public init(inspector: ProcessInspector = ProcfsInspector(), limits: Limits = Limits(), host: String, store: String,
                logger: Logger, persist: @escaping Persist) {
        self.inspector = inspector
        self.store = store
        self.jobTrimAt = limits.jobs
        self.fileTrimAt = limits.files
        self.limits = limits
        self.host = host
        self.logger = logger
        self.persist = persist
    }

    // MARK: Observing

    /// The job of the calling thread, or nil when the process is already gone.
    func job(_ caller: Caller) -> Job? {
        let now = Clock.nowNanoseconds()
        if let hit = lock.withLock({ () -> Job? in
            guard let cached = threads[caller.pid], now - cached.seenNs < limits.pidTTLNs else { return nil }
            cached.job.lastNs = now
            return cached.job
        }) { return hit }
        guard let facts = inspector.facts(of: caller.pid) else {
            LineageMetrics.unattributed.increment()
            return nil
        }
        // /proc reads happen outside the lock; the table is settled inside it.
        let run = lock.withLock { runs[facts.session] }
        let key: JobKey
        var leader = facts.processGroup
        if run != nil {
            key = .run(facts.session)
            leader = facts.session
        } else if let cgroup = facts.cgroup, facts.container != nil {
            key = .cgroup(cgroup)
            leader = caller.pid
        } else {
            key = .processGroup(facts.processGroup, leaderStartNs: inspector.startNs(of: facts.processGroup) ?? 0)
        }
        let existing = lock.withLock { jobs[key] }
        let job: Job
        if let existing {
            job = existing
        } else {
            let command = run?.command ?? inspector.command(of: leader) ?? inspector.command(of: caller.pid) ?? []
            let (cut, truncated) = LineageJob.truncate(command)
            let started = run?.startedNs ?? (key.isCgroup ? nil : inspector.startNs(of: leader)) ?? now
            let info = LineageJob(id: run?.id ?? UUID().uuidString, attribution: key.attribution, name: run?.name,
                                  pid: key.isCgroup ? caller.pid : leader, command: cut, commandTruncated: truncated,
                                  uid: caller.uid, user: "", host: host,
                                  started: LineageJob.iso(started), ended: LineageJob.iso(now), cgroup: facts.cgroup,
                                  container: facts.container)
            job = Job(key: key, info: info, nowNs: now)
        }
        return lock.withLock {
            let settled = jobs[key] ?? job  // Another thread may have created it meanwhile.
            if jobs[key] == nil {
                jobs[key] = settled
                LineageMetrics.jobsCreated.increment()
                if jobs.count > jobTrimAt { trimJobs() }
            }
            settled.lastNs = now
            if threads.count >= limits.pids { trimThreads(now) }
            threads[caller.pid] = (settled, now)
            return settled
        }
    }

    /// Records an open of a version file; the returned tap counts the bytes served to it.
    func opened(_ job: Job, _ source: LineageSource) -> LineageTap {
        lock.withLock {
            let tally = tallyLocked(job, source, opening: true)
            markChanged(job)
            return LineageTap(job: job, tally: tally)
        }
    }

    /// The file's tally in the job (created, or its version's count past the bounds). Under `lock`. Files are
    /// found by inode (a version file's inode number names its asset, version and path for the mount's life),
    /// so a repeated open costs one integer lookup.
    private func tallyLocked(_ job: Job, _ source: LineageSource, opening: Bool) -> FileTally {
        if let existing = job.files[source.inode] {
            if opening { existing.tally.opens += 1 }
            return existing.tally
        }
        if listedFiles >= fileTrimAt { trimJobs() }
        let tally: FileTally
        if job.files.count < limits.filesPerJob && listedFiles < limits.files {
            tally = FileTally()
            job.files[source.inode] = (source, tally)
            listedFiles += 1
        } else {
            let summary = job.omittedTally(source.version)
            summary.files += 1
            tally = summary.tally
        }
        tally.opens += 1
        return tally
    }

    func served(_ tap: LineageTap, bytes: Int) {
        guard bytes > 0 else { return }
        let now = Clock.nowNanoseconds()
        lock.withLock { servedLocked(tap.job, tap.tally, bytes: bytes, now: now) }
    }

    /// A read that arrived without an open (an `-o ro` mount): counted as an open of the file the first time.
    func servedWithoutOpen(_ caller: Caller, _ source: LineageSource, bytes: Int) {
        guard let job = job(caller) else { return }
        let now = Clock.nowNanoseconds()
        lock.withLock { servedLocked(job, tallyLocked(job, source, opening: false), bytes: bytes, now: now) }
    }

    /// Under `lock`.
    private func servedLocked(_ job: Job, _ tally: FileTally, bytes: Int, now: Int64) {
        tally.bytes += UInt64(max(0, bytes))
        job.lastNs = now
        markChanged(job)
    }

    /// The caller changed something in workspace `id`. The first time a job does, everything it has read so far
    /// is written to the workspace before the change is made.
    public func wrote(_ caller: Caller, workspace id: Int64) {
        guard let job = job(caller) else { return }
        let first = lock.withLock { job.writes.insert(id).inserted }
        if first { flush(only: job) }
    }

    private func markChanged(_ job: Job) {
        job.changed = true
        if !job.writes.isEmpty { dirtyJobs[ObjectIdentifier(job)] = job }
    }

    // MARK: Persisting

    /// Writes the observations of every writer job that changed since its last write (called every second,
    /// when a file opened for writing is closed, and when commit asks).
    public func flush() {
        let pending = lock.withLock { () -> [Job] in
            let out = Array(dirtyJobs.values)
            dirtyJobs.removeAll()
            return out
        }
        for job in pending { flush(only: job) }
    }

    private func flush(only job: Job) {
        let (rows, targets) = lock.withLock { () -> ((String, String), Set<Int64>) in
            job.changed = false
            dirtyJobs[ObjectIdentifier(job)] = nil
            return ((job.info.id, job.record(store: store).encoded()), job.writes)
        }
        for workspace in targets.sorted() {
            do {
                try persist(workspace, [rows])
            } catch {
                // The workspace was committed or discarded meanwhile: it needs nothing more from this job.
                let firstFailure = lock.withLock { () -> Bool in
                    _ = job.writes.remove(workspace)
                    defer { failureLogged = true }
                    return !failureLogged
                }
                LineageMetrics.persistFailures.increment()
                if firstFailure { logger.warning("lineage of job \(job.info.id) not written to workspace \(workspace): \(error)") }
            }
        }
    }

    // MARK: Runs (`assetfs run`)

    /// From now on, every process of `session` is the run `id` (including processes already seen).
    public func beginRun(session: Int32, id: String, name: String?, command: [String], startedNs: Int64) {
        lock.withLock {
            runs[session] = RunRegistration(id: id, name: name, command: command, startedNs: startedNs)
            threads.removeAll()  // Threads of the session seen before must be attributed again.
        }
    }

    /// Ends the run of `session`: what its processes read, and forgets it (unless it wrote into a workspace,
    /// whose record keeps it).
    public func endRun(session: Int32) -> LineageRecord? {
        let job = lock.withLock { () -> Job? in
            guard runs.removeValue(forKey: session) != nil else { return nil }
            threads.removeAll()
            return jobs[.run(session)]
        }
        guard let job else { return nil }
        flush(only: job)
        return lock.withLock {
            var gone = Set<ObjectIdentifier>()
            drop(.run(session), into: &gone)  // Written where it wrote, just above; its threads were let go at the start.
            return job.record(store: store)
        }
    }

    // MARK: Bounds

    /// Brings the tables back under their bounds (Documentation/Lineage.md), in this order: jobs whose processes
    /// are gone are dropped (a writer's record is already in its workspace); live jobs that never wrote, least
    /// recently active first, keep per-version counts instead of file lists; and past the hard cap on jobs
    /// (8x the bound) the least recently active jobs that never wrote are dropped. The next trim waits until a
    /// quarter of the bound has been added again, so a table that cannot shrink costs no scan per request.
    /// Under `lock`.
    private func trimJobs() {
        let jobTarget = limits.jobs * 3 / 4, fileTarget = limits.files * 3 / 4
        var gone = Set<ObjectIdentifier>()
        for (key, job) in jobs where (jobs.count > jobTarget || listedFiles > fileTarget) && !job.isRun && !job.changedWriter {
            let alive: Bool
            switch key {
            case .processGroup(let pgid, _): alive = inspector.groupAlive(pgid)
            case .cgroup(let path): alive = inspector.cgroupAlive(path)
            case .run: alive = true
            }
            if !alive { drop(key, into: &gone) }
        }
        let idle = jobs.values.filter { !$0.isRun && $0.writes.isEmpty }.sorted { $0.lastNs < $1.lastNs }
        for job in idle where listedFiles > fileTarget && job.fileCount > 0 {
            listedFiles -= job.summarise()
            LineageMetrics.jobsSummarised.increment()
        }
        if jobs.count > limits.jobs * 8 {
            for job in idle where jobs.count > jobTarget * 8 {
                drop(job.key, into: &gone)
                droppedJobs += 1
                LineageMetrics.jobsDropped.increment()
            }
        }
        jobTrimAt = max(limits.jobs, jobs.count + limits.jobs / 4)
        fileTrimAt = max(limits.files, listedFiles + limits.files / 4)
        threads = threads.filter { !gone.contains(ObjectIdentifier($0.value.job)) }
    }

    private func drop(_ key: JobKey, into gone: inout Set<ObjectIdentifier>) {
        guard let job = jobs.removeValue(forKey: key) else { return }
        listedFiles -= job.fileCount
        dirtyJobs[ObjectIdentifier(job)] = nil
        gone.insert(ObjectIdentifier(job))
    }

    private func trimThreads(_ now: Int64) {
        threads = threads.filter { now - $0.value.seenNs < limits.pidTTLNs }
        if threads.count >= limits.pids { threads.removeAll() }
    }

    /// Jobs and files held (for tests and `stats`).
    public var tracked: (jobs: Int, files: Int, threads: Int, dropped: Int) {
        lock.withLock { (jobs.count, jobs.values.reduce(0) { $0 + $1.fileCount }, threads.count, droppedJobs) }
    }

    static func userName(_ uid: UInt32) -> String {
        guard let pw = getpwuid(uid) else { return "\(uid)" }
        return String(cString: pw.pointee.pw_name)
    }
}

struct RunRegistration {
    let id: String
    let name: String?
    let command: [String]
    let startedNs: Int64
}

enum JobKey: Hashable {
    /// The process group, told apart from a later group with the same id by its leader's start time.
    case processGroup(Int32, leaderStartNs: Int64)
    case cgroup(String)
    case run(Int32)

    var attribution: String {
        switch self {
        case .processGroup: return "process-group"
        case .cgroup: return "cgroup"
        case .run: return "run"
        }
    }

    var isCgroup: Bool { if case .cgroup = self { return true } else { return false } }
}

/// A version file as lineage names it.
struct LineageSource: Sendable {
    /// The mount's inode number of the file: the same for the same asset, version and path.
    let inode: UInt64
    let version: VersionKey
    /// Below the version's root (decoded as UTF-8 only when a record is written).
    let path: [UInt8]
}

/// A job's state; every field is protected by the recorder's lock.
final class Job {
    let key: JobKey
    var info: LineageJob
    var lastNs: Int64
    /// Files listed, by inode.
    var files: [UInt64: (source: LineageSource, tally: FileTally)] = [:]
    /// Per version: what was read past the bounds (counts only).
    var omitted: [VersionKey: OmittedTally] = [:]
    /// Workspaces it wrote into.
    var writes = Set<Int64>()
    /// Something was read since the last write to its workspaces.
    var changed = false

    init(key: JobKey, info: LineageJob, nowNs: Int64) {
        self.key = key
        self.info = info
        self.lastNs = nowNs
    }

    var fileCount: Int { files.count }

    /// The counts of `version`'s files read past the bounds (made on first use).
    func omittedTally(_ version: VersionKey) -> OmittedTally {
        if let existing = omitted[version] { return existing }
        let made = OmittedTally()
        omitted[version] = made
        return made
    }
    var isRun: Bool { if case .run = key { return true } else { return false } }

    /// Folds the file lists into per-version counts; returns how many listed files that freed.
    func summarise() -> Int {
        let freed = files.count
        for (source, tally) in files.values {
            let summary = omittedTally(source.version)
            summary.files += 1
            summary.tally.opens += tally.opens
            summary.tally.bytes += tally.bytes
        }
        files.removeAll()
        return freed
    }
    var changedWriter: Bool { changed && !writes.isEmpty }

    func record(store: String) -> LineageRecord {
        var job = info
        job.ended = LineageJob.iso(lastNs)
        // Named here, not when the job is first seen: the password database may be slow to load.
        if job.user.isEmpty { info.user = LineageRecorder.userName(job.uid); job.user = info.user }
        var listed: [VersionKey: [LineageFile]] = [:]
        for (source, tally) in files.values {
            listed[source.version, default: []]
                .append(LineageFile(path: String(decoding: source.path, as: UTF8.self), bytes: tally.bytes, opens: tally.opens))
        }
        let observed = Set(listed.keys).union(omitted.keys).map { key -> LineageInput in
            let files = (listed[key] ?? []).sorted { $0.path < $1.path }
            let rest = omitted[key]
            return LineageInput(asset: key.asset, version: key.version, kind: .observed, store: store, files: files,
                                filesOmitted: rest?.files ?? 0,
                                bytes: files.reduce(rest?.tally.bytes ?? 0) { $0 + $1.bytes },
                                opens: files.reduce(rest?.tally.opens ?? 0) { $0 + $1.opens }, jobs: [info.id])
        }.sorted { ($0.asset, $0.version) < ($1.asset, $1.version) }
        return LineageRecord(inputs: observed, jobs: [job])
    }
}

/// Files of one version read past the bounds: how many, and their opens and bytes.
final class OmittedTally {
    var files = 0
    let tally = FileTally()
}

final class FileTally {
    var opens: UInt64 = 0
    var bytes: UInt64 = 0
}

/// What a version file's handle counts its served bytes into.
struct LineageTap {
    let job: Job
    let tally: FileTally
}
