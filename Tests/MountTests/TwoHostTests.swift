import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One shared store used from two hosts that reach its servers over a network: each host is a network
/// namespace (its own host directory, disk cache and mount), the servers run in host A's namespace.
@Suite("Two hosts in two network namespaces")
struct TwoHostTests {
    @Test("import on A reads byte-identical on B's mount within 2 s; concurrent imports from A and B get distinct numbers; gc on A while B imports and a workspace has changes loses nothing")
    func twoHosts() throws {
        try withTemporaryDirectory("two-hosts") { dir in
            let net = try TwoHostNetwork()
            defer { net.close() }
            let servers = try SharedServers.dedicated(address: net.addressA, namespace: net.a)
            defer { servers.stopDedicated() }
            let name = servers.uniqueName()
            let store = "s3://\(servers.s3.bucket)/\(name)"
            let catalog = try servers.newDatabase(name)
            let mountB = dir + "/mnt-b"
            try FileManager.default.createDirectory(atPath: mountB, withIntermediateDirectories: true)
            defer {
                if MountInfo.isMounted(mountB) {
                    _ = try? runForOutput([Paths.assetfs, "umount", mountB], timeout: 20)
                    if MountInfo.isMounted(mountB) { _ = try? runForOutput(["fusermount3", "-u", "-z", mountB]) }
                }
            }

            // Each host has its own network namespace and its own host name (a UTS namespace), so sessions and
            // workspaces record which host they belong to.
            func command(_ host: String, _ args: [String]) -> [String] {
                inNamespace(host == "a" ? net.a : net.b)
                    + ["unshare", "--uts", "--", "sh", "-c", "hostname assetfs-host-\(host) && exec \"$0\" \"$@\"", Paths.assetfs] + args
            }
            func environment(_ host: String) -> [String: String] {
                servers.s3Environment.merging(SharedStoreHandle.hostEnvironment(dir, host: host)) { $1 }.merging(["ASSETFS_STORE": store]) { $1 }
            }
            func on(_ host: String, _ args: [String], timeout: Double = 120) throws -> ProcessResult {
                try ChildProcess.spawn(command(host, args), scratch: dir, environment: environment(host)).wait(timeout: timeout)
            }
            func ok(_ host: String, _ args: [String]) throws -> ProcessResult {
                let r = try on(host, args)
                guard r.succeeded else { throw TestFailure("host \(host): \(r)") }
                return r
            }

            // Host B cannot reach anything but host A's namespace: the root namespace's loopback is not there.
            let isolated = try ChildProcess.spawn(inNamespace(net.b) + ["curl", "-s", "--max-time", "2", "http://127.0.0.1:\(servers.postgres.port)"],
                                                  scratch: dir).wait(timeout: 10)
            #expect(!isolated.succeeded, "host B reached 127.0.0.1 of another namespace")

            try ok("a", ["init", "--catalog", catalog])
            try ok("b", ["mount", mountB, "--background"])
            for (i, seed) in [(1, 11), (2, 22), (3, 33)] {
                try writeSourceFile(dir + "/src\(i)", "big.bin", randomBytes(3_000_000 + i, seed: UInt64(seed)), mtime: 1_700_000_000)
                try writeSourceFile(dir + "/src\(i)", "notes/\(i).txt", Array("source \(i)\n".utf8), mtime: 1_700_000_000)
            }

            // Import on A; B's mount reads it byte for byte within 2 s.
            #expect(try ok("a", ["import", "data", dir + "/src1", "-m", "from A"]).out == "data v1\n")
            let imported = Date()
            let shown = poll(seconds: 5) { FileManager.default.fileExists(atPath: mountB + "/data/v1/big.bin") }
            let seen = Date().timeIntervalSince(imported)
            #expect(shown != nil && seen <= 2, "v1 showed on host B after \(seen) s")
            #expect(sameBytes(try readAll(mountB + "/data/v1/big.bin"), try readAll(dir + "/src1/big.bin")))
            #expect(sameBytes(try readAll(mountB + "/data/v1/notes/1.txt"), Array("source 1\n".utf8)))

            // Concurrent imports from both hosts into one asset.
            let fromA = try ChildProcess.spawn(command("a", ["import", "data", dir + "/src2"]), scratch: dir, environment: environment("a"))
            let fromB = try on("b", ["import", "data", dir + "/src3"])
            let resultA = fromA.wait(timeout: 120)
            #expect(resultA.succeeded && fromB.succeeded, "A: \(resultA)\nB: \(fromB)")
            let numbers = [resultA.out, fromB.out].compactMap { parseVersionLine($0, asset: "data") }
            #expect(Set(numbers) == [2, 3], "concurrent imports got \(numbers)")
            for (source, number) in zip(["src2", "src3"], numbers) {
                try ok("a", ["export", "data@v\(number)", dir + "/out-\(source)"])
                #expect(sameBytes(try readAll(dir + "/out-\(source)/big.bin"), try readAll(dir + "/\(source)/big.bin")), "data@v\(number) is \(source)")
            }

            // A workspace with changes on B, an import running on B, gc on A meanwhile: nothing is lost.
            try ok("b", ["workspace", "create", "data", "ws"])
            let listed = try ok("a", ["workspace", "list", "--json"])
            let rows = (try JSONSerialization.jsonObject(with: listed.stdout) as? [[String: Any]]) ?? []
            #expect(rows.contains { $0["name"] as? String == "ws" && $0["host"] as? String == "assetfs-host-b" },
                    "host A lists B's workspace with the host that holds it: \(listed.out)")
            try writeSourceFile(mountB + "/data/workspaces/ws", "added.bin", randomBytes(1_000_000, seed: 44), mtime: 1_700_000_100)
            try ok("b", ["delete", "data@v1"])
            try writeSourceFile(dir + "/src4", "big.bin", randomBytes(60_000_000, seed: 55), mtime: 1_700_000_000)
            let slowImport = try ChildProcess.spawn(command("b", ["import", "data", dir + "/src4"]), scratch: dir, environment: environment("b"))
            let gc = try on("a", ["gc", "--grace-period", "0"])
            let late = slowImport.wait(timeout: 180)
            #expect(gc.succeeded, "gc on A: \(gc)")
            #expect(late.succeeded, "the import on B beside gc: \(late)")
            // The import made a newer version meanwhile: the workspace commits on its own base, as asked.
            let committed = try ok("b", ["commit", "data/ws", "-m", "workspace from B", "--allow-diverge"])
            let wsVersion = try #require(parseVersionLine(committed.out, asset: "data"))
            try ok("a", ["export", "data@v\(wsVersion)", dir + "/out-ws"])
            #expect(sameBytes(try readAll(dir + "/out-ws/added.bin"), randomBytes(1_000_000, seed: 44)))
            let verify = try on("a", ["verify"])
            #expect(verify.succeeded, "verify after gc beside an import and a workspace: \(verify)")
            if let newest = parseVersionLine(late.out, asset: "data") {
                try ok("b", ["export", "data@v\(newest)", dir + "/out-src4"])
                #expect(sameBytes(try readAll(dir + "/out-src4/big.bin"), try readAll(dir + "/src4/big.bin")))
            }
        }
    }
}
