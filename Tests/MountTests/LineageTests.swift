import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Lineage recorded by the mount itself (Documentation/Lineage.md): real mounts, real processes, the CLI.
@Suite("Lineage through the mount")
struct LineageTests {
    /// A training script: 4 multiprocessing workers read every file of DATA and LABELS through the mount, the
    /// parent writes a checkpoint into WORKSPACE; prints {path below the mount: bytes read} as JSON.
    static let trainScript = """
        import json, multiprocessing as mp, os, sys
        def read(path):
            with open(path, 'rb') as f:
                return path, len(f.read())
        if __name__ == '__main__':
            mnt, data, labels, workspace = sys.argv[1:5]
            files = [os.path.join(mnt, data, n) for n in sorted(os.listdir(os.path.join(mnt, data)))]
            files.append(os.path.join(mnt, labels, 'labels.csv'))
            with mp.Pool(4) as pool:
                sizes = dict(pool.map(read, files))
            with open(os.path.join(mnt, workspace, 'checkpoint.bin'), 'wb') as f:
                f.write(b'w' * sum(sizes.values()))
            with open(os.path.join(mnt, workspace, 'metrics.json'), 'w') as f:
                json.dump({'val': {'loss': 0.25, 'acc': 0.5}, 'epochs': 12}, f)
            print(json.dumps({os.path.relpath(p, mnt): n for p, n in sizes.items()}))
        """

    /// Reads the files named on the command line (through the mount) and writes their bytes to OUT on local disk.
    static let copyScript = """
        import sys
        out, paths = sys.argv[1], sys.argv[2:]
        with open(out, 'wb') as o:
            for p in paths:
                with open(p, 'rb') as f:
                    o.write(f.read())
        """

    struct Graph: Decodable {
        struct Node: Decodable {
            let ref: String
            let depth: Int
            let jobs: [Job]
        }
        struct Job: Decodable {
            let id: String
            let command: [String]
            let host: String
            let attribution: String
            let name: String?
            let exitStatus: Int32?
        }
        struct Edge: Decodable {
            let from: String
            let to: String
            let kind: String
            let bytes: UInt64
            let files: [File]
        }
        struct File: Decodable {
            let path: String
            let bytes: UInt64
        }
        let nodes: [Node]
        let edges: [Edge]
    }

    static func graph(_ fx: MountFixture, _ args: [String]) throws -> Graph {
        let r = try fx.cliOK(["lineage"] + args + ["--json"])
        do { return try JSONDecoder().decode(Graph.self, from: r.stdout) } catch {
            throw TestFailure("lineage \(args) --json does not decode (\(error)): \(r.out)")
        }
    }

    /// Imports `count` versions of ASSET; version v holds `files` files of distinct random bytes.
    static func importVersions(_ fx: MountFixture, _ asset: String, count: Int, files: [String], size: Int = 40_000) throws {
        for v in 1...count {
            let dir = fx.scratchPath(asset)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (i, name) in files.enumerated() {
                try Data(randomBytes(size + 1000 * i + v, seed: UInt64(v * 100 + i) &+ UInt64(asset.utf8.count) << 20))
                    .write(to: URL(fileURLWithPath: dir + "/" + name))
            }
            #expect(try fx.importVersion(asset, from: dir) == v)
        }
    }

    /// model v1 (a README), and workspace `name` on it, where the tests' jobs write.
    static func modelWorkspace(_ fx: MountFixture, _ name: String) throws {
        try importVersions(fx, "model", count: 1, files: ["README"], size: 100)
        try fx.cliOK(["workspace", "create", "model", name, "--from", "v1"])
    }

    static func write(_ fx: MountFixture, _ name: String, _ text: String) throws -> String {
        let path = fx.scratchPath(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a training job's reads (4 workers) are the commit's inputs; a bystander reading at the same time is not",
          arguments: StoreBackend.allCases)
    func trainingJob(backend: StoreBackend) throws {
        let fx = try MountFixture("lineage-train-\(backend)", backstop: 240, backend: backend)
        defer { fx.close() }
        try Self.importVersions(fx, "data", count: 3, files: (0..<6).map { "part-\($0).bin" })
        try Self.importVersions(fx, "labels", count: 5, files: ["labels.csv"], size: 3000)
        try Self.modelWorkspace(fx, "run7")
        try fx.mount()

        // Each in its own session, as two commands typed in two terminals are (the test's children otherwise
        // share its process group, which makes them one job: Documentation/Lineage.md).
        let script = try Self.write(fx, "train.py", Self.trainScript)
        let trainer = try fx.start(["/usr/bin/setsid", "-w", "/usr/bin/env", "python3", script, fx.mnt, "data/v2", "labels/v5",
                                    "model/workspaces/run7"])
        let bystander = try fx.start(["/usr/bin/setsid", "-w", "/bin/sh", "-c",
                                      "for f in '\(fx.mnt)'/data/v3/*; do cat \"$f\" > /dev/null; done; sleep 0.2"])
        let trained = trainer.wait(timeout: 90) { fx.abortConnection() }
        let watched = bystander.wait(timeout: 90) { fx.abortConnection() }
        #expect(trained.succeeded, "\(trained)")
        #expect(watched.succeeded, "\(watched)")
        let read = try JSONDecoder().decode([String: UInt64].self, from: trained.stdout)
        #expect(read.count == 7)

        let committed = try fx.cliOK(["commit", "model/run7", "-m", "trained", "--metrics-from", "metrics.json", "--meta", "val.acc=0.91",
                                      "--meta", "optimizer=adam"])
        #expect(committed.out.contains("model v2"), "\(committed)")
        let graph = try Self.graph(fx, ["model@v2"])
        #expect(Set(graph.edges.map(\.from)) == ["data@v2", "labels@v5"], "inputs: \(graph.edges.map(\.from))")
        #expect(graph.edges.allSatisfy { $0.to == "model@v2" && $0.kind == "observed" })
        var recorded: [String: UInt64] = [:]
        for edge in graph.edges {
            let (asset, version) = (edge.from.split(separator: "@")[0], edge.from.split(separator: "@")[1])
            for f in edge.files { recorded["\(asset)/\(version)/\(f.path)"] = f.bytes }
            #expect(edge.bytes == edge.files.reduce(0) { $0 + $1.bytes })
        }
        #expect(recorded == read, "recorded files and bytes differ from what the script read")
        let jobs = graph.nodes.first { $0.ref == "model@v2" }?.jobs ?? []
        #expect(jobs.count == 1, "jobs: \(jobs)")
        #expect(jobs.first?.command.contains(script) == true, "command: \(jobs.first?.command ?? [])")
        #expect(jobs.first?.host == ProcessInfo.processInfo.hostName)
        #expect(jobs.first?.attribution == "process-group")

        // The version directory carries the same inputs as `show --json`.
        let shown = try fx.cliOK(["show", "model@v2", "--json"])
        let inputs = try #require(try JSONSerialization.jsonObject(with: shown.stdout) as? [String: Any])["inputs"]
        let xattr = fx.run(["/usr/bin/getfattr", "--only-values", "-n", "user.assetfs.inputs", fx.path("model/v2")])
        #expect(xattr.succeeded, "\(xattr)")
        let fromXattr = try JSONSerialization.jsonObject(with: xattr.stdout)
        #expect(NSArray(array: fromXattr as? [Any] ?? []) == NSArray(array: inputs as? [Any] ?? ["missing"]),
                "xattr \(xattr.out) vs show \(shown.out)")
        // And its metadata, numbers as numbers, as `show --json` prints it (issue 19).
        let meta = try #require(try JSONSerialization.jsonObject(with: shown.stdout) as? [String: Any])["meta"] as? [String: Any]
        let metaXattr = fx.run(["/usr/bin/getfattr", "--only-values", "-n", "user.assetfs.meta", fx.path("model/v2")])
        let fromMetaXattr = try JSONSerialization.jsonObject(with: metaXattr.stdout) as? [String: Any]
        #expect(fromMetaXattr?["val.acc"] as? Double == 0.91 && fromMetaXattr?["optimizer"] as? String == "adam", "\(metaXattr.out)")
        // metrics.json the script wrote into the workspace (--metrics-from); --meta wins over its val.acc.
        #expect(fromMetaXattr?["val.loss"] as? Double == 0.25 && fromMetaXattr?["epochs"] as? Int == 12, "\(metaXattr.out)")
        #expect(NSDictionary(dictionary: fromMetaXattr ?? [:]) == NSDictionary(dictionary: meta ?? ["missing": 1]), "xattr \(metaXattr.out) vs show \(shown.out)")
        try fx.unmount()
    }

    @Test("assetfs run + import --lineage-from, three generations up- and downstream, --format dot and openlineage")
    func runImportAndFormats() throws {
        let fx = try MountFixture("lineage-run", backstop: 240)
        defer { fx.close() }
        try Self.importVersions(fx, "data", count: 2, files: ["a.bin", "b.bin"])
        try fx.mount()
        let copy = try Self.write(fx, "copy.py", Self.copyScript)
        let runs = fx.scratchPath("runs")
        let env = ["ASSETFS_RUNS_DIR": runs]

        // Generation 2: features, from data@v2, recorded by `assetfs run` and attached on import.
        let featuresDir = fx.scratchPath("features")
        try FileManager.default.createDirectory(atPath: featuresDir, withIntermediateDirectories: true)
        let featuring = fx.run([Paths.assetfs, "run", "--name", "feat", "--", "/usr/bin/env", "python3", copy, featuresDir + "/f.bin",
                                fx.path("data/v2/a.bin"), fx.path("data/v2/b.bin")], timeout: 60, environment: env)
        #expect(featuring.succeeded, "\(featuring)")
        #expect(featuring.err.contains("feat read data@v2 (2 files"), "\(featuring)")
        let run = fx.run(["/bin/cat", runs + "/feat.json"])
        #expect(run.succeeded && run.out.contains("\"name\":\"feat\""), "\(run)")
        let features = fx.run([Paths.assetfs, "import", "features", featuresDir, "--lineage-from", "feat"], environment: env)
        #expect(features.succeeded, "\(features)")

        // Generation 3: model, from features@v1 (observed) and data@v1 (declared by hand).
        let modelDir = fx.scratchPath("model")
        try FileManager.default.createDirectory(atPath: modelDir, withIntermediateDirectories: true)
        let training = fx.run([Paths.assetfs, "run", "--name", "train", "--", "/usr/bin/env", "python3", copy, modelDir + "/m.bin",
                               fx.path("features/v1/f.bin")], timeout: 60, environment: env)
        #expect(training.succeeded, "\(training)")
        let model = fx.run([Paths.assetfs, "import", "model", modelDir, "--lineage-from", "train", "--input", "data@v1"], environment: env)
        #expect(model.succeeded, "\(model)")

        let featureGraph = try Self.graph(fx, ["features@v1"])
        #expect(featureGraph.edges.map(\.from) == ["data@v2"])
        #expect(featureGraph.edges.first?.files.map(\.path) == ["a.bin", "b.bin"])
        let featureJob = featureGraph.nodes.first { $0.ref == "features@v1" }?.jobs.first
        #expect(featureJob?.name == "feat" && featureJob?.attribution == "run" && featureJob?.exitStatus == 0, "\(String(describing: featureJob))")

        let downstream = try Self.graph(fx, ["--downstream", "data@v2"])
        #expect(Set(downstream.nodes.map(\.ref)) == ["data@v2", "features@v1", "model@v1"])
        #expect(downstream.nodes.first { $0.ref == "model@v1" }?.depth == 2)
        let upstream = try Self.graph(fx, ["model@v1"])
        #expect(Set(upstream.nodes.map(\.ref)) == ["model@v1", "features@v1", "data@v1", "data@v2"])
        #expect(Set(upstream.edges.map { "\($0.from)>\($0.to):\($0.kind)" })
                == ["features@v1>model@v1:observed", "data@v1>model@v1:declared", "data@v2>features@v1:observed"])
        #expect(Set(try Self.graph(fx, ["model@v1", "--depth", "1"]).nodes.map(\.ref)) == ["model@v1", "features@v1", "data@v1"])

        // Graphviz: renders, and names the same nodes and edges as --json.
        let dot = try fx.cliOK(["lineage", "model@v1", "--format", "dot"])
        let dotFile = try Self.write(fx, "lineage.dot", dot.out)
        let png = fx.scratchPath("lineage.png")
        let rendered = fx.run(["/usr/bin/dot", "-Tpng", "-o", png, dotFile])
        #expect(rendered.succeeded && rendered.err.isEmpty, "\(rendered)")
        let header = try readAll(png).prefix(8)
        #expect(Array(header) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "not a PNG")
        var dotNodes = Set<String>(), dotEdges = Set<String>()
        for line in dot.out.split(separator: "\n") {
            let quoted = line.split(separator: "\"", omittingEmptySubsequences: false)
            if line.contains(" -> "), quoted.count > 3 { dotEdges.insert("\(quoted[1])>\(quoted[3])") } else if line.hasPrefix("  \""), quoted.count > 1 { dotNodes.insert(String(quoted[1])) }
        }
        #expect(dotNodes == Set(upstream.nodes.map(\.ref)))
        #expect(dotEdges == Set(upstream.edges.map { "\($0.from)>\($0.to)" }))

        // OpenLineage: the client's models accept every event; the same graph gives the same events.
        let events = try fx.cliOK(["lineage", "model@v1", "--format", "openlineage"])
        let again = try fx.cliOK(["lineage", "model@v1", "--format", "openlineage"])
        #expect(events.out == again.out)
        let eventsFile = try Self.write(fx, "events.jsonl", events.out)
        let checked = fx.run(["/usr/bin/env", "python3", Paths.packageRoot + "/scripts/openlineage-check.py", eventsFile])
        #expect(checked.succeeded && checked.out.trimmingCharacters(in: .whitespacesAndNewlines) == "4", "two jobs, START and COMPLETE each: \(checked)")
        #expect(events.out.contains("\"name\":\"features@v1\"") && events.out.contains("\"name\":\"data@v2\""))

        // At a terminal: the tree, and `run` passes the command's exit status on.
        let tty = fx.run(["/usr/bin/script", "-qec", "\(Paths.assetfs) lineage model@v1", "/dev/null"])
        #expect(tty.succeeded && tty.out.contains("└─") && tty.out.contains("data@v2"), "\(tty)")
        let failing = fx.run([Paths.assetfs, "run", "-q", "--", "/bin/sh", "-c", "exit 3"], environment: env)
        #expect(failing.exitCode == 3, "\(failing)")
        let usage = fx.run([Paths.assetfs, "run"], environment: env)
        #expect(usage.exitCode == 2, "\(usage)")
        let unknown = fx.run([Paths.assetfs, "import", "model", modelDir, "--lineage-from", "nosuchrun"], environment: env)
        #expect(unknown.exitCode == 1 && unknown.err.contains("nosuchrun"), "\(unknown)")
        try fx.unmount()
    }

    @Test("a commit whose lineage cannot be written creates nothing; the workspace stays")
    func commitWithUnwritableLineageCreatesNothing() throws {
        let fx = try MountFixture("lineage-atomic", backstop: 120)
        defer { fx.close() }
        try Self.importVersions(fx, "data", count: 1, files: ["a.bin"])
        try Self.modelWorkspace(fx, "w")
        try fx.mount()
        let job = fx.run(["/bin/sh", "-c", "cat '\(fx.path("data/v1/a.bin"))' > '\(fx.path("model/workspaces/w/copy.bin"))'"])
        #expect(job.succeeded, "\(job)")
        let catalog = fx.store + "/catalog.sqlite"
        let trigger = "CREATE TRIGGER refuse_lineage BEFORE INSERT ON version_lineage BEGIN SELECT RAISE(ABORT, 'lineage refused by the test'); END;"
        #expect(fx.run(["/usr/bin/sqlite3", catalog, trigger]).succeeded)
        let refused = fx.cli(["commit", "model/w", "-m", "x"])
        #expect(refused.exitCode == 1 && refused.err.contains("lineage refused"), "\(refused)")
        #expect(try fx.cliOK(["versions", "model", "--json"]).out.contains("\"version\" : 2") == false, "a version was created without its lineage")
        #expect(try fx.cliOK(["workspace", "list", "model"]).out.contains("model/w"))
        #expect(fx.run(["/usr/bin/sqlite3", catalog, "DROP TRIGGER refuse_lineage"]).succeeded)
        try fx.cliOK(["commit", "model/w", "-m", "x"])
        #expect(try Self.graph(fx, ["model@v2"]).edges.map(\.from) == ["data@v1"])
        try fx.unmount()
    }

    @Test("what a writer read survives kill -9 of the daemon")
    func survivesKillOfTheDaemon() throws {
        let fx = try MountFixture("lineage-kill", backstop: 120)
        defer { fx.close() }
        try Self.importVersions(fx, "data", count: 2, files: ["a.bin", "b.bin"])
        try Self.modelWorkspace(fx, "w")
        let daemon = try fx.mount()
        let job = fx.run(["/bin/sh", "-c", "cat '\(fx.path("data/v2/a.bin"))' '\(fx.path("data/v2/b.bin"))' > '\(fx.path("model/workspaces/w/out.bin"))'"])
        #expect(job.succeeded, "\(job)")
        kill(daemon, SIGKILL)
        fx.abortConnection()
        fx.forgetDaemon()
        _ = fx.run(["/bin/fusermount3", "-u", "-z", fx.mnt])
        try fx.mount()
        try fx.cliOK(["commit", "model/w", "-m", "after a crash"])
        let graph = try Self.graph(fx, ["model@v2"])
        #expect(graph.edges.map(\.from) == ["data@v2"])
        #expect(graph.edges.first?.files.map(\.path) == ["a.bin", "b.bin"])
        try fx.unmount()
    }

    @Test("a file unchanged between versions is recorded under the version the job opened, whoever looked it up first")
    func unchangedFileNamesItsVersion() throws {
        let fx = try MountFixture("lineage-same-file", backstop: 120)
        defer { fx.close() }
        let shared = randomBytes(50_000, seed: 7)
        for v in 1...2 {
            let dir = fx.scratchPath("data")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(shared).write(to: URL(fileURLWithPath: dir + "/same.bin"))  // identical in v1 and v2, same mtime below
            try setMtime(dir + "/same.bin", 1_700_000_000)
            try Data(randomBytes(1000, seed: UInt64(v))).write(to: URL(fileURLWithPath: dir + "/own.bin"))
            #expect(try fx.importVersion("data", from: dir) == v)
        }
        try fx.mount()
        // v1's path is looked up (the kernel keeps the name), then v2's; then a job opens v1's through the kept
        // name, so the daemon sees only the open. With one inode for both, that open named v2.
        #expect(fx.run(["/bin/cat", fx.path("data/v1/same.bin")]).succeeded)
        #expect(fx.run(["/bin/cat", fx.path("data/v2/same.bin")]).succeeded)
        let record = try Self.runRecord(fx, fx.path("data/v1/same.bin"), "v1-reader")
        #expect(record.inputs.map { "\($0.asset)@v\($0.version)" } == ["data@v1"])
        #expect(record.inputs.first?.files.map(\.path) == ["same.bin"])
        try fx.unmount()
    }

    struct RunRecord: Decodable {
        struct Input: Decodable {
            let asset: String
            let version: Int
            let files: [Graph.File]
        }
        let inputs: [Input]
    }

    /// `assetfs run --name NAME -- cat PATH`: what it recorded through the mount.
    static func runRecord(_ fx: MountFixture, _ path: String, _ name: String) throws -> RunRecord {
        let runs = fx.scratchPath("runs")
        let r = fx.run([Paths.assetfs, "run", "-q", "--name", name, "--", "/bin/cat", path], environment: ["ASSETFS_RUNS_DIR": runs])
        guard r.succeeded else { throw TestFailure("\(r)") }
        return try JSONDecoder().decode(RunRecord.self, from: Data(contentsOf: URL(fileURLWithPath: runs + "/\(name).json")))
    }

    /// The paths of the files the run opened.
    static func runReads(_ fx: MountFixture, _ path: String, _ name: String) throws -> [String] {
        try runRecord(fx, path, name).inputs.flatMap { $0.files.map(\.path) }
    }

    @Test("-o ro sees a file only while its pages are not cached; --lineage-opens sees every open; --no-lineage nothing")
    func readOnlyMountSeesColdReadsOnly() throws {
        let fx = try MountFixture("lineage-ro", backstop: 120)
        defer { fx.close() }
        try Self.importVersions(fx, "data", count: 1, files: ["a.bin"])
        try fx.mount(options: ["ro"])
        let file = fx.path("data/v1/a.bin")
        #expect(try Self.runReads(fx, file, "cold") == ["a.bin"])
        #expect(try Self.runReads(fx, file, "cached") == [], "the kernel served the cached pages without the daemon")
        try fx.unmount()
        try fx.mount(options: ["ro"], arguments: ["--lineage-opens"])
        #expect(try Self.runReads(fx, file, "open1") == ["a.bin"])
        #expect(try Self.runReads(fx, file, "open2") == ["a.bin"], "with --lineage-opens every open is seen")
        try fx.unmount()
        try fx.mount(arguments: ["--no-lineage"])
        #expect(try Self.runReads(fx, file, "off") == [])
        try fx.unmount()
    }
}
