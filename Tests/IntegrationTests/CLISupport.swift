import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `<package root>/.build/debug/assetfs`, found from this file's path.
let assetfsBinary: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/assetfs").path
}()

struct CLIResult {
    let status: Int32
    let killedBySignal: Bool
    let stdoutData: Data
    let stderr: String
    var stdout: String { String(decoding: stdoutData, as: UTF8.self) }
    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    /// The whole invocation, for failure messages.
    func describe(_ args: [String]) -> String {
        "assetfs \(args.map { $0.count > 60 ? String($0.prefix(60)) + "..." : $0 }.joined(separator: " ")) -> status \(status)"
            + (killedBySignal ? " (signal)" : "") + "\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))"
    }
}

/// A started CLI process whose output goes to files (no pipe can fill up and block it).
final class CLIProcess {
    let process = Process()
    let args: [String]
    private let outPath: String
    private let errPath: String

    init(_ args: [String], store: String?, environment extra: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: assetfsBinary) else {
            throw TestFailure("the assetfs binary is missing at \(assetfsBinary): build it first with `swift build` (or `swift build --build-tests`)")
        }
        self.args = args
        let id = UUID().uuidString
        outPath = NSTemporaryDirectory() + "/assetfs-cli-\(id).out"
        errPath = NSTemporaryDirectory() + "/assetfs-cli-\(id).err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: assetfsBinary)
        process.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "ASSETFS_STORE")
        if let store { environment["ASSETFS_STORE"] = store }
        for (k, v) in SharedStoreRegistry.environment(for: store) { environment[k] = v }
        for (k, v) in extra { environment[k] = v }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try process.run()
    }

    func wait() -> CLIResult {
        process.waitUntilExit()
        let out = FileManager.default.contents(atPath: outPath) ?? Data()
        let err = FileManager.default.contents(atPath: errPath) ?? Data()
        unlink(outPath)
        unlink(errPath)
        return CLIResult(status: process.terminationStatus, killedBySignal: process.terminationReason == .uncaughtSignal,
                         stdoutData: out, stderr: String(decoding: err, as: UTF8.self))
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }
}

/// Runs the CLI to completion. `store` sets ASSETFS_STORE (nil: unset).
@discardableResult
func assetfs(_ args: [String], store: String?, environment: [String: String] = [:]) throws -> CLIResult {
    try CLIProcess(args, store: store, environment: environment).wait()
}

/// Runs the CLI and requires exit status 0.
@discardableResult
func assetfsOK(_ args: [String], store: String?, sourceLocation: SourceLocation = #_sourceLocation) throws -> CLIResult {
    let result = try assetfs(args, store: store)
    try #require(result.status == 0 && !result.killedBySignal, "\(result.describe(args))", sourceLocation: sourceLocation)
    return result
}

/// Parses JSON output into arrays/dictionaries.
func json(_ result: CLIResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> Any {
    do {
        return try JSONSerialization.jsonObject(with: result.stdoutData)
    } catch {
        Issue.record("output is not JSON: \(result.stdout.prefix(500))", sourceLocation: sourceLocation)
        throw error
    }
}

/// Runs `body` with a new store of `backend`, created with `init`: a local one in `dir/store`, or a shared one
/// (S3 + PostgreSQL) whose servers are let go of afterwards, however `body` ends.
func withStore(_ backend: StoreBackend, _ label: String, _ body: (_ dir: String, _ store: String) throws -> Void) throws {
    try withTemporaryDirectory("\(label)-\(backend)") { dir in
        switch backend {
        case .local:
            try body(dir, try initStore(dir))
        case .shared:
            let shared = try SharedStoreHandle(directory: dir)
            defer { shared.close() }
            try assetfsOK(["init", "--catalog", shared.catalog], store: shared.url)
            try body(dir, shared.url)
        }
    }
}

/// A new store in `dir/store`, created with `init`.
func initStore(_ dir: String) throws -> String {
    let store = dir + "/store"
    try assetfsOK(["init", "--store", store], store: nil)
    return store
}

func writeFile(_ path: String, _ content: [UInt8], mode: mode_t = 0o644) throws {
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(content).write(to: url)
    guard chmod(path, mode) == 0 else { throw TestFailure("chmod \(path) failed") }
}

func setMtime(_ path: String, seconds: Int, nanoseconds: Int) throws {
    var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
    guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw TestFailure("utimensat \(path) failed") }
}

/// Relative path -> a line describing type, mode, size, ns mtime and content hash or link target.
func treeSignature(_ root: String) throws -> [String: String] {
    var out: [String: String] = [:]
    guard let walker = FileManager.default.enumerator(atPath: root) else { throw TestFailure("cannot walk \(root)") }
    while let rel = walker.nextObject() as? String {
        let path = root + "/" + rel
        var st = stat()
        guard lstat(path, &st) == 0 else { throw TestFailure("lstat \(path) failed") }
        let mtime = "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        let mode = String(st.st_mode & 0o7777, radix: 8)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            let bytes = try readWhole(path)
            out[rel] = "file \(mode) \(bytes.count) \(mtime) \(ContentHash.of(bytes).hex)"
        case S_IFDIR:
            out[rel] = "dir \(mode) \(mtime)"
        case S_IFLNK:
            out[rel] = "link -> \(try FileManager.default.destinationOfSymbolicLink(atPath: path)) \(mtime)"
        default:
            out[rel] = "special"
        }
    }
    return out
}

/// Entries present in only one tree or different between them.
func signatureDifferences(_ expected: [String: String], _ actual: [String: String]) -> [String] {
    var out: [String] = []
    for (k, v) in expected.sorted(by: { $0.key < $1.key }) where actual[k] != v {
        out.append("\(k): expected \(v), got \(actual[k] ?? "nothing")")
    }
    for k in actual.keys.sorted() where expected[k] == nil { out.append("\(k): unexpected \(actual[k]!)") }
    return out
}

/// The pack files of a store with their sizes (a shared store's pack objects, by their s3:// names).
func packFiles(_ store: String) throws -> [(path: String, size: Int)] {
    if store.hasPrefix("s3://") { return try SharedStoreObjects.packs(store) }
    return regularFiles(under: store + "/packs").filter { $0.hasSuffix(".pack") }.map { path in
        var st = stat()
        _ = stat(path, &st)
        return (path, Int(st.st_size))
    }
}

/// A small dataset: nested directories, text and binary files, modes, ns mtimes and a symlink.
func makeDataset(_ root: String, seed: UInt64) throws {
    try writeFile(root + "/big.bin", randomBytes(3_000_000, seed: seed))
    try writeFile(root + "/README.txt", Array("dataset \(seed)\n".utf8))
    try writeFile(root + "/shards/0001.csv", textBytes(200_000, seed: seed + 1), mode: 0o640)
    try writeFile(root + "/shards/0002.csv", textBytes(150_000, seed: seed + 2), mode: 0o600)
    try writeFile(root + "/tools/run.sh", Array("#!/bin/sh\nexit 0\n".utf8), mode: 0o755)
    try writeFile(root + "/empty", [])
    guard symlink("shards/0001.csv", root + "/first-shard") == 0 else { throw TestFailure("symlink failed") }
    for (i, p) in ["big.bin", "README.txt", "shards/0001.csv", "shards/0002.csv", "tools/run.sh", "empty", "first-shard", "shards", "tools"].enumerated() {
        try setMtime(root + "/" + p, seconds: 1_650_000_000 + i * 7, nanoseconds: 987_654_321 - i)
    }
}
