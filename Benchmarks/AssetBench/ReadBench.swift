#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation

/// `AssetBench read`: the read path of version 3 of the generated data set through `assetfs mount`,
/// `borg mount` and `restic mount`, against `assetfs export` on local disk (the native baseline).
///
/// Per target, two fresh mounts (so both tree walks are the first thing after a mount):
///   1. drop caches, `ls -lR` of the version's tree; open the large files, drop caches, 2000 random 4 KiB preads
///      (cold), then the same preads again three times (warm, best kept);
///   2. drop caches, `find` of the tree; drop caches, every file read with 1 MiB reads (cold), then three more
///      times (warm, best kept), and three warm passes over the large files alone; the daemon's VmHWM after that;
///   3. `coldRounds - 1` more fresh mounts, each: find, drop caches, one cold pass. The cold figure is the best
///      of all cold passes, for every column alike: single cold passes of the same target varied by 1.5x on this
///      shared machine (native 664-985 MB/s, borg 185-267 MB/s in successive runs).
/// For assetfs also the mount start (spawn of `assetfs mount --background` to its exit) with the 6 versions of
/// the data set, then after adding `--tiny-versions` versions of a separate asset: once with caches dropped,
/// five times warm. Runs as root; every mount is taken down at the end, on error and on SIGINT/SIGTERM/SIGHUP.
enum ReadBench {
    static let version = 3
    static let largeFileBytes = 1 << 20
    static let warmPasses = 3
    static let coldRounds = 3

    static func main(_ options: Options) -> Int32 {
        var sources: [any DispatchSourceSignal] = []
        for s in [SIGINT, SIGTERM, SIGHUP] {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler {
                progress("signal \(s): stopping; every mount is taken down before exiting")
                MountGuard.shared.interrupt(s)
                // The main thread normally unwinds within moments; if it does not, clean up from here.
                DispatchQueue.global().asyncAfter(deadline: .now() + 60) {
                    progress("the run did not stop within 60 s of the signal: cleaning up and exiting")
                    MountGuard.shared.releaseAll()
                    exit(128 + s)
                }
            }
            source.resume()
            sources.append(source)
        }
        defer { for source in sources { source.cancel() } }
        Watchdog.shared.start()
        do {
            let report = try run(options)
            MountGuard.shared.releaseAll()
            print(report.render())
            return 0
        } catch {
            progress("AssetBench read failed: \(error)")
            MountGuard.shared.releaseAll()
            let signal = MountGuard.shared.interruption
            return signal != 0 ? 128 + signal : 1
        }
    }

    static func run(_ options: Options) throws -> ReadReport {
        guard geteuid() == 0 else { throw BenchError("the read benchmark drops the page cache: run it as root") }
        let work = FileIO.absolute(options.work)
        guard work != "/" else { throw BenchError("refusing to use / as the work directory") }
        guard let assetfs = FileIO.executable(FileIO.absolute(options.assetfs)) else {
            throw BenchError("assetfs binary \(options.assetfs) not found (swift build -c release --product assetfs)")
        }
        guard let borg = FileIO.executable("borg") else { throw BenchError("borg not found in PATH") }
        guard let restic = FileIO.executable("restic") else { throw BenchError("restic not found in PATH") }
        guard FileIO.executable("fusermount3") != nil else { throw BenchError("fusermount3 not found (apt install fuse3)") }

        // Mounts left by an interrupted run would make the removals below walk into them.
        for entry in MountTable.entries() where entry.mountpoint.hasPrefix(work + "/") {
            progress("unmounting \(entry.mountpoint), left over from an earlier run")
            MountGuard.takeDown(entry.mountpoint, pid: 0)
        }
        MountGuard.shared.setSweepPrefix(work + "/mnt/")
        for sub in ["src", "store", "store-old", "borg", "restic", "cache", "logs", "export", "tiny", "mnt"] {
            try FileIO.removeIfPresent(work + "/" + sub)
        }
        for sub in ["logs", "cache", "tiny", "export", "mnt/assetfs", "mnt/assetfs-ro", "mnt/assetfs-nometrics", "mnt/borg", "mnt/restic",
                    "mnt/assetfs-old", "mnt/assetfs-old-ro", "mnt/assetfs-nolineage", "mnt/assetfs-ro-nolineage", "mnt/assetfs-ro-opens"] { try FileIO.makeDirectory(work + "/" + sub) }
        let runner = CommandRunner(logDirectory: work + "/logs", environment: peerEnvironment(work: work))
        let store = work + "/store", src = work + "/src"

        let tools = [
            toolVersion(assetfs, ["--version"], runner, label: "assetfs-version").map { "assetfs \($0)" } ?? "assetfs",
            toolVersion(borg, ["--version"], runner, label: "borg-version") ?? "borg",
            toolVersion(restic, ["version"], runner, label: "restic-version")?.split(separator: " ").prefix(2)
                .joined(separator: " ") ?? "restic",
        ]
        let loadBefore = ReadMeasure.loadAverage()
        let binaryDescription = describe(binary: assetfs)

        // 1. The data set, six versions into each repository.
        let layout = DataSetLayout(scale: options.scale)
        let generator = DataSetGenerator(root: src, layout: layout)
        var importers: [any Importer] = [
            AssetfsImporter(binary: assetfs, repository: store),
            BorgImporter(binary: borg, repository: work + "/borg"),
            ResticImporter(binary: restic, repository: work + "/restic"),
        ]
        // The older binary, into a store of its own (it may not read the new binary's store format).
        let baseline = try options.baseline.map { path -> String in
            guard let binary = FileIO.executable(FileIO.absolute(path)) else { throw BenchError("baseline binary \(path) not found") }
            return binary
        }
        if let baseline { importers.append(AssetfsImporter(binary: baseline, repository: work + "/store-old", name: "assetfs-old")) }
        for v in 1...DataSetLayout.versions {
            try MountGuard.shared.checkInterrupted()
            var change = "created"
            if v == 1 { try generator.createFirstVersion() } else { change = try generator.advance() }
            progress("v\(v): generated (\(change))")
            for importer in importers {
                if v == 1 { try importer.create(runner) }
                let seconds = try importer.importVersion(v, source: src, runner)
                progress("v\(v): \(importer.name) import \(fixed(seconds, 2)) s")
            }
        }

        // 2a. Native baseline: the version exported to local disk.
        let exportRoot = work + "/export/v\(version)"
        let (_, exportSeconds) = try timed {
            try runner.run(assetfs, ["export", "bench@v\(version)", exportRoot, "--store", store], label: "assetfs-export")
        }
        let files = try FileIO.regularFiles(under: exportRoot).map {
            TreeFile(relative: String($0.dropFirst(exportRoot.count + 1)), size: try FileIO.signature($0).size)
        }
        let large = files.filter { $0.size >= largeFileBytes }
        let bytes = files.reduce(0) { $0 + $1.size }
        let plan = ReadMeasure.plan(files: large, count: options.randomReads, seed: 0x7261_6E64_7265_6164)
        progress("v\(version): \(files.count) files, \(megabytes(bytes)) MB; exported in \(fixed(exportSeconds, 2)) s; "
            + "\(large.count) files >= 1 MiB (\(megabytes(large.reduce(0) { $0 + $1.size })) MB) take the random reads")

        // 2b-d. The mounts.
        let mnt = work + "/mnt"
        let snapshots = try runner.run(restic, ["snapshots", "--repo", work + "/restic", "--tag", "v\(version)", "--json"],
                                       label: "restic-snapshots")
        guard let list = try JSONSerialization.jsonObject(with: Data(snapshots.output.utf8)) as? [[String: Any]],
              list.count == 1, let shortID = list[0]["short_id"] as? String else {
            throw BenchError("expected exactly one restic snapshot tagged v\(version): \(snapshots.output.prefix(300))")
        }
        let assetfsMount = AssetfsMountTarget(binary: assetfs, store: store, mountpoint: mnt + "/assetfs",
                                              cacheSize: options.cacheSize, runner: runner)
        // The same store mounted versions-only: the kernel opens files without asking the daemon.
        let assetfsReadOnly = AssetfsMountTarget(name: "assetfs-ro", binary: assetfs, store: store, mountpoint: mnt + "/assetfs-ro",
                                                 cacheSize: options.cacheSize, extra: ["-o", "ro"], runner: runner)
        // The default mount with metrics not counted at all: what counting them costs.
        let assetfsNoMetrics = AssetfsMountTarget(name: "assetfs-nometrics", binary: assetfs, store: store, mountpoint: mnt + "/assetfs-nometrics",
                                                  cacheSize: options.cacheSize, extra: ["--metrics", "off"], runner: runner)
        // Lineage's cost (issue 17): the same mounts recording nothing, and -o ro with every open visible.
        let lineageTargets: [any ReadTarget] = [
            AssetfsMountTarget(name: "assetfs-nolineage", binary: assetfs, store: store, mountpoint: mnt + "/assetfs-nolineage",
                               cacheSize: options.cacheSize, extra: ["--no-lineage"], runner: runner),
            AssetfsMountTarget(name: "assetfs-ro-nolineage", binary: assetfs, store: store, mountpoint: mnt + "/assetfs-ro-nolineage",
                               cacheSize: options.cacheSize, extra: ["-o", "ro", "--no-lineage"], runner: runner),
            AssetfsMountTarget(name: "assetfs-ro-opens", binary: assetfs, store: store, mountpoint: mnt + "/assetfs-ro-opens",
                               cacheSize: options.cacheSize, extra: ["-o", "ro", "--lineage-opens"], runner: runner),
        ]
        var oldTargets: [any ReadTarget] = []
        if let baseline {
            oldTargets.append(AssetfsMountTarget(name: "assetfs-old", binary: baseline, store: work + "/store-old",
                                                 mountpoint: mnt + "/assetfs-old", cacheSize: options.cacheSize, runner: runner))
            oldTargets.append(AssetfsMountTarget(name: "assetfs-old-ro", binary: baseline, store: work + "/store-old",
                                                 mountpoint: mnt + "/assetfs-old-ro", cacheSize: options.cacheSize,
                                                 extra: ["-o", "ro"], runner: runner))
        }
        let targets: [any ReadTarget] = [
            NativeTarget(root: exportRoot),
            assetfsMount,
            assetfsReadOnly,
            assetfsNoMetrics,
        ] + lineageTargets + oldTargets + [
            PeerMountTarget(name: "borg", executable: borg, arguments: ["mount", "-f", "\(work)/borg::v\(version)", mnt + "/borg"],
                            mountpoint: mnt + "/borg", root: mnt + "/borg" + src, runner: runner),
            PeerMountTarget(name: "restic", executable: restic, arguments: ["mount", "--repo", work + "/restic", mnt + "/restic"],
                            mountpoint: mnt + "/restic", root: mnt + "/restic/ids/" + shortID + src, runner: runner),
        ]

        // Mount start with only the data set's versions, for comparison with the 1000-version figure.
        var startFew: [Double] = []
        for _ in 0..<3 {
            try Watchdog.shared.guarded(120, "assetfs mount start") {
                startFew.append(try assetfsMount.start()!)
                try assetfsMount.stop()
            }
        }
        progress("assetfs mount start with \(DataSetLayout.versions) versions: \(startFew.map { fixed($0 * 1000, 1) }.joined(separator: ", ")) ms")

        // The many versions: a small directory imported again and again as a separate asset.
        let tiny = work + "/tiny"
        try FileIO.writeWhole(tiny + "/README.txt", Array("a tiny asset, imported once per version\n".utf8))
        let (_, tinySeconds) = try timed {
            for i in 1...options.tinyVersions {
                try MountGuard.shared.checkInterrupted()
                try runner.run(assetfs, ["import", "tiny", tiny, "-m", "tiny \(i)", "--store", store, "--quiet"], label: "assetfs-tiny")
                if i % 200 == 0 { progress("tiny: \(i) versions") }
            }
        }
        let tinyList = try runner.run(assetfs, ["versions", "tiny", "--store", store, "--json"], label: "assetfs-tiny-versions")
        let tinyCount = (try JSONSerialization.jsonObject(with: Data(tinyList.output.utf8)) as? [Any])?.count ?? -1
        guard tinyCount == options.tinyVersions else {
            throw BenchError("expected \(options.tinyVersions) versions of asset tiny, `assetfs versions` lists \(tinyCount)")
        }
        let storeVersions = tinyCount + DataSetLayout.versions
        progress("tiny: \(tinyCount) versions in \(fixed(tinySeconds, 1)) s; the store now holds \(storeVersions) versions")

        // 3. The measurements.
        let model = files.filter { $0.relative == "model/model.bin" }
        let shards = files.filter { $0.relative.hasPrefix("shards/") }
        guard model.count == 1, !shards.isEmpty else { throw BenchError("the data set has no model/model.bin or no shards/") }
        var results: [String: TargetResult] = [:]
        for target in targets where target.name == "native" || options.only.map({ $0.contains(target.name) }) ?? true {
            var r = try measure(target, files: files, large: large, plan: plan, runner: runner)
            try measureRows(target, model: model, shards: shards, into: &r)
            results[target.name] = r
        }

        // Mount start with the many versions: once after dropping caches, then warm.
        var startCold = 0.0
        var startWarm: [Double] = []
        for i in 0..<6 {
            try Watchdog.shared.guarded(120, "assetfs mount start") {
                if i == 0 { try ReadMeasure.dropCaches() }
                let seconds = try assetfsMount.start()!
                if i == 0 { startCold = seconds } else { startWarm.append(seconds) }
                try assetfsMount.stop()
            }
        }
        progress("assetfs mount start with \(storeVersions) versions: cold \(fixed(startCold * 1000, 1)) ms, warm "
            + startWarm.map { fixed($0 * 1000, 1) }.joined(separator: ", ") + " ms")

        return ReadReport(layout: layout, version: version, files: files.count, bytes: bytes, largeFiles: large.count,
                          largeBytes: large.reduce(0) { $0 + $1.size },
                          modelBytes: model[0].size, shardCount: shards.count, shardBytes: shards.reduce(0) { $0 + $1.size },
                          randomReads: plan.count, tools: tools,
                          cacheSize: options.cacheSize, machine: "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores",
                          loadBefore: loadBefore, loadAfter: ReadMeasure.loadAverage(), exportSeconds: exportSeconds,
                          assetfsBinary: binaryDescription,
                          results: results, startFew: startFew, storeVersions: storeVersions, startCold: startCold,
                          startWarm: startWarm)
    }

    /// The two sessions described at the top, for one target.
    static func measure(_ target: any ReadTarget, files: [TreeFile], large: [TreeFile], plan: [RandomRead],
                        runner: CommandRunner) throws -> TargetResult {
        var r = TargetResult(name: target.name)
        let name = target.name
        try Watchdog.shared.guarded(900, "\(name): ls -lR and random reads") {
            if let s = try target.start() { r.ready.append(s) }
            try ReadMeasure.dropCaches()
            let ls = try ReadMeasure.walk("ls", ["-lR"], root: target.root, runner: runner, label: "ls-lR-\(name)")
            r.lsSeconds = ls.seconds
            r.lsLines = ls.lines
            progress("\(name): ls -lR \(fixed(ls.seconds, 3)) s (\(ls.lines) lines)")
            let random = try ReadMeasure.random(root: target.root, files: large, plan: plan, warmPasses: warmPasses)
            r.random = random
            progress("\(name): \(plan.count) random 4 KiB reads cold \(fixed(random.coldSeconds, 3)) s, warm \(fixed(random.warmSeconds, 4)) s")
            try target.stop()
        }
        try Watchdog.shared.guarded(900, "\(name): find and sequential reads") {
            if let s = try target.start() { r.ready.append(s) }
            let (find, cold) = try findThenCold(target, files: files, runner: runner, label: "find-\(name)")
            r.findSeconds = find.seconds
            r.findLines = find.lines
            progress("\(name): find \(fixed(find.seconds, 3)) s (\(find.lines) entries)")
            r.coldPasses.append(cold)
            progress("\(name): cold sequential \(fixed(cold, 3)) s")
            r.warmSequential = try (0..<warmPasses).map { _ in try ReadMeasure.sequential(root: target.root, files: files) }.min()!
            progress("\(name): warm sequential \(fixed(r.warmSequential, 3)) s")
            // The same warm passes over the large files only: separates per-file costs from throughput.
            r.warmLargeSequential = try (0..<warmPasses).map { _ in try ReadMeasure.sequential(root: target.root, files: large) }.min()!
            // And over the small files only: per-file costs (open, lookup, lineage's record of each open).
            let small = files.filter { $0.size < largeFileBytes }
            r.warmSmallSequential = try (0..<warmPasses).map { _ in try ReadMeasure.sequential(root: target.root, files: small) }.min()!
            r.smallFiles = small.count
            // Read after the measurements: assetfs raises it shortly after the mount answers.
            r.readAheadKiB = readAhead(of: target)
            if let pid = target.daemonPID, let memory = ReadMeasure.memory(of: pid) {
                r.peakKiB = memory.peakKiB
                r.currentKiB = memory.currentKiB
                progress("\(name): daemon \(pid) VmHWM \(memory.peakKiB) KiB, VmRSS \(memory.currentKiB) KiB")
            }
            try target.stop()
        }
        for round in 2...coldRounds {
            try Watchdog.shared.guarded(900, "\(name): cold round \(round)") {
                if let s = try target.start() { r.ready.append(s) }
                let cold = try findThenCold(target, files: files, runner: runner, label: "find-\(name)-\(round)").cold
                r.coldPasses.append(cold)
                progress("\(name): cold sequential, round \(round): \(fixed(cold, 3)) s")
                try target.stop()
            }
        }
        return r
    }

    /// The rows a training job feels, each in a fresh mount per round (a daemon's memory cache never serves a
    /// "cold" read): the model file alone, cold, then warm (best of `warmPasses`, first round only); the CSV
    /// shards alone, cold. Best of `coldRounds` for the cold rows.
    static func measureRows(_ target: any ReadTarget, model: [TreeFile], shards: [TreeFile], into r: inout TargetResult) throws {
        let name = target.name
        for round in 1...coldRounds {
            try Watchdog.shared.guarded(600, "\(name): model and shards, round \(round)") {
                _ = try target.start()
                try ReadMeasure.dropCaches()
                r.modelCold.append(try ReadMeasure.sequential(root: target.root, files: model))
                if round == 1 {
                    r.modelWarm = try (0..<warmPasses).map { _ in try ReadMeasure.sequential(root: target.root, files: model) }.min()!
                }
                try target.stop()
                _ = try target.start()
                try ReadMeasure.dropCaches()
                r.shardsCold.append(try ReadMeasure.sequential(root: target.root, files: shards))
                try target.stop()
                progress("\(name): round \(round): model cold \(fixed(r.modelCold.last!, 3)) s, shards cold \(fixed(r.shardsCold.last!, 3)) s")
            }
        }
    }

    /// In a freshly started target: drop caches, walk the tree with `find` (the first walk after the mount),
    /// drop caches again and time one cold sequential pass over `files`.
    static func findThenCold(_ target: any ReadTarget, files: [TreeFile], runner: CommandRunner,
                             label: String) throws -> (find: (seconds: Double, lines: Int), cold: Double) {
        try ReadMeasure.dropCaches()
        let find = try ReadMeasure.walk("find", [], root: target.root, runner: runner, label: label)
        try ReadMeasure.dropCaches()
        return (find, try ReadMeasure.sequential(root: target.root, files: files))
    }

    /// "PATH (modified 2026-11-28 07:42:16 UTC)".
    static func describe(binary: String) -> String {
        var st = stat()
        guard stat(binary, &st) == 0 else { return binary }
        var t = st.st_mtim.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        let date = "\(parts.tm_year + 1900)-\(padded(Int(parts.tm_mon) + 1, 2))-\(padded(Int(parts.tm_mday), 2)) "
            + "\(padded(Int(parts.tm_hour), 2)):\(padded(Int(parts.tm_min), 2)):\(padded(Int(parts.tm_sec), 2)) UTC"
        return "\(binary) (modified \(date))"
    }

    /// The read_ahead_kb the kernel uses for the mount's bdi (nil for the native disk: not a mount of ours).
    static func readAhead(of target: any ReadTarget) -> Int? {
        guard target.daemonPID != nil, let mountpoint = mountpoint(of: target),
              let entry = MountTable.entry(mountpoint),
              let text = try? String(contentsOfFile: "/sys/class/bdi/\(entry.device)/read_ahead_kb", encoding: .utf8)
        else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private static func mountpoint(of target: any ReadTarget) -> String? {
        switch target {
        case let t as AssetfsMountTarget: t.mountpoint
        case let t as PeerMountTarget: t.mountpoint
        default: nil
        }
    }
}

/// What one target measured.
struct TargetResult {
    let name: String
    /// Seconds from spawning the mount to the tree answering, one per session.
    var ready: [Double] = []
    var readAheadKiB: Int?
    var lsSeconds = 0.0, lsLines = 0
    var findSeconds = 0.0, findLines = 0
    var warmSequential = 0.0, warmLargeSequential = 0.0, warmSmallSequential = 0.0, smallFiles = 0
    /// Every cold pass, one per fresh mount.
    var coldPasses: [Double] = []
    /// The best cold pass.
    var coldSequential: Double { coldPasses.min() ?? .infinity }
    var random: ReadMeasure.RandomResult?
    var peakKiB: Int?, currentKiB: Int?
    /// Cold reads of the model file and of the CSV shards alone (one per fresh mount), and the model warm.
    var modelCold: [Double] = [], shardsCold: [Double] = []
    var modelWarm = 0.0
}
