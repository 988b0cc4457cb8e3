import ArgumentParser
import AssetCatalog
import AssetFUSE
import AssetRepository
import AssetTelemetry
import Foundation

struct LineageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lineage",
        abstract: "Which versions a version was made from (upstream), or was used to make (--downstream).",
        discussion: """
            Inputs are recorded by the mount (the jobs that wrote into a workspace, and what they read through it),
            by `assetfs run` + `import --lineage-from`, and by hand with `--input`. See Documentation/Lineage.md.

            Examples: assetfs lineage model@prod
                      assetfs lineage --downstream data@v2 --json
                      assetfs lineage model@v4 --format dot | dot -Tsvg > lineage.svg
            """)

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json, openlineage, dot
    }

    @OptionGroup var store: StoreOptions
    @Argument(help: "Reference: ASSET[@vN|@latest|@TAG].") var ref: String
    @Flag(help: "Every version made from REF, recursively (impact analysis).") var downstream = false
    @Option(help: "At most this many steps from REF.") var depth: Int?
    @Flag(help: "Same as --format json.") var json = false
    @Option(help: "text, json, openlineage (run events, one per line) or dot (Graphviz).") var format: OutputFormat = .text

    func validate() throws {
        if let depth, depth < 1 { throw ValidationError("--depth must be at least 1") }
        if json && format != .text && format != .json { throw ValidationError("--json and --format \(format.rawValue) disagree: choose one") }
        _ = try parseRef(ref)
    }

    func run() throws {
        let repo = try store.open()
        let start = try repo.catalog.resolve(try parseRef(ref))
        let graph = try LineageGraph.build(catalog: repo.catalog, start: start, direction: downstream ? .downstream : .upstream,
                                           maxDepth: depth)
        switch json ? .json : format {
        case .json: try printJSON(graph)
        case .dot: print(graph.dot(formatBytes: Format.bytes), terminator: "")
        case .openlineage: print(graph.openLineage(namespace: "assetfs:" + repo.root), terminator: "")
        case .text: printTree(graph)
        }
    }

    /// One line per version, indented by depth, with what was read of it.
    func printTree(_ graph: LineageGraph) {
        let nodes = Dictionary(graph.nodes.map { ($0.ref, $0) }, uniquingKeysWith: { first, _ in first })
        let jobs = Dictionary(graph.jobs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var children: [String: [LineageGraph.Edge]] = [:]
        for edge in graph.edges {
            children[graph.direction == .upstream ? edge.to : edge.from, default: []].append(edge)
        }
        func describe(_ ref: String) -> String {
            guard let node = nodes[ref] else { return ref }
            if let store = node.store { return "\(ref)  (store \(store), not followed)" }
            if !node.exists { return "\(ref)  (deleted)" }
            let made = node.jobs.map { "\(LineageGraph.jobTitle($0)) (\($0.user)@\($0.host))" }
            return made.isEmpty ? ref : "\(ref)  made by \(made.joined(separator: "; "))"
        }
        func what(_ edge: LineageGraph.Edge) -> String {
            if edge.kind == "declared" { return "declared" }
            let readers = edge.jobs.compactMap { jobs[$0].map(LineageGraph.jobTitle) }
            return "\(Format.files(edge.fileCount)) opened, \(Format.bytes(edge.bytes)) fetched" + (readers.isEmpty ? "" : " by \(readers.joined(separator: ", "))")
        }
        print(describe(graph.ref))
        var printed = Set<String>()
        func walk(_ ref: String, prefix: String) {
            let edges = children[ref] ?? []
            for (i, edge) in edges.enumerated() {
                let last = i == edges.count - 1
                let next = graph.direction == .upstream ? edge.from : edge.to
                print("\(prefix)\(last ? "└─ " : "├─ ")\(describe(next))  [\(what(edge))]")
                if printed.insert(next).inserted { walk(next, prefix: prefix + (last ? "   " : "│  ")) }
            }
        }
        printed.insert(graph.ref)
        walk(graph.ref, prefix: "")
        if graph.edges.isEmpty && !store.quiet {
            print(graph.direction == .upstream ? "no recorded inputs" : "no version records it as an input")
        }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command and record what it and its children read through assetfs mounts on this host.",
        discussion: """
            The record is kept as RUNS/NAME.json (RUNS: /var/lib/assetfs/runs for root, else \
            $XDG_STATE_HOME/assetfs/runs, or $ASSETFS_RUNS_DIR); `assetfs import ASSET DIR --lineage-from NAME` \
            attaches it to a new version. Exits with the command's status.

            Example: assetfs run --name train-42 -- python3 train.py --out /tmp/model && \
            assetfs import model /tmp/model --lineage-from train-42
            """)

    @Option(help: "The run's name (default: run-DATE-TIME-PID), or a path to keep the record at (it contains a slash).") var name: String?
    @Flag(name: .shortAndLong, help: "Say nothing but errors.") var quiet = false
    @Argument(parsing: .captureForPassthrough, help: "-- COMMAND [ARGUMENTS...]") var command: [String] = []

    var arguments: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

    func validate() throws {
        if arguments.isEmpty { throw ValidationError("no command given: assetfs run [--name NAME] -- COMMAND [ARGUMENTS...]") }
        if let name, !name.contains("/"), !Names.isValid(name) {
            throw ValidationError("invalid run name \(Names.quoted(name)): names must match \(Names.rule), or be a path with a slash")
        }
    }

    func run() throws {
        let id = UUID().uuidString
        let started = Clock.nowNanoseconds()
        let given = name ?? Self.defaultName()
        let recordPath = try RunRecords.path(given)
        let runName = given.contains("/") ? ((given as NSString).lastPathComponent as NSString).deletingPathExtension : given
        // The command waits on fd 3 until every mount knows its session (which is its pid: a new session).
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw RepositoryError(.failure, "cannot create a pipe: \(String(cString: strerror(errno)))") }
        var options = ChildProcess.Options()
        options.newSession = true
        options.descriptors = [(fds[0], 3)]
        let script = #"IFS= read -r _ <&3; exec 3<&-; exec "$@""#
        let pid: pid_t
        switch ChildProcess.start(["/bin/sh", "-c", script, "sh"] + arguments, options) {
        case .success(let p): pid = p
        case .failure(let e): throw RepositoryError(.failure, "cannot start \(arguments[0]): \(e)")
        }
        close(fds[0])
        // Ctrl-C and friends reach us (the terminal's foreground group), not the command's new session: pass them on.
        let forwarders = [SIGINT, SIGTERM, SIGHUP].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { kill(-pid, sig) }
            source.resume()
            return source
        }
        let begin = LineageControl.RunBegin(session: pid, id: id, name: runName, command: arguments, startedNs: started)
        var asked: [String] = []
        var silent: [(String, String)] = []
        for mount in MountTable.assetfsMounts() {
            do {
                _ = try LineageControl.post("/lineage/runs/begin", to: mount.mountpoint, body: try JSONEncoder().encode(begin))
                asked.append(mount.mountpoint)
            } catch where LineageControl.isOff(error) {
                silent.append((mount.mountpoint, "it records no lineage: --no-lineage"))
            } catch {
                silent.append((mount.mountpoint, "\(error)"))
            }
        }
        _ = write(fds[1], "go\n", 3)
        close(fds[1])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        for source in forwarders { source.cancel() }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)

        var record = LineageRecord()
        let end = try JSONEncoder().encode(LineageControl.RunEnd(session: pid))
        for mountpoint in asked {
            do {
                let answer = try LineageControl.post("/lineage/runs/end", to: mountpoint, body: end, timeout: 30)
                record.merge(try LineageRecord.decode(String(decoding: answer, as: UTF8.self)))
            } catch {
                silent.append((mountpoint, "\(error)"))
            }
        }
        let (cut, truncated) = LineageJob.truncate(arguments)
        let job = LineageJob(id: id, attribution: "run", name: runName, pid: pid, command: cut, commandTruncated: truncated,
                             uid: getuid(), user: currentUserName(), host: ProcessInfo.processInfo.hostName,
                             started: LineageJob.iso(started), ended: LineageJob.iso(Clock.nowNanoseconds()), exitStatus: exitStatus)
        record.jobs = [job]
        for i in record.inputs.indices { record.inputs[i].jobs = [id] }
        do {
            try RunRecords.write(record, to: recordPath)
        } catch {
            printError("error: cannot keep the run's record at \(recordPath): \(error)")
            Glibc.exit(exitStatus == 0 ? 1 : exitStatus)
        }
        if !quiet {
            for (mountpoint, why) in silent { printError("assetfs run: the mount on \(mountpoint) was not asked or did not answer (\(why)): reads through it are not recorded") }
            let inputs = record.inputs.map { "\($0.ref) (\(Format.files($0.fileCount)), \(Format.bytes($0.bytes)) fetched)" }
            printError("assetfs run: \(runName) read \(inputs.isEmpty ? "nothing through any assetfs mount" : inputs.joined(separator: ", ")); recorded in \(recordPath) (attach it: assetfs import ASSET DIR --lineage-from \(runName))")
        }
        Glibc.exit(exitStatus)
    }

    static func defaultName() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return "run-\(formatter.string(from: Date()))-\(getpid())"
    }
}

/// Where `assetfs run` keeps its records, and how `import --lineage-from` finds them.
enum RunRecords {
    static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["ASSETFS_RUNS_DIR"], !dir.isEmpty { return dir }
        if getuid() == 0 { return "/var/lib/assetfs/runs" }
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/assetfs/runs" }
        return NSHomeDirectory() + "/.local/state/assetfs/runs"
    }

    /// NAME's record; a NAME with a slash is a path to the record file itself.
    static func path(_ name: String) throws -> String {
        if name.contains("/") { return name }
        return directory() + "/" + name + ".json"
    }

    static func write(_ record: LineageRecord, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Whole or not at all: a temporary file renamed over the name.
        try Data(record.encoded().utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    static func read(_ name: String) throws -> LineageRecord {
        let path = try path(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RepositoryError(.notFound, "no run record \(path): `assetfs run --name \(name) -- COMMAND` writes it (runs are kept in \(directory()))")
        }
        return try LineageRecord.decode(String(decoding: data, as: UTF8.self))
    }
}
