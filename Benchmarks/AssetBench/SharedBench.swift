#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// `AssetBench shared`: a shared store (SeaweedFS S3 + PostgreSQL 15 on loopback, started by
/// scripts/shared-servers.sh) against its baselines, every figure from this one run:
/// - import of v1 into the shared store, into a local store, and `restic backup` into the same S3 server;
/// - cold sequential read of v1 through a mount with an empty disk cache, against fetching the same files as
///   plain objects with `curl --parallel` from the same server (the wire limit here);
/// - the same read from a warm disk cache (daemon restarted, page cache dropped) against the local store's
///   cold read through its mount;
/// - random 4 KiB reads with an empty disk cache;
/// - time from `import` returning on host A to the version being listed in host B's mount;
/// - the daemon's peak RSS after the reads.
enum SharedBench {
    static func main(_ options: Options) -> Int32 {
        do {
            try run(options)
            return 0
        } catch {
            progress("shared benchmark failed: \(error)")
            MountGuard.shared.releaseAll()
            return 1
        }
    }

    /// The variables scripts/shared-servers.sh prints (`export NAME=VALUE` lines): the servers' addresses and
    /// credentials.
    static func serverSettings(_ output: String) -> [String: String] {
        var env: [String: String] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst("export ".count).split(separator: "=", maxSplits: 1).map(String.init)
            if pair.count == 2 { env[pair[0]] = pair[1] }
        }
        return env
    }

    static func run(_ options: Options) throws {
        guard geteuid() == 0 else { throw BenchError("the shared benchmark starts servers and drops the page cache: run it as root") }
        let work = FileIO.absolute(options.work)
        guard let assetfs = FileIO.executable(FileIO.absolute(options.assetfs)) else {
            throw BenchError("assetfs binary \(options.assetfs) not found (swift build -c release --product assetfs)")
        }
        guard let restic = FileIO.executable("restic") else { throw BenchError("restic not found in PATH") }
        guard let curl = FileIO.executable("curl") else { throw BenchError("curl not found in PATH") }
        let script = FileIO.absolute("scripts/shared-servers.sh")
        guard FileIO.exists(script) else { throw BenchError("run from the repository root (scripts/shared-servers.sh not found)") }

        for entry in MountTable.entries() where entry.mountpoint.hasPrefix(work + "/") { MountGuard.takeDown(entry.mountpoint, pid: 0) }
        if FileIO.exists(work + "/servers") {
            _ = try? Spawn.run("/bin/bash", [script, "stop", work + "/servers"], runner: CommandRunner(logDirectory: "/tmp", environment: ProcessInfo.processInfo.environment), label: "assetfs-sharedbench-stop-old")
        }
        try FileIO.removeIfPresent(work)
        for sub in ["logs", "cache", "mnt/a", "mnt/b", "mnt/local", "objects", "host-a", "host-b"] { try FileIO.makeDirectory(work + "/" + sub) }
        MountGuard.shared.setSweepPrefix(work + "/mnt/")

        // Servers, and the environment every command of the run gets (AWS's and restic's variables).
        let bootstrap = CommandRunner(logDirectory: work + "/logs", environment: ProcessInfo.processInfo.environment)
        let started = try Spawn.run(runner: bootstrap, "/bin/bash", [script, "start", work + "/servers"], label: "servers-start")
        defer { _ = try? Spawn.run(runner: bootstrap, "/bin/bash", [script, "stop", work + "/servers"], label: "servers-stop") }
        let env = peerEnvironment(work: work).merging(serverSettings(started.output)) { $1 }
        guard let endpoint = env["AWS_ENDPOINT_URL"], let catalog = env["ASSETFS_TEST_CATALOG"],
              let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"] else {
            throw BenchError("scripts/shared-servers.sh printed no settings: \(started.output)")
        }
        func host(_ name: String) -> [String: String] {
            env.merging(["ASSETFS_HOST_DIR": "\(work)/host-\(name)", "ASSETFS_DISK_CACHE": "\(work)/host-\(name)/cache"]) { $1 }
        }
        let hostA = CommandRunner(logDirectory: work + "/logs", environment: host("a"))
        let hostB = CommandRunner(logDirectory: work + "/logs", environment: host("b"))
        let shared = "s3://assets/bench", local = work + "/store"

        // 1. The data set (v1 of the standard one) and the imports.
        let src = work + "/src"
        let generator = DataSetGenerator(root: src, layout: DataSetLayout(scale: options.scale))
        try generator.createFirstVersion()
        let files = try FileIO.regularFiles(under: src).map {
            TreeFile(relative: String($0.dropFirst(src.count + 1)), size: try FileIO.signature($0).size)
        }
        let bytes = files.reduce(0) { $0 + $1.size }
        progress("v1: \(files.count) files, \(megabytes(bytes)) MB")
        try Spawn.run(runner: hostA, assetfs, ["init", "--store", shared, "--catalog", catalog], label: "shared-init")
        try Spawn.run(runner: hostA, assetfs, ["init", "--store", local], label: "local-init")
        try ReadMeasure.dropCaches()
        let sharedImport = try Spawn.run(runner: hostA, assetfs, ["import", "bench", src, "-m", "v1", "--store", shared], label: "shared-import").seconds
        try ReadMeasure.dropCaches()
        let localImport = try Spawn.run(runner: hostA, assetfs, ["import", "bench", src, "-m", "v1", "--store", local], label: "local-import").seconds
        try Spawn.run(runner: hostA, restic, ["init", "--repo", "s3:\(endpoint)/assets/restic"], label: "restic-init")
        try ReadMeasure.dropCaches()
        let resticImport = try Spawn.run(runner: hostA, restic, ["backup", "--repo", "s3:\(endpoint)/assets/restic", src], label: "restic-backup").seconds
        progress("import: shared \(fixed(sharedImport, 2)) s, local \(fixed(localImport, 2)) s, restic to S3 \(fixed(resticImport, 2)) s")

        // 2. Plain objects: the same files uploaded as they are, then fetched with curl, 8 at a time and one at a
        // time (the mount's reader here is one thread reading file after file).
        let large = files.filter { $0.size >= 1 << 20 }, small = files.filter { $0.size < 1 << 20 }
        let sign = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(key):\(secret)", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        func objectURL(_ f: TreeFile) -> String {
            "\(endpoint)/assets/plain/" + f.relative.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!
        }
        func curlConfig(_ name: String, _ subset: [TreeFile], _ line: (TreeFile) -> String) throws -> String {
            let path = "\(work)/objects/\(name).curl"
            try FileIO.writeWhole(path, Array(subset.map(line).joined(separator: "\n").utf8))
            return path
        }
        let uploads = try curlConfig("upload", files) { "upload-file = \"\(src)/\($0.relative)\"\nurl = \"\(objectURL($0))\"" }
        try Spawn.run(runner: hostA, curl, ["-sSf", "--parallel", "--parallel-max", "8", "-K", uploads] + sign, label: "plain-upload")
        // The page cache is dropped first, as before each read through a mount: the server then reads its
        // volume files from disk for both, not from memory for curl alone (until 2026-12-07 it was not, which
        // made the curl rows 1.1-1.4x faster than a fetch from a cold server).
        func plainFetch(_ name: String, _ subset: [TreeFile], parallel: Int) throws -> Double {
            let config = try curlConfig("download-\(name)", subset) { "url = \"\(objectURL($0))\"\noutput = \"/dev/null\"" }
            try ReadMeasure.dropCaches()
            return try Spawn.run(runner: hostA, curl, ["-sSf", "--parallel", "--parallel-max", "\(parallel)", "-K", config] + sign,
                                 label: "plain-fetch-\(name)-\(parallel)").seconds
        }
        let plainLarge8 = try plainFetch("large", large, parallel: 8), plainLarge1 = try plainFetch("large", large, parallel: 1)
        let plainSmall8 = try plainFetch("small", small, parallel: 8), plainSmall1 = try plainFetch("small", small, parallel: 1)

        // 3. Reads through mounts (version 1 at MNT/bench/v1).
        let mountA = SharedMount(binary: assetfs, store: shared, mountpoint: work + "/mnt/a", runner: hostA)
        let mountLocal = SharedMount(binary: assetfs, store: local, mountpoint: work + "/mnt/local", runner: hostA)
        var peakKiB = 0  // The shared mount daemons' largest VmHWM after a read.
        func coldAndWarm(_ mount: SharedMount, _ subset: [TreeFile], emptyCache: Bool) throws -> (cold: Double, warm: Double) {
            if emptyCache { try FileIO.removeIfPresent(work + "/host-a/cache") }
            try mount.start()
            try ReadMeasure.dropCaches()
            let cold = try ReadMeasure.sequential(root: mount.root, files: subset)
            if mount === mountA { peakKiB = max(peakKiB, mount.pid.flatMap(ReadMeasure.memory(of:))?.peakKiB ?? 0) }
            try mount.stop()
            // A new daemon (empty memory cache), the page cache dropped: only the disk cache is warm.
            try mount.start()
            try ReadMeasure.dropCaches()
            let warm = try ReadMeasure.sequential(root: mount.root, files: subset)
            try mount.stop()
            return (cold, warm)
        }
        let largeShared = try coldAndWarm(mountA, large, emptyCache: true)
        let smallShared = try coldAndWarm(mountA, small, emptyCache: true)
        let largeLocal = try coldAndWarm(mountLocal, large, emptyCache: false)
        let smallLocal = try coldAndWarm(mountLocal, small, emptyCache: false)
        let plan = ReadMeasure.plan(files: large, count: options.randomReads, seed: 0x7261_6E64_7265_6164)
        try FileIO.removeIfPresent(work + "/host-a/cache")
        try mountA.start()
        try ReadMeasure.dropCaches()
        let random = try ReadMeasure.random(root: mountA.root, files: large, plan: plan, warmPasses: 1)
        peakKiB = max(peakKiB, mountA.pid.flatMap(ReadMeasure.memory(of:))?.peakKiB ?? 0)
        try mountA.stop()

        // Prefetch of the whole version into an empty disk cache, against fetching the same files as plain
        // objects 8 at a time (bytes as stored: what crosses the wire).
        try FileIO.removeIfPresent(work + "/host-a/cache")
        try ReadMeasure.dropCaches()
        let prefetched = try Spawn.run(runner: hostA, assetfs, ["prefetch", "bench@v1", "--json", "--store", shared], label: "prefetch")
        guard let prefetchReport = try JSONSerialization.jsonObject(with: Data(prefetched.output.utf8)) as? [String: Any],
              let prefetchBytes = prefetchReport["bytesFetched"] as? Int, prefetchBytes > 0 else {
            throw BenchError("prefetch printed no report: \(prefetched.output.prefix(300))")
        }
        let plainAll8 = plainLarge8 + plainSmall8

        // 4. Visibility: B mounts, A imports a small version, B's mount lists it.
        let mountB = SharedMount(binary: assetfs, store: shared, mountpoint: work + "/mnt/b", runner: hostB)
        try mountB.start()
        defer { try? mountB.stop() }
        try FileIO.makeDirectory(work + "/small")
        try FileIO.writeWhole(work + "/small/note.txt", Array("v2\n".utf8))
        _ = try Spawn.run(runner: hostA, assetfs, ["import", "bench", work + "/small", "-m", "v2", "--store", shared], label: "visibility-import")
        let (_, visible) = try timed {
            let deadline = Date().addingTimeInterval(30)
            while !FileIO.exists(work + "/mnt/b/bench/v2/note.txt") {
                guard Date() < deadline else { throw BenchError("v2 did not show on host B within 30 s") }
                usleep(10_000)
            }
        }

        var table = MarkdownTable(["row", "assetfs (shared store)", "baseline", "ratio"])
        func mbps(_ seconds: Double) -> Double { Double(bytes) / 1e6 / seconds }
        table.add(["import v1 (\(megabytes(bytes)) MB)", "\(fixed(mbps(sharedImport), 0)) MB/s",
                   "restic backup to the same S3: \(fixed(mbps(resticImport), 0)) MB/s", fixed(resticImport / sharedImport, 2) + "x"])
        table.add(["import v1, same data", "\(fixed(mbps(sharedImport), 0)) MB/s",
                   "local store: \(fixed(mbps(localImport), 0)) MB/s", fixed(localImport / sharedImport, 2) + "x"])
        // Large files by bytes per second, small ones by files per second (their time is per-file round trips).
        func rate(_ subset: [TreeFile], _ seconds: Double) -> String {
            subset.count == large.count ? "\(fixed(Double(subset.reduce(0) { $0 + $1.size }) / 1e6 / seconds, 0)) MB/s"
                : "\(fixed(Double(subset.count) / seconds, 0)) files/s"
        }
        for (label, subset, shared, local, plain8, plain1) in [
            ("\(large.count) files >= 1 MiB", large, largeShared, largeLocal, plainLarge8, plainLarge1),
            ("\(small.count) files < 1 MiB", small, smallShared, smallLocal, plainSmall8, plainSmall1),
        ] {
            table.add(["cold read, empty disk cache, \(label)", rate(subset, shared.cold),
                       "curl, 8 at a time: \(rate(subset, plain8)); one at a time: \(rate(subset, plain1))",
                       fixed(plain8 / shared.cold, 2) + "x; " + fixed(plain1 / shared.cold, 2) + "x"])
            table.add(["warm disk cache, page cache dropped, \(label)", rate(subset, shared.warm),
                       "local store, cold mount read: \(rate(subset, local.cold))", fixed(local.cold / shared.warm, 2) + "x"])
        }
        table.add(["prefetch v1 into an empty disk cache (stored bytes)", "\(fixed(Double(prefetchBytes) / 1e6 / prefetched.seconds, 0)) MB/s",
                   "curl, 8 at a time, every file: \(fixed(Double(bytes) / 1e6 / plainAll8, 0)) MB/s",
                   fixed((Double(prefetchBytes) / prefetched.seconds) / (Double(bytes) / plainAll8), 2) + "x"])
        table.add(["random 4 KiB reads, empty disk cache", "\(fixed(Double(plan.count) / random.coldSeconds, 0)) reads/s", "", ""])
        table.add(["visible on host B after import on host A", "\(fixed(visible, 3)) s", "target 2 s", ""])
        table.add(["daemon peak RSS (VmHWM) after the cold reads", peakKiB > 0 ? "\(peakKiB / 1024) MiB" : "n/a",
                   "target: 64 MiB + --cache-size (256 MiB)", ""])
        print("""
            ## Shared store (SeaweedFS S3 + PostgreSQL 15 on loopback)

            Command: `swift run -c release AssetBench shared --scale \(options.scale)`; \(files.count) files, \
            \(megabytes(bytes)) MB (v1 of the benchmark data set); load before: \(ReadMeasure.loadAverage()).

            \(table.render())
            """)
        guard !options.skipPeers else { return }
        let fleet = FleetBench(c: FleetBench.Context(
            work: work, env: env, endpoint: endpoint, catalog: catalog, key: key, secret: secret, src: src, generator: generator,
            files: files, large: large, small: small, plan: plan, assetfs: assetfs, shared: shared, runner: hostA, mount: mountA,
            importSeconds: sharedImport, coldLarge: largeShared.cold, coldSmall: smallShared.cold, warmLarge: largeShared.warm,
            warmSmall: smallShared.warm, randomSeconds: random.coldSeconds, prefetchSeconds: prefetched.seconds, peakKiB: peakKiB,
            plainLarge8: plainLarge8, plainSmall8: plainSmall8))
        print("\n" + (try fleet.run()))
    }
}

/// `assetfs mount` of a store for the shared benchmark, with the host's environment.
final class SharedMount {
    let binary, store, mountpoint: String
    let runner: CommandRunner
    private(set) var pid: Int32?
    var root: String { mountpoint + "/bench/v1" }

    init(binary: String, store: String, mountpoint: String, runner: CommandRunner) {
        (self.binary, self.store, self.mountpoint, self.runner) = (binary, store, mountpoint, runner)
    }

    func start() throws {
        try MountGuard.shared.add(mountpoint)
        let result = try Spawn.run(runner: runner, binary, ["mount", mountpoint, "--background", "--store", store], label: "mount-\(UUID().uuidString.prefix(8))")
        pid = AssetfsMountTarget.pid(in: result.output)
        MountGuard.shared.record(mountpoint, pid: pid ?? 0)
    }

    func stop() throws {
        defer { MountGuard.takeDown(mountpoint, pid: pid ?? 0); MountGuard.shared.remove(mountpoint); pid = nil }
        try Spawn.run(runner: runner, binary, ["umount", mountpoint], label: "umount-\(UUID().uuidString.prefix(8))")
    }
}

extension Spawn {
    /// `run` with the runner first: the shared benchmark starts daemons (pg_ctl, weed), whose exit Foundation's
    /// Process sometimes never reaps; posix_spawn and waitpid do.
    @discardableResult
    static func run(runner: CommandRunner, _ executable: String, _ arguments: [String], label: String) throws -> (seconds: Double, output: String) {
        try run(executable, arguments, runner: runner, label: label)
    }
}
