import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where the options every command shares are typed: before the subcommand (`git -C`, `restic -r`), after it,
/// or not at all (ASSETFS_STORE).
private enum OptionPlace: String, CaseIterable {
    case beforeCommand, afterCommand, environment
}

/// One step of the story every form replays: a command line without the shared options, and the shared options
/// it takes besides --store. `{dir}` is the form's own scratch directory (exports, mountpoints).
private struct Step {
    let args: [String]
    var shared: [String] = []
    /// Most steps succeed; the rest must fail the same way in every form.
    var succeeds = true
}

@Suite("assetfs global options")
struct GlobalOptionTests {
    /// Three stores get the same commands, one per place of the shared options; every command must print the same
    /// (paths, times and pids aside) and exit the same. A subcommand missing from the table fails the test, so a
    /// new command cannot skip the rule.
    @Test("--store and --quiet work before the subcommand, after it, and as ASSETFS_STORE, with the same output for every subcommand")
    func everySubcommandTakesSharedOptionsAnywhere() throws {
        try withTemporaryDirectory("global-options") { dir in
            try makeDataset(dir + "/src1", seed: 50)
            try makeDataset(dir + "/src2", seed: 50)
            try writeFile(dir + "/src2/README.txt", Array("second edition\n".utf8))
            try makeDataset(dir + "/src3", seed: 51)
            let steps: [Step] = [
                Step(args: ["init"]),
                Step(args: ["import", "data", dir + "/src1", "-m", "first", "--meta", "k=v"]),
                Step(args: ["import", "data", dir + "/src2", "-m", "second", "--tag", "prod"]),
                Step(args: ["import", "quiet", dir + "/src3"], shared: ["--quiet"]),
                Step(args: ["assets"]),
                Step(args: ["assets", "--json"]),
                Step(args: ["versions", "data"]),
                Step(args: ["versions", "data", "--json"]),
                Step(args: ["versions", "nosuch"], succeeds: false),
                Step(args: ["show", "data@v1"]),
                Step(args: ["show", "data@prod", "--json"]),
                Step(args: ["ls", "data@v2", "-l", "-r"]),
                Step(args: ["ls", "data@v2:shards", "--json"]),
                Step(args: ["cat", "data@v2:README.txt"]),
                Step(args: ["diff", "data@v1", "data@v2"]),
                Step(args: ["diff", "data@v1", "data@v2", "--json"]),
                Step(args: ["tag", "data", "v1", "old"]),
                Step(args: ["untag", "data", "old"]),
                Step(args: ["export", "data@v1", "{dir}/export"]),
                Step(args: ["verify"]),
                Step(args: ["verify", "data@v2", "--json"], shared: ["--quiet"]),
                Step(args: ["stats"]),
                Step(args: ["stats", "--json"]),
                Step(args: ["workspace", "create", "data", "exp", "--from", "v2"]),
                Step(args: ["workspace", "list"]),
                Step(args: ["workspace", "list", "--json"]),
                Step(args: ["workspace", "status", "data/exp"]),
                Step(args: ["workspace", "create", "data", "scratch"]),
                Step(args: ["workspace", "discard", "data/scratch"]),
                Step(args: ["commit", "data/exp", "-m", "unchanged"]),
                Step(args: ["lineage", "data@v2"]),
                Step(args: ["meta", "data", "--csv"]),
                Step(args: ["plot", "data", "no.such.key"], succeeds: false),
                Step(args: ["compare", "data@v2", "data@v3"]),
                Step(args: ["lineage", "--downstream", "data@v2", "--json"]),
                Step(args: ["run", "--name", "{dir}/run1.json", "-q", "--", "/bin/true"]),
                Step(args: ["mount", "{dir}/mnt", "--background"]),
                Step(args: ["umount", "{dir}/mnt"]),
                Step(args: ["prefetch", "data@v2"], succeeds: false),
                Step(args: ["cache", "--disk-cache", "{dir}/disk-cache", "--json"]),
                Step(args: ["cache", "clear", "--disk-cache", "{dir}/disk-cache"]),
                Step(args: ["delete", "data@v1"]),
                Step(args: ["gc"]),
                Step(args: ["log", "data"]),
                Step(args: ["log", "--json"], shared: ["--quiet"]),
            ]
            try requireEverySubcommand(in: steps)

            let scratch = Dictionary(uniqueKeysWithValues: OptionPlace.allCases.map { ($0, dir + "/" + $0.rawValue) })
            for path in scratch.values { try FileManager.default.createDirectory(atPath: path + "/mnt", withIntermediateDirectories: true) }
            defer {
                for path in scratch.values {
                    for mount in MountInfo.mounts(under: path) {
                        _ = try? ChildProcess.spawn(["fusermount3", "-u", "-z", mount], scratch: NSTemporaryDirectory()).wait(timeout: 10)
                    }
                }
            }
            for step in steps {
                var outputs: [OptionPlace: (status: Int32, stdout: String, stderr: String)] = [:]
                for place in OptionPlace.allCases {
                    let own = scratch[place]!
                    let store = own + "/store"
                    let args = step.args.map { $0.replacingOccurrences(of: "{dir}", with: own) }
                    let line: [String]
                    switch place {
                    case .beforeCommand: line = ["--store", store] + step.shared + args
                    case .afterCommand: line = args + step.shared + ["--store", store]
                    case .environment: line = args + step.shared
                    }
                    let result = try assetfs(line, store: place == .environment ? store : nil)
                    #expect(!result.killedBySignal, "\(result.describe(line))")
                    #expect((result.status == 0) == step.succeeds, "\(result.describe(line))")
                    if step.succeeds && step.args.first == "mount" {
                        #expect(MountInfo.isMounted(own + "/mnt"), "\(result.describe(line))")
                        #expect(result.stdout.contains(store + "/logs/"), "the mount serves another store: \(result.describe(line))")
                    }
                    outputs[place] = (result.status, normalize(result.stdout, own: own), normalize(result.stderr, own: own))
                }
                let reference = outputs[.afterCommand]!
                for place in [OptionPlace.beforeCommand, .environment] {
                    let other = outputs[place]!
                    #expect(other.status == reference.status && other.stdout == reference.stdout && other.stderr == reference.stderr,
                            "`assetfs \(step.args.joined(separator: " "))` with the shared options \(place) differs from after the command:\n--- \(place): status \(other.status)\n\(other.stdout)\(other.stderr)\n--- afterCommand: status \(reference.status)\n\(reference.stdout)\(reference.stderr)")
                }
                if step.shared.contains("--quiet") {
                    #expect(!reference.stdout.contains("checked ") && reference.stderr.isEmpty, "--quiet printed: \(reference)")
                }
            }
            // The forms really wrote to their own stores: each has the story's versions.
            for place in OptionPlace.allCases {
                let versions = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: scratch[place]! + "/store")) as? [[String: Any]])
                #expect(versions.compactMap { $0["version"] as? Int } == [2, 3], "\(place): \(versions)")
            }
        }
    }

    @Test("assetfs --help lists the shared options once; a shared option without its value is a usage error")
    func helpAndUsage() throws {
        let help = try assetfsOK(["--help"], store: nil).stdout
        #expect(help.components(separatedBy: "--store <store>").count - 1 == 2, "usage line and options list: \(help)")
        #expect(help.components(separatedBy: "-q, --quiet").count - 1 == 1, "\(help)")
        let missing = try assetfs(["--store"], store: nil)
        #expect(missing.status == 2 && missing.stderr.contains("--store"), "\(missing.describe(["--store"]))")
        let unknown = try assetfs(["--stor", "x", "versions", "data"], store: nil)
        #expect(unknown.status == 2 && unknown.stderr.contains("--stor"), "\(unknown.describe(["--stor"]))")
    }
}

/// Fails when `assetfs --help` (or `assetfs workspace --help`) lists a subcommand that no step runs.
private func requireEverySubcommand(in steps: [Step]) throws {
    func subcommands(_ args: [String]) throws -> [String] {
        let help = try assetfsOK(args + ["--help"], store: nil).stdout
        let section = help.components(separatedBy: "SUBCOMMANDS:").last ?? ""
        return section.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return nil }
            return line.split(separator: " ").first.map(String.init)
        }.filter { $0 != "See" && $0 != "help" }
    }
    let top = try subcommands([])
    #expect(top.count >= 20, "could not read the subcommands from assetfs --help: \(top)")
    for name in top where name != "workspace" {
        #expect(steps.contains { $0.args.first == name }, "no step runs `assetfs \(name)`: add one to the table")
    }
    for name in try subcommands(["workspace"]) {
        #expect(steps.contains { $0.args.prefix(2) == ["workspace", name] }, "no step runs `assetfs workspace \(name)`")
    }
}

/// Output with the form's own paths, times and pids replaced, so that the forms can be compared.
private func normalize(_ text: String, own: String) -> String {
    var s = text.replacingOccurrences(of: own, with: "DIR")
    let patterns = [
        (#"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?Z"#, "TIME"),
        (#"pid \d+"#, "pid PID"),
    ]
    for (pattern, replacement) in patterns {
        s = s.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
    }
    return s
}

@Suite("assetfs store URLs")
struct StoreURLTests {
    @Test("file:// URLs name local stores; s3:// and unknown schemes are usage errors that create nothing")
    func storeURLs() throws {
        try withTemporaryDirectory("store-urls") { dir in
            let store = try initStore(dir)
            try makeDataset(dir + "/src", seed: 60)
            try assetfsOK(["import", "data", dir + "/src"], store: store)
            let viaURL = try assetfsOK(["versions", "data", "--json", "--store", "file://" + store], store: nil)
            let viaPath = try assetfsOK(["versions", "data", "--json"], store: store)
            #expect(viaURL.stdout == viaPath.stdout)

            let cwd = FileManager.default.currentDirectoryPath
            let url = "ftp://host/store"
            for args in [["init", "--store", url], ["--store", url, "versions", "data"]] {
                let refused = try assetfs(args, store: nil)
                #expect(refused.status == 2 && refused.stderrLines.count == 1 && refused.stderr.contains("ftp:"), "\(refused.describe(args))")
            }
            #expect(!FileManager.default.fileExists(atPath: cwd + "/ftp:"), "a directory named ftp: was created")

            // An s3:// store without what it needs is a usage error that says what to add, and creates nothing.
            let unset = ["AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "", "AWS_ACCESS_KEY_ID": "", "AWS_PROFILE": "",
                         "AWS_CONFIG_FILE": dir + "/none", "AWS_SHARED_CREDENTIALS_FILE": dir + "/none"]
            let s3 = "s3://team-data/assets"
            for (args, hint) in [(["init", "--store", s3], "--catalog"), (["--store", s3, "versions", "data"], "AWS_ENDPOINT_URL"),
                                 (["init", "--store", s3, "--catalog", "postgresql://me:hunter2@db/assets"], "~/.pgpass")] {
                let refused = try assetfs(args, store: nil, environment: unset)
                #expect(refused.status == 2 && refused.stderrLines.count == 1 && refused.stderr.contains(hint), "\(refused.describe(args))")
                #expect(!refused.stderr.contains("hunter2"), "a password was printed")
            }
            #expect(!FileManager.default.fileExists(atPath: cwd + "/s3:"), "a directory named s3: was created")
        }
    }
}

@Suite("assetfs workspace hosts")
struct WorkspaceHostTests {
    @Test("workspace list names the host that holds each workspace's changes; rows from before hosts were recorded show none")
    func listShowsHost() throws {
        try withTemporaryDirectory("workspace-host") { dir in
            let store = try initStore(dir)
            try makeDataset(dir + "/src", seed: 70)
            try assetfsOK(["import", "data", dir + "/src"], store: store)
            try assetfsOK(["workspace", "create", "data", "exp"], store: store)
            var name = [CChar](repeating: 0, count: 256)
            _ = gethostname(&name, 255)
            let host = String(cString: name)
            let listed = try #require(try json(try assetfsOK(["workspace", "list", "--json"], store: store)) as? [[String: Any]])
            #expect(listed.count == 1 && listed[0]["host"] as? String == host, "\(listed)")
            let table = try assetfsOK(["workspace", "list"], store: store).stdout.split(separator: "\n")
            #expect(table.first?.hasSuffix("HOST") == true && table.last?.hasSuffix(host) == true, "\(table)")

            // A row written before the host was recorded (what migration 0004 leaves for older workspaces).
            let cleared = try sqlite3CLI(store + "/catalog.sqlite", "UPDATE workspaces SET host = ''")
            #expect(cleared.status == 0, "\(cleared.stderr)")
            let old = try assetfsOK(["workspace", "list"], store: store).stdout.split(separator: "\n")
            #expect(old.last?.hasSuffix("  -") == true, "\(old)")
        }
    }
}
