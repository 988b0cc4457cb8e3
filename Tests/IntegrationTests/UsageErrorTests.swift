import AssetTestSupport
import Foundation
import Testing

/// Checks the usage-error contract: exit 2, no crash, one error line naming the problem (ArgumentParser may add its
/// "Usage:" and "See '... --help'" hint lines after it), no stack trace.
private func expectUsageError(_ args: [String], store: String?, mentioning needle: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let result = try assetfs(args, store: store)
    #expect(!result.killedBySignal, "crashed: \(result.describe(args))", sourceLocation: sourceLocation)
    #expect(result.status == 2, "\(result.describe(args))", sourceLocation: sourceLocation)
    let lines = result.stderrLines
    let errorLines = lines.filter { $0.lowercased().contains("error") }
    #expect(errorLines.count == 1, "expected one error line: \(result.describe(args))", sourceLocation: sourceLocation)
    if let line = errorLines.first {
        #expect(line.contains(needle), "error line does not mention \(needle): \(line.prefix(300))", sourceLocation: sourceLocation)
        #expect(line.utf8.count < 400, "error line is \(line.utf8.count) bytes long", sourceLocation: sourceLocation)
    }
    for line in lines where !line.lowercased().contains("error") {
        let hint = line.hasPrefix("Usage:") || line.contains("--help")
        #expect(hint, "unexpected stderr line: \(line.prefix(300))", sourceLocation: sourceLocation)
    }
    for marker in ["Fatal error", "Stack dump", "backtrace", "Backtrace", "Crash", "0x0000"] {
        #expect(!result.stderr.contains(marker), "stack trace in stderr: \(result.describe(args))", sourceLocation: sourceLocation)
    }
    #expect(result.stdout.isEmpty, "stdout: \(result.stdout.prefix(300))", sourceLocation: sourceLocation)
}

/// A store holding data@v1, so that refs fail on their syntax, not on a missing asset.
private func storeWithData(_ dir: String) throws -> String {
    let store = try initStore(dir)
    try writeFile(dir + "/src/x", Array("x".utf8))
    try assetfsOK(["import", "data", dir + "/src"], store: store)
    return store
}

@Suite("assetfs usage errors")
struct UsageErrorTests {
    static let badNames = ["a/b", "..", String(repeating: "n", count: 10_000), "a b", "data\u{1B}[31m"]

    @Test("bad asset names are usage errors", arguments: badNames)
    func badAssetNames(_ name: String) throws {
        try withTemporaryDirectory("names") { dir in
            let store = try storeWithData(dir)
            for args in [["import", name, dir + "/src"], ["versions", name], ["tag", name, "v1", "prod"], ["untag", name, "prod"]] {
                try expectUsageError(args, store: store, mentioning: "asset name")
            }
            // The name was not created.
            let assets = try json(try assetfsOK(["assets", "--json"], store: store)) as? [[String: Any]]
            #expect(assets?.map { $0["name"] as? String } == ["data"])
        }
    }

    @Test("reserved and version-like tag names are usage errors", arguments: ["latest", "v3", "workspaces", "v0", "a/b", ".."])
    func badTagNames(_ tag: String) throws {
        try withTemporaryDirectory("tags") { dir in
            let store = try storeWithData(dir)
            try expectUsageError(["tag", "data", "v1", tag], store: store, mentioning: "tag name")
            try expectUsageError(["import", "data", dir + "/src", "--tag", tag], store: store, mentioning: "tag name")
            try expectUsageError(["untag", "data", tag], store: store, mentioning: "tag name")
            let versions = try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]]
            #expect(versions?.count == 1, "a refused import still created a version")
        }
    }

    @Test("bad references are usage errors", arguments: ["data@v0", "data@v-1", "data@v99999999999999999999", "data@v1:../x", "a/b@v1"])
    func badRefs(_ ref: String) throws {
        try withTemporaryDirectory("refs") { dir in
            let store = try storeWithData(dir)
            let withPath = ref.contains(":") ? ref : ref + ":x"
            try expectUsageError(["show", ref], store: store, mentioning: "invalid reference")
            try expectUsageError(["cat", withPath], store: store, mentioning: "invalid reference")
            try expectUsageError(["ls", ref], store: store, mentioning: "invalid reference")
            try expectUsageError(["export", ref, dir + "/out"], store: store, mentioning: "invalid reference")
            try expectUsageError(["diff", "data@v1", ref], store: store, mentioning: "invalid reference")
            try expectUsageError(["verify", ref], store: store, mentioning: "invalid reference")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        }
    }

    @Test("bad version arguments to tag are usage errors", arguments: ["v0", "v-1", "12", "latest", "v99999999999999999999"])
    func badTagVersions(_ version: String) throws {
        try withTemporaryDirectory("tagversions") { dir in
            let store = try storeWithData(dir)
            let result = try assetfs(["tag", "data", version, "prod"], store: store)
            #expect(result.status == 2 && !result.killedBySignal, "\(result.describe(["tag", "data", version, "prod"]))")
        }
    }
}
