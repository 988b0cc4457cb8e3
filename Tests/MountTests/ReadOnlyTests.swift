import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Versions are read-only")
struct ReadOnlyTests {
    @Test("every write-type system call on a version path fails with EROFS and changes nothing")
    func writesFailWithEROFS() throws {
        let f = try MountFixture("erofs")
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()

        let v = f.path("data/v1")
        let file = v + "/small.txt"
        let big = v + "/big.bin"
        // Each returns the syscall's result; -1 with errno EROFS is expected.
        let attempts: [(String, () -> Int)] = [
            ("create (O_CREAT|O_WRONLY)", { Int(closing(Glibc.open(v + "/new.txt", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644))) }),
            ("create (O_CREAT|O_EXCL|O_RDWR)", { Int(closing(Glibc.open(v + "/sub/new.txt", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o644))) }),
            ("creat() over an existing file", { Int(closing(Glibc.open(file, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644))) }),
            ("open O_WRONLY", { Int(closing(Glibc.open(file, O_WRONLY | O_CLOEXEC))) }),
            ("open O_RDWR", { Int(closing(Glibc.open(big, O_RDWR | O_CLOEXEC))) }),
            ("open O_WRONLY|O_APPEND", { Int(closing(Glibc.open(file, O_WRONLY | O_APPEND | O_CLOEXEC))) }),
            ("open O_WRONLY|O_TRUNC", { Int(closing(Glibc.open(file, O_WRONLY | O_TRUNC | O_CLOEXEC))) }),
            ("open O_RDONLY|O_TRUNC", { Int(closing(Glibc.open(big, O_RDONLY | O_TRUNC | O_CLOEXEC))) }),
            ("unlink", { Int(unlink(file)) }),
            ("unlink in a subdirectory", { Int(unlink(v + "/sub/deep/table.csv")) }),
            ("mkdir", { Int(mkdir(v + "/newdir", 0o755)) }),
            ("mkdir in a subdirectory", { Int(mkdir(v + "/sub/newdir", 0o755)) }),
            ("rmdir of an empty directory", { Int(rmdir(v + "/sub/emptydir")) }),
            ("rmdir of a non-empty directory", { Int(rmdir(v + "/sub/deep")) }),
            ("rename a file", { Int(rename(file, v + "/renamed.txt")) }),
            ("rename a file over another", { Int(rename(file, v + "/run.sh")) }),
            ("rename a directory", { Int(rename(v + "/sub", v + "/sub2")) }),
            ("rename into another version", { Int(rename(file, f.path("data/v2/moved.txt"))) }),
            ("chmod a file", { Int(chmod(file, 0o600)) }),
            ("chmod a directory", { Int(chmod(v + "/sub", 0o700)) }),
            ("chmod the version root", { Int(chmod(v, 0o777)) }),
            ("chown", { Int(chown(file, 1000, 1000)) }),
            ("utimensat (touch)", { Int(utimensat(AT_FDCWD, file, nil, 0)) }),
            ("truncate to 0", { Int(truncate(file, 0)) }),
            ("truncate to grow", { Int(truncate(big, 10 << 20)) }),
            ("setxattr", { Int(setxattr(file, "user.test", "1", 1, 0)) }),
            ("setxattr replacing assetfs's", { Int(setxattr(file, "user.assetfs.sha256", "00", 2, 0)) }),
            ("removexattr", { Int(removexattr(file, "user.assetfs.sha256")) }),
            ("setxattr on the version root", { Int(setxattr(v, "user.test", "1", 1, 0)) }),
            ("symlink", { Int(symlink("small.txt", v + "/link")) }),
            ("link (hard)", { Int(link(file, v + "/hard")) }),
            ("mkfifo (mknod)", { Int(mkfifo(v + "/fifo", 0o644)) }),
            ("mkdir in the asset directory", { Int(mkdir(f.path("data/v99"), 0o755)) }),
            ("mkdir at the mount root", { Int(mkdir(f.path("newasset"), 0o755)) }),
            ("symlink in the asset directory", { Int(symlink("v1", f.path("data/mytag"))) }),
            ("unlink the latest link", { Int(unlink(f.path("data/latest"))) }),
            ("rmdir a version", { Int(rmdir(v)) }),
        ]
        for (name, attempt) in attempts {
            let (rc, code) = f.io(name) { () -> (Int, Int32) in
                let rc = attempt()
                return (rc, errno)
            }
            #expect(rc == -1 && code == EROFS,
                    "\(name): expected -1/EROFS, got \(rc)\(rc == -1 ? " errno \(code) (\(String(cString: strerror(code))))" : "")")
        }

        // Nothing changed.
        try f.io("verify after write attempts") {
            for (rel, expected) in data.v1.files {
                let got = try readAll(f.path("data/v1/\(rel)"))
                #expect(sameBytes(got, expected.bytes), "v1/\(rel) changed after write attempts: \(firstDifference(got, expected.bytes))")
                let st = try lstatPath(f.path("data/v1/\(rel)"))
                #expect(UInt32(st.st_mode) & 0o7777 == expected.mode, "v1/\(rel) mode changed")
            }
            #expect(try listDirectory(v) == ["big.bin", "empty.txt", "labels.csv", "meta", "other.bin", "run.sh", "small.txt", "sub"])
            #expect(try listDirectory(v + "/sub") == ["deep", "emptydir", "notes.md"])
            #expect(try listXattr(file) == ["user.assetfs.sha256"])
            #expect(try readLink(f.path("data/latest")) == "v2")
            #expect(withoutWorkspaces(try listDirectory(f.path("data"))) == ["first", "latest", "v1", "v2"])
        }

        // A shell redirect fails the same way (a real tool's view of it).
        let sh = f.run(["sh", "-c", "echo x >> '\(file)'"])
        #expect(!sh.succeeded && sh.err.contains("Read-only file system"), "\(sh)")
        try f.unmount()
    }
}

/// Closes a descriptor if the open unexpectedly succeeded, keeping errno; returns the open's result.
private func closing(_ fd: Int32) -> Int32 {
    if fd >= 0 {
        Glibc.close(fd)
        errno = 0
    }
    return fd
}
