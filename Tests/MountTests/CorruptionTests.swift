import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Damaged packs")
struct CorruptionTests {
    @Test("a flipped byte in a pack makes that file answer EIO while other files still read correctly")
    func flippedByteGivesEIO() throws {
        let f = try MountFixture("corrupt")
        defer { f.close() }
        // The victim alone first, so its chunks live in a pack of their own; then a second file in v2.
        let victim = randomBytes(3_000_000, seed: 101)
        let other = randomBytes(2_000_000, seed: 102)
        try writeSourceFile(f.src, "victim.bin", victim, mtime: 1_700_000_000)
        try f.importVersion("data")
        let firstPacks = try packFiles(f.store)
        try #require(firstPacks.count == 1, "after importing one file the store should hold one pack: \(firstPacks)")
        try writeSourceFile(f.src, "other.bin", other, mtime: 1_700_000_001)
        try f.importVersion("data")
        let allPacks = try packFiles(f.store)
        #expect(allPacks.count == 2, "v2's new data should be in a second pack: \(allPacks)")

        // Find a known incompressible run of the victim inside the pack (random data is stored raw) and flip a
        // byte in the middle of it: the middle of one chunk record's payload.
        let pack = firstPacks[0]
        guard var packBytes = FileManager.default.contents(atPath: pack) else { throw TestFailure("cannot read \(pack)") }
        let victimOffset = 1_500_000
        let needle = Data(victim[victimOffset..<(victimOffset + 64)])
        guard let found = packBytes.range(of: needle) else {
            throw TestFailure("the victim's bytes at offset \(victimOffset) were not found raw in \(pack)")
        }
        #expect(packBytes.range(of: needle, in: found.upperBound..<packBytes.endIndex) == nil, "the 64-byte needle is unique")
        let flip = found.lowerBound + 32
        packBytes[flip] ^= 0xFF
        try packBytes.write(to: URL(fileURLWithPath: pack))
        #expect(FileManager.default.contents(atPath: pack)?[flip] == packBytes[flip], "the flipped byte is on disk")

        // A fresh mount, so nothing is cached.
        try f.mount()

        // Whole-file read: EIO.
        try f.io("read damaged file") {
            for version in ["v1", "v2"] {
                do {
                    let got = try readAll(f.path("data/\(version)/victim.bin"))
                    Issue.record("reading data/\(version)/victim.bin succeeded (\(got.count) bytes, equal to source: \(sameBytes(got, victim))); expected EIO")
                } catch let e as SysError {
                    #expect(e.code == EIO, "reading data/\(version)/victim.bin: \(e), expected EIO")
                }
            }
        }
        // A small read of the damaged block (the 64 KiB block path) with O_DIRECT: EIO.
        try f.io("small read of damaged block") {
            let fd = try openRead(f.path("data/v1/victim.bin"), extraFlags: O_DIRECT_FLAG)
            defer { Glibc.close(fd) }
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 4096, 8192) == 0, let buffer = raw else { throw TestFailure("posix_memalign") }
            defer { free(buffer) }
            let n = pread(fd, buffer, 100, off_t(victimOffset))
            let code = errno
            #expect(n == -1 && code == EIO, "pread of 100 bytes over the flipped byte: rc \(n) errno \(code), expected EIO")
        }
        // A tool sees it too.
        let cat = f.run(["cat", f.path("data/v2/victim.bin")])
        #expect(!cat.succeeded && cat.err.contains("Input/output error"), "\(cat)")
        let sum = f.run(["sha256sum", f.path("data/v2/victim.bin")])
        #expect(!sum.succeeded, "sha256sum of the damaged file must fail: \(sum)")

        // The other file is untouched and still reads, and the mount still answers.
        try f.io("read undamaged file") {
            let got = try readAll(f.path("data/v2/other.bin"))
            #expect(sameBytes(got, other), "other.bin: \(firstDifference(got, other))")
            #expect(try listDirectory(f.path("data/v2")) == ["other.bin", "victim.bin"])
            #expect(try statfsPath(f.mnt).f_type == fuseSuperMagic)
        }
        let otherSum = f.run(["sha256sum", f.path("data/v2/other.bin")])
        #expect(otherSum.out.hasPrefix(sha256Hex(other)), "\(otherSum)")
        // Still EIO on a second attempt (no damaged data was cached as good).
        let again = f.run(["cat", f.path("data/v1/victim.bin")])
        #expect(!again.succeeded && again.err.contains("Input/output error"), "second read: \(again)")

        // The daemon logged the damage with the file and the pack.
        let log = (try? String(contentsOfFile: f.store + "/logs/mount.log", encoding: .utf8)) ?? ""
        let packName = ((pack as NSString).lastPathComponent as NSString).deletingPathExtension
        #expect(log.contains("victim.bin"), "mount.log should name the damaged file; log:\n\(log.suffix(2000))")
        #expect(log.contains(String(packName.prefix(12))), "mount.log should name the damaged pack \(packName); log:\n\(log.suffix(2000))")
        try f.unmount()
    }
}
