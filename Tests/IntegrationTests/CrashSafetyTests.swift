import AssetTestSupport
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The bytes of the file that changes in every iteration of the crash test.
private func freshBytes(_ iteration: Int) -> [UInt8] { randomBytes(10_000_000, seed: 7_000 + UInt64(iteration)) }

@Suite("assetfs crash safety")
struct CrashSafetyTests {
    @Test("an import killed with SIGKILL at a random moment leaves only complete versions and a store that verifies")
    func killedImports() throws {
        try withTemporaryDirectory("crash") { dir in
            let store = try initStore(dir)
            let source = dir + "/src"
            // ~20 MB that never changes, plus ~10 MB and a marker rewritten in every iteration: ~30 MB per import.
            try writeFile(source + "/static/a.bin", randomBytes(8_000_000, seed: 1))
            try writeFile(source + "/static/b.bin", randomBytes(8_000_000, seed: 2))
            for i in 0..<20 { try writeFile(source + "/static/text/part-\(i).csv", textBytes(200_000, seed: 100 + UInt64(i))) }
            let staticSignature = try treeSignature(source + "/static")

            var completed: [Int: Int] = [:]  // version -> iteration, for imports that reported success
            var generator = SystemRandomNumberGenerator()
            var log: [String] = []
            for iteration in 0..<10 {
                try writeFile(source + "/fresh.bin", freshBytes(iteration))
                try writeFile(source + "/marker.txt", Array("iteration \(iteration)\n".utf8))
                let delay = UInt32.random(in: 0...300_000, using: &generator)
                let process = try CLIProcess(["import", "data", source, "--rehash"], store: store)
                usleep(delay)
                process.kill()
                let result = process.wait()
                log.append("iteration \(iteration): kill after \(delay / 1000) ms -> " + (result.killedBySignal ? "killed" : "exit \(result.status)"))
                if !result.killedBySignal {
                    #expect(result.status == 0, "\(result.describe(process.args))")
                    let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                    if let n = Int(line.dropFirst("data v".count)), line.hasPrefix("data v") { completed[n] = iteration }
                }

                let verify = try assetfs(["verify"], store: store)
                #expect(verify.status == 0, "after \(log.last!): \(verify.describe(["verify"]))")
                let versions = try assetfs(["versions", "data", "--json"], store: store)
                if versions.status == 0 {
                    let listed = try #require(try json(versions) as? [[String: Any]])
                    let numbers = listed.compactMap { $0["version"] as? Int }
                    #expect(Set(completed.keys).isSubset(of: Set(numbers)), "a completed version is missing after \(log.last!)")
                    #expect(listed.allSatisfy { $0["files"] as? Int == 24 }, "a listed version is incomplete after \(log.last!)")
                } else {
                    // Only possible while no import has completed yet.
                    #expect(completed.isEmpty && versions.status == 1, "\(versions.describe(["versions"]))")
                }
            }

            // One more import without interruption: the store still works after all the kills.
            try writeFile(source + "/fresh.bin", freshBytes(10))
            try writeFile(source + "/marker.txt", Array("iteration 10\n".utf8))
            let last = try assetfsOK(["import", "data", source, "--rehash"], store: store)
            let lastNumber = try #require(Int(last.stdout.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("data v".count)))
            completed[lastNumber] = 10

            // Every listed version is complete and equals what its source held at that iteration.
            let listed = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            let numbers = listed.compactMap { $0["version"] as? Int }
            #expect(numbers == numbers.sorted() && Set(completed.keys).isSubset(of: Set(numbers)))
            var previousIteration = -1
            for number in numbers {
                let out = dir + "/out-v\(number)"
                try assetfsOK(["export", "data@v\(number)", out], store: store)
                let marker = String(decoding: try readWhole(out + "/marker.txt"), as: UTF8.self)
                let iteration = try #require(Int(marker.dropFirst("iteration ".count).trimmingCharacters(in: .whitespacesAndNewlines)),
                                             "v\(number) has marker \(marker.debugDescription)")
                if let known = completed[number] { #expect(known == iteration, "v\(number) holds iteration \(iteration), expected \(known)") }
                #expect(iteration > previousIteration, "versions out of order: v\(number) holds iteration \(iteration)")
                previousIteration = iteration
                #expect(try readWhole(out + "/fresh.bin") == freshBytes(iteration), "v\(number): fresh.bin differs from iteration \(iteration)")
                #expect(signatureDifferences(staticSignature, try treeSignature(out + "/static")) == [], "v\(number): static tree differs")
                #expect(Set(try FileManager.default.contentsOfDirectory(atPath: out)) == ["static", "fresh.bin", "marker.txt"])
                removeTree(out)
            }

            // gc cleans up what the killed imports left behind, and the store still verifies.
            try assetfsOK(["gc"], store: store)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store + "/tmp").isEmpty)
            try assetfsOK(["verify"], store: store)
            let after = try #require(try json(try assetfsOK(["versions", "data", "--json"], store: store)) as? [[String: Any]])
            #expect(after.compactMap { $0["version"] as? Int } == numbers)
        }
    }
}
