import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Chunks moved by gc")
struct MovedChunkTests {
    @Test("a file opened before gc rewrites its pack reads correctly after: the mount looks the chunks up again")
    func openFileSurvivesPackRewrite() throws {
        let f = try MountFixture("moved-chunks")
        defer { f.close() }
        // v1 = {a 12 MB, b 4 MB} in one pack; v2 = {b}. Deleting v1 leaves that pack a quarter live: gc rewrites
        // it, moving b's chunks to a new pack and deleting the old one.
        let a = randomBytes(12_000_000, seed: 91), b = randomBytes(4_000_000, seed: 92)
        try writeSourceFile(f.src, "a.bin", a, mtime: 1_700_000_000)
        try writeSourceFile(f.src, "b.bin", b, mtime: 1_700_000_001)
        try f.importVersion("data")
        #expect(unlink(f.src + "/a.bin") == 0)
        try f.importVersion("data")
        try f.mount()

        // Open (the daemon fetches b's chunk list, with the old pack) but read nothing yet: no pack is open.
        let fd = try f.io("open data/v2/b.bin") { () -> Int32 in
            let fd = open(f.path("data/v2/b.bin"), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SysError(op: "open", path: f.path("data/v2/b.bin"), code: errno) }
            return fd
        }
        defer { close(fd) }
        try f.cliOK(["delete", "data@v1"])
        let gc = try f.cliOK(["gc"])
        #expect(gc.out.contains("rewrote 1"), "the test needs a rewrite: \(gc.out)")

        let got = try f.io("read data/v2/b.bin after gc") { try readAll(fd: fd, path: f.path("data/v2/b.bin")) }
        #expect(got.count == b.count && got == b, "read \(got.count) bytes after gc moved the file's chunks")
    }
}
