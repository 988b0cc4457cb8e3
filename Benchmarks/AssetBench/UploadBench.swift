#if canImport(Glibc)
import Glibc
#endif
import AssetObjectStore
import AssetStore
import Foundation

/// `AssetBench upload`: one PUT against a multipart upload of the same object, by object size, through
/// `S3PackStorage` into SeaweedFS on loopback (started by scripts/shared-servers.sh): the measurement behind
/// `MultipartPolicy`'s threshold. Objects are random bytes (as packs of compressed or float data are), each size
/// and way uploaded `repeats` times under fresh names; the table shows the median throughput.
enum UploadBench {
    static let sizesMiB = [8, 16, 32, 64, 128, 256]
    static let repeats = 3

    static func main(_ options: Options) -> Int32 {
        do {
            try run(options)
            return 0
        } catch {
            progress("upload benchmark failed: \(error)")
            return 1
        }
    }

    static func run(_ options: Options) throws {
        guard geteuid() == 0 else { throw BenchError("the upload benchmark starts PostgreSQL and SeaweedFS as other users: run it as root") }
        let work = FileIO.absolute(options.work)
        let script = FileIO.absolute("scripts/shared-servers.sh")
        guard FileIO.exists(script) else { throw BenchError("run from the repository root (scripts/shared-servers.sh not found)") }
        let runner = CommandRunner(logDirectory: "/tmp", environment: ProcessInfo.processInfo.environment)
        if FileIO.exists(work + "/servers") { _ = try? Spawn.run(runner: runner, "/bin/bash", [script, "stop", work + "/servers"], label: "upload-stop-old") }
        try FileIO.removeIfPresent(work)
        try FileIO.makeDirectory(work + "/scratch")
        let started = try Spawn.run(runner: runner, "/bin/bash", [script, "start", work + "/servers"], label: "upload-servers-start")
        defer { _ = try? Spawn.run(runner: runner, "/bin/bash", [script, "stop", work + "/servers"], label: "upload-servers-stop") }
        let env = SharedBench.serverSettings(started.output)
        guard let endpoint = env["AWS_ENDPOINT_URL"], let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"] else {
            throw BenchError("scripts/shared-servers.sh printed no settings: \(started.output)")
        }
        let storage = S3PackStorage(settings: S3Settings(endpoint: endpoint, accessKey: key, secretKey: secret),
                                    bucket: "assets", prefix: "uploadbench", scratchDirectory: work + "/scratch")
        var ways: [(label: String, policy: MultipartPolicy)] = [("one PUT", MultipartPolicy())]
        ways[0].policy.threshold = .max
        for (part, width) in [(8, 4), (16, 4), (16, 8)] {
            var p = MultipartPolicy()
            p.threshold = 0
            p.partSize = UInt64(part) << 20
            p.partsInFlight = width
            ways.append(("parts of \(part) MiB, \(width) at a time", p))
        }
        var table = MarkdownTable(["object"] + ways.map(\.label) + ["multipart / one PUT (best)"])
        var serial: UInt64 = 0
        for size in sizesMiB {
            let source = try PackSource.scratch(in: work + "/scratch", contents: randomBytes(size << 20, seed: UInt64(size)))
            defer { source.discard() }
            var medians: [Double] = []
            for way in ways {
                storage.multipart = way.policy
                var rates: [Double] = []
                for _ in 0..<repeats {
                    serial += 1
                    let id = ContentHash.of(Array("upload \(serial) \(size)".utf8))
                    let (_, seconds) = try timed { try storage.put(id, from: source) }
                    rates.append(Double(size << 20) / 1e6 / seconds)
                    try storage.delete(id)
                }
                medians.append(rates.sorted()[rates.count / 2])
            }
            progress("\(size) MiB: " + zip(ways, medians).map { "\($0.label) \(fixed($1, 0)) MB/s" }.joined(separator: ", "))
            table.add(["\(size) MiB"] + medians.map { "\(fixed($0, 0)) MB/s" } + [fixed(medians.dropFirst().max()! / medians[0], 2) + "x"])
        }
        print("""
            ## Uploads: one PUT or multipart (SeaweedFS on loopback)

            Command: `swift run -c release AssetBench upload`; median of \(repeats) uploads of random bytes per cell.

            """)
        print(table.render())
    }

    private static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = rng.next() }
        }
        return out
    }
}
