import Foundation

/// Runs external commands with stdout and stderr sent to log files: a pipe left unread can fill up and stall a
/// verbose tool, and the logs stay available for inspection after the run.
struct CommandRunner {
    let logDirectory: String
    let environment: [String: String]

    /// Runs to completion and returns wall-clock seconds and stdout; throws with the stderr tail on failure.
    @discardableResult
    func run(_ executable: String, _ arguments: [String], label: String) throws -> (seconds: Double, output: String) {
        let outPath = logDirectory + "/" + label + ".out"
        let errPath = logDirectory + "/" + label + ".err"
        for path in [outPath, errPath] where !FileManager.default.createFile(atPath: path, contents: nil) {
            throw BenchError("cannot create log file \(path)")
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer { try? out.close(); try? err.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let (_, seconds) = try timed {
            try process.run()
            process.waitUntilExit()
        }
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            let tail = (stderr.isEmpty ? output : stderr).split(separator: "\n", omittingEmptySubsequences: false)
                .suffix(40).joined(separator: "\n")
            let commandLine = ([executable] + arguments).joined(separator: " ")
            throw BenchError("""
                command failed (status \(process.terminationStatus)): \(commandLine)
                \(tail)
                (full logs: \(outPath), \(errPath))
                """)
        }
        return (seconds, output)
    }
}

/// One contender in the import comparison: a repository that receives every version of WORK/src.
protocol Importer {
    var name: String { get }
    var repository: String { get }
    func create(_ runner: CommandRunner) throws
    /// Imports the current contents of `source` as version `version`; returns wall-clock seconds.
    func importVersion(_ version: Int, source: String, _ runner: CommandRunner) throws -> Double
}

struct AssetfsImporter: Importer {
    let binary: String
    let repository: String
    /// "assetfs", or "assetfs-old" for the `--baseline` binary.
    var name = "assetfs"

    func create(_ runner: CommandRunner) throws {
        try runner.run(binary, ["init", "--store", repository], label: "\(name)-init")
    }

    func importVersion(_ version: Int, source: String, _ runner: CommandRunner) throws -> Double {
        let result = try runner.run(binary, ["import", "bench", source, "-m", "v\(version)", "--store", repository],
                                    label: "\(name)-import-v\(version)")
        if let line = result.output.split(separator: "\n").last { progress("  \(name): \(line)") }
        return result.seconds
    }
}

/// Borg with its defaults (lz4 compression, files cache keyed by ctime, size and inode), no encryption.
struct BorgImporter: Importer {
    let binary: String
    let repository: String
    var name: String { "borg" }

    func create(_ runner: CommandRunner) throws {
        try runner.run(binary, ["init", "--encryption=none", repository], label: "borg-init")
    }

    func importVersion(_ version: Int, source: String, _ runner: CommandRunner) throws -> Double {
        try runner.run(binary, ["create", "--compression", "lz4", "\(repository)::v\(version)", source],
                       label: "borg-create-v\(version)").seconds
    }
}

/// Restic with its defaults (repository format 2, auto compression); the previous snapshot of the same path
/// is picked as parent automatically, so unchanged files are skipped by metadata.
struct ResticImporter: Importer {
    let binary: String
    let repository: String
    var name: String { "restic" }

    func create(_ runner: CommandRunner) throws {
        try runner.run(binary, ["init", "--repo", repository], label: "restic-init")
    }

    func importVersion(_ version: Int, source: String, _ runner: CommandRunner) throws -> Double {
        try runner.run(binary, ["backup", "--repo", repository, "--tag", "v\(version)", source],
                       label: "restic-backup-v\(version)").seconds
    }
}

/// Environment for the peers: no prompts, a fixed restic password, and their caches and key material kept in
/// the work directory instead of the user's home (cache sizes are not counted in repository sizes).
func peerEnvironment(work: String) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"
    env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
    env["BORG_BASE_DIR"] = work + "/cache/borg"
    env["RESTIC_PASSWORD"] = "bench"
    env["RESTIC_CACHE_DIR"] = work + "/cache/restic"
    return env
}

/// First line of `tool --version`-style output, for the report header; nil if it cannot be run.
func toolVersion(_ binary: String, _ arguments: [String], _ runner: CommandRunner, label: String) -> String? {
    guard let result = try? runner.run(binary, arguments, label: label) else { return nil }
    return result.output.split(separator: "\n").first.map(String.init)
}
