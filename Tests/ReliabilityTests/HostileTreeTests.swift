import AssetStore
import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every plain byte stored in a store's packs: each chunk of each pack decoded through its footer index.
func decodedStoreBytes(_ store: String) throws -> [[UInt8]] {
    let storage = LocalPackStorage(root: store)
    let format = try localStoreFormat(store)
    guard let identity = format.flatMap(ChunkIdentity.init(storeFormat:)) else {
        throw TestFailure("\(store)/assetfs-store.json names no known format: \(String(describing: format))")
    }
    let reader = ChunkReader(storage: storage, identity: identity)
    var out: [[UInt8]] = []
    for id in try storage.list().map(\.id) {
        for loc in try PackIndexReader.read(id, from: storage) { out.append(try reader.read(loc)) }
    }
    return out
}

/// Raw bytes of every pack file.
func rawPacks(_ store: String) throws -> [[UInt8]] {
    let storage = LocalPackStorage(root: store)
    return try storage.list().map { try readAll(storage.path(of: $0.id)) }
}

/// 6. Hostile source trees.
extension Reliability {
    @Suite("Hostile trees")
    struct HostileTreeTests {
        @Test("symlink loops and a link to /etc/shadow are stored as links, never followed")
        func symlinks() throws {
            let f = try Fixture("hostile-links")
            defer { f.close() }
            let outside = f.root + "/outside"
            let marker = Array("ASSETFS-SECRET-MARKER-\(UUID().uuidString)".utf8)
            // The secret is random bytes with the marker inside: stored raw if it were ever read, and found
            // decoded too.
            var secret = randomBytes(200_000, seed: 66)
            for at in stride(from: 1000, to: 190_000, by: 37_000) { secret.replaceSubrange(at..<(at + marker.count), with: marker) }
            try writeFile(outside + "/secret.bin", secret)
            try writeFile(outside + "/dir/inner.bin", secret)
            try makeTree(f.src, [("real.txt", Array("real\n".utf8))])
            let links: [(String, String)] = [
                ("loop-a", "loop-b"), ("loop-b", "loop-a"), ("self", "self"), ("dir-loop", "."), ("up", ".."),
                ("shadow", "/etc/shadow"), ("secret-abs", outside + "/secret.bin"), ("secret-rel", "../outside/secret.bin"),
                ("secret-dir", outside + "/dir"), ("dangling", "/nonexistent/\(UUID().uuidString)"), ("deep/loop", "../deep"),
            ]
            try FileManager.default.createDirectory(atPath: f.src + "/deep", withIntermediateDirectories: true)
            for (name, target) in links { guard symlink(target, f.src + "/" + name) == 0 else { throw SysError(op: "symlink", path: name, code: errno) } }
            let want = try treeSignature(f.src)

            let r = f.cli(["import", "data", f.src], timeout: 60)
            try #require(r.succeeded, "import of a tree with symlink loops and links out of the tree: \(r)")
            // Exported: the same links, with the same targets.
            let got = try f.exportSignature("data@v1")
            #expect(got == want, "export recreates every link: \(signatureDifferences(expected: want, actual: got))")
            // Nothing of the targets is in the store: not in the raw packs, not in any decoded chunk, not in the catalog.
            let shadowLine = (try? readAll("/etc/shadow")).flatMap { $0.split(separator: 0x0A).first.map(Array.init) } ?? []
            for pack in try rawPacks(f.store) {
                #expect(!contains(pack, marker), "a pack holds the secret marker: a symlink was followed")
            }
            for chunk in try decodedStoreBytes(f.store) {
                #expect(!contains(chunk, marker), "a decoded chunk holds the secret marker: a symlink was followed")
                if shadowLine.count > 8 { #expect(!contains(chunk, shadowLine), "a decoded chunk holds /etc/shadow's first line") }
            }
            let catalog = try readAll(f.store + "/catalog.sqlite")
            #expect(!contains(catalog, marker))
            // The listing says symlink; the mount answers readlink without following.
            let ls = try f.cliOK(["ls", "data@v1", "--json"])
            let entries = try JSONSerialization.jsonObject(with: ls.stdout) as? [[String: Any]] ?? []
            for (name, target) in links where !name.contains("/") {
                let e = entries.first { $0["path"] as? String == name }
                #expect(e?["type"] as? String == "symlink" && e?["target"] as? String == target, "ls --json for \(name): \(e.map { "\($0)" } ?? "missing")")
            }
            try f.mount()
            try f.io("readlink through the mount") {
                for (name, target) in links {
                    #expect(try readLink(f.mnt + "/data/v1/" + name) == target, "readlink \(name) through the mount")
                }
                // Opening the shadow link through the mount resolves on the host side of the kernel, never inside
                // the store: the version holds no content for it.
                let st = try lstatPath(f.mnt + "/data/v1/shadow")
                #expect(st.st_mode & S_IFMT == S_IFLNK)
            }
            try f.unmount()
            Ledger.shared.hostile("hostile trees: symlink loops / links to /etc/shadow", ok: got == want)
        }

        @Test("names with newlines, tabs, backslashes, control and non-UTF-8 bytes round-trip through import, export and the mount")
        func strangeNames() throws {
            let f = try Fixture("hostile-names-tree")
            defer { f.close() }
            let names: [[UInt8]] = [
                Array("line1\nline2.txt".utf8), Array("tab\there".utf8), Array("back\\slash".utf8), Array("-dash".utf8),
                Array(" space ".utf8), Array("ünïcödé.txt".utf8), [0x62, 0x61, 0x64, 0xFF, 0xFE], Array("cr\r".utf8),
                Array("\u{01}ctrl".utf8), Array(String(repeating: "n", count: 255).utf8), Array("$(echo pwned)".utf8),
                Array("*?[".utf8), Array("..dots..".utf8), Array("sub\ndir".utf8) + Array("/inner\nfile".utf8),
            ]
            try FileManager.default.createDirectory(atPath: f.src, withIntermediateDirectories: true)
            for (i, name) in names.enumerated() {
                let parts = name.split(separator: 0x2F, omittingEmptySubsequences: false).map(Array.init)
                var dir = Array(f.src.utf8)
                for p in parts.dropLast() {
                    dir += [0x2F] + p
                    let c = dir.map { CChar(bitPattern: $0) } + [0]
                    _ = Glibc.mkdir(c, 0o755)
                }
                let path = (dir + [0x2F] + parts.last!).map { CChar(bitPattern: $0) } + [0]
                let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SysError(op: "create", path: escapeName(name), code: errno) }
                try writeAll(fd: fd, Array("content \(i)\n".utf8), path: escapeName(name))
                Glibc.close(fd)
            }
            let want = try treeSignature(f.src)
            let r = f.cli(["import", "data", f.src])
            try #require(r.succeeded, "\(r)")
            let got = try f.exportSignature("data@v1")
            let diff = signatureDifferences(expected: want, actual: got)
            #expect(diff.isEmpty, "export round trip: \(diff)")
            for args in [["ls", "data@v1", "--json", "-r"], ["verify", "--json"], ["versions", "data", "--json"]] {
                let out = try f.cliOK(args)
                #expect((try? JSONSerialization.jsonObject(with: out.stdout)) != nil, "`\(args.joined(separator: " "))` prints valid JSON with such names: \(out.out.prefix(300))")
            }
            try f.mount()
            let mounted = try f.io("walk the mount") { try treeSignature(f.mnt + "/data/v1") }
            #expect(signatureDifferences(expected: want, actual: mounted).isEmpty, "the mount shows the same names and bytes: \(signatureDifferences(expected: want, actual: mounted))")
            try f.unmount()
            Ledger.shared.hostile("hostile trees: names with newlines / control / non-UTF-8 bytes", ok: diff.isEmpty)
        }

        @Test("1,000-level deep directories (paths longer than PATH_MAX) import, export and mount")
        func deepDirectories() throws {
            let f = try Fixture("hostile-deep", backstop: 240)
            defer { f.close() }
            let depth = 1000
            // "dirN" components: the deepest path is ~5,900 bytes, over PATH_MAX (4096): only *at() calls reach it.
            var fd = Glibc.open(f.src, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            for level in 0..<depth {
                let name = "d\(level % 10)xx"
                guard mkdirat(fd, name, 0o755) == 0 else { throw SysError(op: "mkdirat level \(level)", path: name, code: errno) }
                if level % 100 == 0 {
                    let file = openat(fd, "at-\(level).txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                    try writeAll(fd: file, Array("level \(level)\n".utf8), path: "at-\(level)")
                    Glibc.close(file)
                }
                let next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                Glibc.close(fd)
                fd = next
            }
            let bottom = openat(fd, "bottom.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            try writeAll(fd: bottom, Array("the bottom\n".utf8), path: "bottom")
            Glibc.close(bottom)
            Glibc.close(fd)
            let want = try treeSignature(f.src)
            let t0 = Date()
            let r = f.cli(["import", "data", f.src], timeout: 120)
            let importSeconds = Date().timeIntervalSince(t0)
            try #require(r.succeeded, "import of a \(depth)-level tree: \(r)")
            let got = try f.exportSignature("data@v1")
            let diff = signatureDifferences(expected: want, actual: got)
            #expect(diff.isEmpty, "export of the deep tree: \(diff)")
            let (vr, _) = f.verify()
            #expect(vr.succeeded, "\(vr)")
            try f.mount()
            let mounted = try f.io("walk \(depth) levels through the mount", seconds: 120) { try treeSignature(f.mnt + "/data/v1") }
            #expect(signatureDifferences(expected: want, actual: mounted).isEmpty, "the mount shows the deep tree: \(signatureDifferences(expected: want, actual: mounted))")
            try f.unmount()
            Ledger.shared.measurement("\(depth)-level tree imported in \(String(format: "%.1f", importSeconds)) s")
            Ledger.shared.hostile("hostile trees: 1,000-level deep directories", ok: diff.isEmpty)
        }

        @Test("many files in one directory (20,000 by default, 100,000 with ASSETFS_LONG=1)")
        func manyFiles() throws {
            let count = Mode.long ? 100_000 : 20_000
            let f = try Fixture("hostile-wide", backstop: Mode.long ? 1200 : 300)
            defer { f.close() }
            let dir = f.src + "/flat"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let dfd = Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            for i in 0..<count {
                let fd = openat(dfd, "f\(i).txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SysError(op: "create", path: "f\(i).txt", code: errno) }
                let line = Array("file \(i)\n".utf8)
                _ = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                Glibc.close(fd)
            }
            Glibc.close(dfd)
            var t0 = Date()
            let r = f.cli(["import", "data", f.src], timeout: Mode.long ? 900 : 240)
            let importSeconds = Date().timeIntervalSince(t0)
            try #require(r.succeeded, "import of \(count) files in one directory: \(r)")
            let ls = try f.cliOK(["ls", "data@v1:flat"], timeout: 240)
            #expect(ls.out.split(separator: "\n").count >= count, "ls lists \(ls.out.split(separator: "\n").count) entries")
            t0 = Date()
            let dest = f.scratchPath("export")
            let e = f.cli(["export", "data@v1", dest], timeout: 600)
            let exportSeconds = Date().timeIntervalSince(t0)
            #expect(e.succeeded, "\(e)")
            let exported = (try? FileManager.default.contentsOfDirectory(atPath: dest + "/flat").count) ?? 0
            #expect(exported == count, "export wrote \(exported) of \(count) files")
            #expect(try readAll(dest + "/flat/f\(count - 1).txt") == Array("file \(count - 1)\n".utf8))
            removeTree(dest)
            try f.mount()
            t0 = Date()
            let listed = try f.io("readdir of \(count) entries", seconds: 240) { try FileManager.default.contentsOfDirectory(atPath: f.mnt + "/data/v1/flat").count }
            let readdirSeconds = Date().timeIntervalSince(t0)
            #expect(listed == count)
            try f.unmount()
            Ledger.shared.measurement("\(count) files in one directory: import \(String(format: "%.1f", importSeconds)) s, export \(String(format: "%.1f", exportSeconds)) s, readdir through the mount \(String(format: "%.1f", readdirSeconds)) s")
            Ledger.shared.hostile("hostile trees: \(count) files in one directory", ok: r.succeeded && e.succeeded && listed == count)
        }

        /// A background writer changes a file while it is imported. The import records a consistent copy or fails
        /// naming the file; a torn copy (bytes from two states) is a bug.
        @Test("files that change during the import: a consistent copy or an error naming the file, never a torn file", arguments: ["append", "rewrite"])
        func changingFiles(_ mode: String) throws {
            let f = try Fixture("hostile-changing-\(mode)", backstop: 240)
            defer { f.close() }
            let name = mode == "append" ? "growing.log" : "rewritten.bin"
            let path = f.src + "/" + name
            try makeTree(f.src, [("other.txt", Array("other\n".utf8))])
            let lineLength = 64
            @Sendable func line(_ n: Int) -> [UInt8] {
                var l = Array("line \(n) ".utf8)
                l += [UInt8](repeating: UInt8(ascii: "x"), count: lineLength - l.count - 1) + [0x0A]
                return l
            }
            let generationSize = 6 << 20
            if mode == "append" {
                var initial: [UInt8] = []
                initial.reserveCapacity(12 << 20)
                var n = 0
                while initial.count < 12 << 20 { initial += line(n); n += 1 }
                try writeFile(path, initial)
            } else {
                try writeFile(path, [UInt8](repeating: 0, count: generationSize))
            }
            var outcomes: [String] = []
            var torn = 0
            for attempt in 0..<4 {
                let stop = WriterLog()
                let done = DispatchSemaphore(value: 0)
                let writer = Thread {
                    let fd = Glibc.open(path, O_WRONLY | (mode == "append" ? O_APPEND : 0) | O_CLOEXEC)
                    var n = 0
                    var generation = UInt8(1)
                    while !stop.stop {
                        if mode == "append" {
                            let l = line(1_000_000 + attempt * 100_000 + n)
                            _ = l.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                            n += 1
                            if n % 50 == 0 { usleep(100) }
                        } else {
                            // Rewrite the whole file, 256 KiB at a time, with the next generation's byte.
                            let block = [UInt8](repeating: generation, count: 256 << 10)
                            for off in stride(from: 0, to: generationSize, by: block.count) where !stop.stop {
                                _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(off)) }
                            }
                            generation = generation == 255 ? 1 : generation + 1
                        }
                    }
                    Glibc.close(fd)
                    done.signal()
                }
                writer.start()
                usleep(20_000)
                let r = f.cli(["import", "data", f.src, "--rehash", "-m", "attempt \(attempt)"], timeout: 120)
                stop.stop = true
                done.wait()
                if r.succeeded, let v = parseVersionLine(r.out, asset: "data") {
                    let dest = f.scratchPath("export")
                    defer { removeTree(dest) }
                    try f.cliOK(["export", "data@v\(v)", dest])
                    let stored = try readAll(dest + "/" + name)
                    let current = try readAll(path)
                    var consistent: Bool
                    if mode == "append" {
                        // A state of an append-only file: a prefix of what it holds now, ending at a line boundary.
                        consistent = stored.count <= current.count && sameBytes(stored, Array(current[0..<stored.count]))
                            && (stored.isEmpty || stored.last == 0x0A)
                    } else {
                        // A state between two complete rewrites: every byte the same generation.
                        consistent = stored.count == generationSize && Set(stored).count == 1
                    }
                    if !consistent {
                        torn += 1
                        let detail = mode == "append" ? "\(stored.count) bytes, prefix of the file: \(stored.count <= current.count && sameBytes(stored, Array(current[0..<stored.count])))" : "generations mixed: \(Set(stored).sorted().prefix(10))"
                        Issue.record("import attempt \(attempt) stored a TORN copy of \(name) (\(detail))")
                    }
                    outcomes.append(consistent ? "consistent copy" : "TORN copy")
                } else {
                    let ok = r.exitCode == 1 && r.errLines.count == 1 && r.err.contains(name)
                    #expect(ok, "a failed import must exit 1 with one line naming \(name): \(r)")
                    outcomes.append(ok ? "error naming the file" : "unclear error")
                }
            }
            let (vr, _) = f.verify()
            #expect(vr.succeeded, "\(vr)")
            let summary = Dictionary(grouping: outcomes, by: { $0 }).map { "\($0.value.count)x \($0.key)" }.sorted().joined(separator: ", ")
            Ledger.shared.measurement("file changing during import (\(mode)): \(summary)")
            Ledger.shared.hostile("hostile trees: files changing during import (\(mode))", ok: torn == 0 && !outcomes.contains("unclear error"))
        }
    }
}
