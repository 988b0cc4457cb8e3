import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Mount layout: assets, versions, latest and tags")
struct LayoutTests {
    @Test("ls shows assets, versions, latest and tags; links resolve; new versions and tag moves show within 2 s", arguments: StoreBackend.allCases)
    func layoutAndLiveUpdates(backend: StoreBackend) throws {
        let f = try MountFixture("layout-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()

        // `ls` (a real child process) at the root and in an asset.
        let root = f.run(["ls", "-1", f.mnt])
        #expect(root.succeeded, "\(root)")
        #expect(root.lines.sorted() == ["data", "models"], "ls MNT: \(root)")
        let asset = f.run(["ls", "-1", f.path("data")])
        #expect(asset.succeeded, "\(asset)")
        #expect(withoutWorkspaces(asset.lines) == ["first", "latest", "v1", "v2"], "ls MNT/data: \(asset)")

        try f.io("readlink latest and tag") {
            #expect(try readLink(f.path("data/latest")) == "v2")
            #expect(try readLink(f.path("data/first")) == "v1")
            #expect(try readLink(f.path("models/latest")) == "v1")
            let st = try lstatPath(f.path("data/latest"))
            #expect(st.st_mode & S_IFMT == S_IFLNK, "latest is a symlink")
            #expect(try lstatPath(f.path("data/v1")).st_mode & S_IFMT == S_IFDIR)
        }
        // Reading through the links gives the linked version's bytes.
        try f.io("read through latest and a tag") {
            let viaLatest = try readAll(f.path("data/latest/small.txt"))
            #expect(sameBytes(viaLatest, data.v2.files["small.txt"]!.bytes), "latest/small.txt is v2's")
            let viaTag = try readAll(f.path("data/first/small.txt"))
            #expect(sameBytes(viaTag, data.v1.files["small.txt"]!.bytes), "first/small.txt is v1's")
        }
        // Unknown names are ENOENT, not EIO.
        f.io("lookup of missing names") {
            for missing in ["nosuch", "data/v3", "data/v0", "data/nosuchtag", "data/v1/nosuch", "data/v01"] {
                var st = stat()
                let rc = lstat(f.path(missing), &st)
                let code = errno
                #expect(rc == -1 && code == ENOENT, "lstat(\(missing)) should fail with ENOENT, got rc \(rc) errno \(code)")
            }
        }

        // A version imported while mounted appears (directory and `latest`) within ~2 s.
        try writeSourceFile(f.src, "v3-only.txt", Array("third\n".utf8), mtime: 1_700_001_000)
        let v3 = try f.importVersion("data", message: "third")
        #expect(v3 == 3)
        let appeared = try f.io("waiting for v3") {
            try poll(seconds: 4) { try listDirectory(f.path("data")).contains("v3") && (try? readLink(f.path("data/latest"))) == "v3" }
        }
        #expect(appeared != nil && appeared! <= 2.5, "v3 and latest -> v3 must show within ~2 s (took \(appeared.map { "\($0) s" } ?? "forever"))")
        try f.io("read new version") { () throws in
            #expect(sameBytes(try readAll(f.path("data/v3/v3-only.txt")), Array("third\n".utf8)))
        }

        // A new tag, then moving it, shows within ~2 s.
        let tag1 = f.cli(["tag", "data", "v1", "prod"])
        #expect(tag1.succeeded, "\(tag1)")
        let tagged = try f.io("waiting for prod -> v1") {
            try poll(seconds: 4) { try (try? readLink(f.path("data/prod"))) == "v1" && listDirectory(f.path("data")).contains("prod") }
        }
        #expect(tagged != nil && tagged! <= 2.5, "prod -> v1 must show within ~2 s (took \(tagged.map { "\($0) s" } ?? "forever"))")
        try f.io("read through prod") { () throws in
            #expect(sameBytes(try readAll(f.path("data/prod/small.txt")), data.v1.files["small.txt"]!.bytes))
        }

        let tag2 = f.cli(["tag", "data", "v2", "prod"])
        #expect(tag2.succeeded, "\(tag2)")
        let moved = f.io("waiting for prod -> v2") {
            poll(seconds: 4) { (try? readLink(f.path("data/prod"))) == "v2" }
        }
        #expect(moved != nil && moved! <= 2.5, "moving prod to v2 must show within ~2 s (took \(moved.map { "\($0) s" } ?? "forever"))")
        // Path resolution through the moved link follows it too (the entry cache is 1 s).
        let followed = f.io("read through moved prod") {
            poll(seconds: 4) { (try? readAll(f.path("data/prod/small.txt"))).map { sameBytes($0, data.v2.files["small.txt"]!.bytes) } ?? false }
        }
        #expect(followed != nil && followed! <= 2.5, "prod/small.txt must show v2's bytes within ~2 s after the move")

        let final = f.run(["ls", "-1", f.path("data")])
        #expect(withoutWorkspaces(final.lines) == ["first", "latest", "prod", "v1", "v2", "v3"], "ls MNT/data at the end: \(final)")

        // Inside a version, listing matches the source tree.
        let v2root = try f.io("list v2") { try listDirectory(f.path("data/v2")) }
        #expect(v2root == ["big.bin", "empty.txt", "labels.csv", "meta", "other.bin", "run.sh", "small.txt", "sub"])
        let sub = try f.io("list v2/sub") { try listDirectory(f.path("data/v2/sub")) }
        #expect(sub == ["deep", "emptydir", "new.txt", "notes.md"])
        let v1sub = try f.io("list v1/sub") { try listDirectory(f.path("data/v1/sub")) }
        #expect(v1sub == ["deep", "emptydir", "notes.md"])
        try f.unmount()
    }
}

/// The asset directory may also hold `workspaces` (a reserved name, for writable workspaces); the version and
/// link layout is what these tests check.
func withoutWorkspaces(_ names: [String]) -> [String] { names.filter { $0 != "workspaces" }.sorted() }
