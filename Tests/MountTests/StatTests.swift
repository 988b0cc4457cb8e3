import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("stat, du, df and inode numbers")
struct StatTests {
    @Test("stat matches the source: size, mode, mtime, blocks, directory link counts; du and df work", arguments: StoreBackend.allCases)
    func statTruthfulness(backend: StoreBackend) throws {
        let f = try MountFixture("stat-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount()

        for (version, expected) in [("v1", data.v1), ("v2", data.v2)] {
            try f.io("stat \(version)") {
                for (rel, file) in expected.files.sorted(by: { $0.key < $1.key }) {
                    let st = try lstatPath(f.path("data/\(version)/\(rel)"))
                    let where_ = "data/\(version)/\(rel)"
                    #expect(st.st_mode & S_IFMT == S_IFREG, "\(where_) is a regular file")
                    #expect(Int(st.st_size) == file.bytes.count, "\(where_) size \(st.st_size) vs \(file.bytes.count)")
                    #expect(UInt32(st.st_mode) & 0o7777 == file.mode, "\(where_) mode \(String(st.st_mode & 0o7777, radix: 8)) vs \(String(file.mode, radix: 8))")
                    #expect(st.st_mtim.tv_sec == file.mtime, "\(where_) mtime \(st.st_mtim.tv_sec) vs \(file.mtime)")
                    #expect(st.st_mtim.tv_nsec == file.mtimeNs, "\(where_) mtime ns \(st.st_mtim.tv_nsec) vs \(file.mtimeNs)")
                    #expect(Int(st.st_blocks) * 512 >= file.bytes.count, "\(where_) st_blocks \(st.st_blocks) * 512 < size \(file.bytes.count)")
                    #expect(st.st_nlink == 1, "\(where_) st_nlink \(st.st_nlink)")
                    #expect(st.st_uid == getuid() && st.st_gid == getgid(), "\(where_) owner \(st.st_uid):\(st.st_gid)")
                }
                for (rel, dir) in expected.directories.sorted(by: { $0.key < $1.key }) {
                    let path = f.path("data/\(version)" + (rel.isEmpty ? "" : "/\(rel)"))
                    let st = try lstatPath(path)
                    #expect(st.st_mode & S_IFMT == S_IFDIR, "\(path) is a directory")
                    #expect(Int(st.st_nlink) == 2 + dir.subdirectories, "\(path) st_nlink \(st.st_nlink), expected 2 + \(dir.subdirectories)")
                    #expect(UInt32(st.st_mode) & 0o7777 == dir.mode, "\(path) mode \(String(st.st_mode & 0o7777, radix: 8)) vs \(String(dir.mode, radix: 8))")
                    // And the count agrees with what readdir shows.
                    let subdirs = try listDirectory(path).filter { ((try? lstatPath(path + "/" + $0))?.st_mode ?? 0) & S_IFMT == S_IFDIR }
                    #expect(Int(st.st_nlink) == 2 + subdirs.count, "\(path): st_nlink \(st.st_nlink) vs subdirectories listed \(subdirs)")
                }
            }
        }
        try f.io("stat synthetic directories") { () throws in
            // The mount root and the asset directory follow the same rule: 2 + the directories readdir lists.
            for dir in [f.mnt, f.path("data"), f.path("models")] {
                let st = try lstatPath(dir)
                let subdirs = try listDirectory(dir).filter { ((try? lstatPath(dir + "/" + $0))?.st_mode ?? 0) & S_IFMT == S_IFDIR }
                #expect(Int(st.st_nlink) == 2 + subdirs.count, "\(dir): st_nlink \(st.st_nlink), but it lists \(subdirs.count) subdirectories \(subdirs)")
            }
        }

        // du: apparent size and allocated blocks both cover the data.
        let total = data.v2.totalBytes
        let apparent = f.run(["du", "-sb", f.path("data/v2")])
        #expect(apparent.succeeded, "\(apparent)")
        let apparentBytes = Int(apparent.out.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "") ?? -1
        #expect(apparentBytes >= total, "du -sb \(apparentBytes) < total file bytes \(total)")
        let allocated = f.run(["du", "-s", "--block-size=1", f.path("data/v2")])
        #expect(allocated.succeeded, "\(allocated)")
        let allocatedBytes = Int(allocated.out.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "") ?? -1
        #expect(allocatedBytes >= total, "du -s --block-size=1 \(allocatedBytes) < total file bytes \(total)")

        // df / statfs.
        let df = f.run(["df", f.mnt])
        #expect(df.succeeded && df.out.contains(f.mnt), "\(df)")
        let fs = try f.io("statfs") { try statfsPath(f.path("data/v2")) }
        #expect(fs.f_type == fuseSuperMagic)
        #expect(fs.f_bsize > 0 && fs.f_blocks > 0, "statfs: bsize \(fs.f_bsize) blocks \(fs.f_blocks)")
        #expect(MountInfo.line(of: f.mnt)?.contains("fuse.assetfs") == true, "mountinfo type: \(MountInfo.line(of: f.mnt) ?? "none")")
        let options = MountInfo.line(of: f.mnt) ?? ""
        #expect(options.contains("nosuid") && options.contains("nodev"), "mount options: \(options)")
        try f.unmount()
    }

    @Test("inode numbers: shared by unchanged files across versions (--no-lineage), distinct within a version, stable across remounts; per version where lineage is recorded", arguments: StoreBackend.allCases)
    func inodes(backend: StoreBackend) throws {
        let f = try MountFixture("inodes-\(backend)", backend: backend)
        defer { f.close() }
        let data = try StandardData.create(in: f)
        try f.mount(arguments: ["--no-lineage"])

        func inodes() throws -> [String: UInt64] {
            try f.io("collect inodes") {
                var map: [String: UInt64] = [:]
                for rel in ["", "data", "data/latest", "data/first", "data/v1", "data/v2", "models", "models/v1"] {
                    map[rel] = UInt64(try lstatPath(f.path(rel)).st_ino)
                }
                for (version, expected) in [("v1", data.v1), ("v2", data.v2)] {
                    for rel in Array(expected.files.keys) + expected.directories.keys.filter({ !$0.isEmpty }) {
                        map["data/\(version)/\(rel)"] = UInt64(try lstatPath(f.path("data/\(version)/\(rel)")).st_ino)
                    }
                }
                return map
            }
        }
        let first = try inodes()

        for unchanged in ["big.bin", "other.bin", "labels.csv", "sub/deep/table.csv", "empty.txt"] {
            #expect(first["data/v1/\(unchanged)"] == first["data/v2/\(unchanged)"], "unchanged \(unchanged) keeps its inode across v1 and v2")
        }
        #expect(first["data/v1/small.txt"] != first["data/v2/small.txt"], "changed small.txt must get a new inode")

        // Within one version (and across the whole namespace) distinct paths have distinct inodes, except the
        // unchanged files shared between v1 and v2.
        let v2 = first.filter { $0.key.hasPrefix("data/v2/") }
        #expect(Set(v2.values).count == v2.count, "duplicate inode numbers inside v2: \(v2)")
        let v1 = first.filter { $0.key.hasPrefix("data/v1/") }
        #expect(Set(v1.values).count == v1.count, "duplicate inode numbers inside v1: \(v1)")
        let topLevel = ["", "data", "data/latest", "data/first", "data/v1", "data/v2", "models", "models/v1"].map { first[$0]! }
        #expect(Set(topLevel).count == topLevel.count, "duplicate inodes among root/asset/link/version nodes")
        #expect(first[""] == 1, "the mount root is inode 1, got \(first[""]!)")
        // Directories are per version: sub in v1 and v2 differ (their contents differ).
        #expect(first["data/v1/sub"] != first["data/v2/sub"])

        // Files are never hard links of each other.
        try f.io("nlink of files") { () throws in
            for rel in data.v2.files.keys { #expect(try lstatPath(f.path("data/v2/\(rel)")).st_nlink == 1, "\(rel) st_nlink") }
        }

        // Same numbers after unmount + remount (a new daemon process).
        let firstPid = f.daemonPID
        try f.unmount()
        let secondPid = try f.mount(arguments: ["--no-lineage"])
        #expect(firstPid != secondPid)
        let second = try inodes()
        #expect(second == first, "inode numbers changed across a remount: \(second.filter { first[$0.key] != $0.value }.keys.sorted())")
        try f.unmount()

        // Recording lineage (the default), an open must name its version: unchanged files differ by version,
        // and the numbers are stable across remounts too.
        try f.mount()
        let recording = try inodes()
        for unchanged in ["big.bin", "other.bin", "labels.csv", "sub/deep/table.csv", "empty.txt"] {
            #expect(recording["data/v1/\(unchanged)"] != recording["data/v2/\(unchanged)"], "\(unchanged) in v1 and v2 share an inode")
        }
        let all = Array(recording.values)
        #expect(Set(all).count == all.count, "duplicate inode numbers in the namespace")
        try f.unmount()
        try f.mount()
        #expect(try inodes() == recording, "inode numbers changed across a remount with lineage")
        try f.unmount()
    }
}
