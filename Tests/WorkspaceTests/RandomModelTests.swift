import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The base tree of the model test: a 3 MB random file (several chunks, so edits hit stored base data), a
/// subdirectory with a 700 KB file, a deeper text file, a small file and an empty directory.
private func buildModelBase(_ root: String) throws {
    try writeFile(root + "/big.bin", randomBytes(3_000_000, seed: 11), mode: 0o644)
    try writeFile(root + "/sub/a.bin", randomBytes(700_000, seed: 12), mode: 0o600)
    try writeFile(root + "/sub/deep/b.txt", textBytes(50_000, seed: 13), mode: 0o644)
    try writeFile(root + "/c.txt", textBytes(10_000, seed: 14), mode: 0o640)
    mkdir(root + "/empty", 0o755)
    for d in ["sub", "sub/deep", "empty"] { chmod(root + "/" + d, 0o755) }
}

/// Operations chosen at random from the current state of the local tree.
private struct ModelChooser {
    var rng: SplitMix64
    static let maxFileSize = 5 << 20
    static let names = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "d0", "d1", "d2", "x.bin", "y.txt", "z"]

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// 1...max, log-uniform (many small, some large).
    mutating func length(max: Int) -> Int {
        Swift.max(1, Swift.min(max, Int(exp(Double.random(in: 0..<log(Double(max)), using: &rng)))))
    }

    /// An offset biased to interesting places: chunk-ish boundaries, the end, past the end, anywhere.
    mutating func offset(size: Int) -> Int {
        switch int(0...9) {
        case 0: return size
        case 1: return size + int(1...300_000)
        case 2, 3:
            let boundary = int(0...40) * 131_072
            return Swift.max(0, boundary + int(-4_100...4_100))
        default: return int(0...Swift.max(size, 1))
        }
    }

    /// A path that does not exist yet (most of the time) in one of `dirs`.
    mutating func newPath(in dirs: [String]) -> String {
        let dir = pick(dirs)
        let name = pick(Self.names) + (chance(0.5) ? "" : "\(int(0...99))")
        return dir.isEmpty ? name : dir + "/" + name
    }
}

@Suite("Workspace random operations")
struct RandomModelTests {
    @Test("random operations on a workspace match a local tree; commit and export reproduce it")
    func randomOperations() throws {
        let seed = ProcessInfo.processInfo.environment["WORKSPACE_MODEL_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let operations = ProcessInfo.processInfo.environment["WORKSPACE_MODEL_OPS"].flatMap { Int($0) } ?? 3_000
        print("random model test: seed \(seed), \(operations) operations (rerun with WORKSPACE_MODEL_SEED=\(seed))")
        let fx = try WSFixture("model", backstop: 170)
        defer { fx.close() }
        try buildModelBase(fx.src)
        try buildModelBase(fx.local)
        let v = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("model", from: v)
        let spawn: ([String]) -> ProcessResult = { fx.run($0) }

        var chooser = ModelChooser(seed: seed)
        var fds: [(tag: String, fd: [Int32])] = []
        var history: [String] = []
        var fdCounter = 0
        var diverged = false
        defer {
            for pair in fds { for fd in pair.fd where fd >= 0 { Glibc.close(fd) } }
        }

        var counts: [String: (ops: Int, failed: Int)] = [:]
        let inPlaceSteps = 60

        /// Runs one operation on both sides (local first); false when they disagree.
        func apply(_ step: Int, _ desc: String, _ body: (Recorder, Int) -> Void) -> Bool {
            history.append("#\(step) \(desc)")
            let l = Recorder(root: fx.local, spawn: spawn)
            body(l, 0)
            let kind = String(desc.prefix(while: { $0 != " " }))
            let failed = l.lines.first.map { $0.contains("= -1 ") } ?? false
            counts[kind, default: (0, 0)].ops += 1
            if failed { counts[kind, default: (0, 0)].failed += 1 }
            let w = Recorder(root: ws, spawn: spawn)
            fx.io("model step \(step): \(desc)") { body(w, 1) }
            if l.lines != w.lines {
                recordDifferences("seed \(seed), step \(step) (\(desc)); previous steps:\n    \(history.suffix(12).joined(separator: "\n    "))\n", local: l.lines, workspace: w.lines)
                return false
            }
            return true
        }

        func compareWholeTrees(_ when: String) throws -> Bool {
            let problems = try fx.io("compare whole trees \(when)", seconds: 60) { try compareTrees(got: ws, expected: fx.local) }
            if !problems.isEmpty {
                Issue.record(Comment(rawValue: "seed \(seed): \(when), the workspace tree differs from the local tree:\n\(problems.joined(separator: "\n"))\nlast steps:\n\(history.suffix(12).joined(separator: "\n"))"))
            }
            return problems.isEmpty
        }

        let started = Date()
        for step in 1...operations {
            let tree = try walkTree(fx.local)
            let files = tree.filter { $0.value.type == "f" }.map(\.key).sorted()
            let dirs = [""] + tree.filter { $0.value.type == "d" }.map(\.key).sorted()
            let sizes = tree.mapValues(\.size)
            // The first steps only edit existing files in place (content, size, mode; no names change), the way
            // a job patches a data set, and end in a commit --keep; after that anything goes.
            let inPlacePhase = step <= inPlaceSteps
            var roll = chooser.int(0...99)
            if inPlacePhase { roll = chooser.pick([0, 5, 10, 15, 20, 25, 30, 37, 40, 71, 72, 76, 80, 85]) }
            var ok = true

            switch roll {
            case 0..<24:  // write at an offset through a fresh descriptor, then read the region back
                let path = files.isEmpty || (!inPlacePhase && (chooser.chance(0.12) || files.count < 3)) ? chooser.newPath(in: dirs) : chooser.pick(files)
                let size = sizes[path] ?? 0
                var offset = chooser.offset(size: size)
                let length = chooser.length(max: 400_000)
                if offset + length > ModelChooser.maxFileSize { offset = max(0, ModelChooser.maxFileSize - length - chooser.int(0...100_000)) }
                var flags = O_WRONLY | O_CREAT
                if chooser.chance(0.03) { flags |= O_TRUNC }
                if chooser.chance(0.05) { flags |= O_APPEND }
                let data = randomBytes(length, using: &chooser.rng)
                ok = apply(step, "write \(path) \(length)B @\(offset) \(Recorder.flagNames(flags))") { r, _ in
                    let fd = r.open(path, flags, 0o644)
                    guard fd >= 0 else { return }
                    r.pwrite(fd, "w", data, at: offset)
                    r.close(fd, "w")
                    let rfd = r.open(path, O_RDONLY)
                    guard rfd >= 0 else { return }
                    r.pread(rfd, "r", length + 256, at: max(0, offset - 128))
                    r.close(rfd, "r")
                    r.stat(path)
                }
            case 24..<36:  // read a range
                guard let path = files.isEmpty ? nil : chooser.pick(files) else { continue }
                let size = sizes[path] ?? 0
                let offset = chooser.int(0...(size + 100))
                let count = chooser.length(max: 600_000)
                ok = apply(step, "read \(path) \(count)B @\(offset)") { r, _ in
                    let fd = r.open(path, O_RDONLY)
                    guard fd >= 0 else { return }
                    r.pread(fd, "r", count, at: offset)
                    r.close(fd, "r")
                }
            case 36..<44:  // truncate by path: shrink, extend, or to a boundary
                guard let path = files.isEmpty ? nil : chooser.pick(files) else { continue }
                let size = sizes[path] ?? 0
                let newSize: Int
                switch chooser.int(0...4) {
                case 0, 1: newSize = chooser.int(0...size)
                case 2, 3: newSize = min(ModelChooser.maxFileSize, size + chooser.int(1...500_000))
                default: newSize = chooser.int(0...30) * 131_072
                }
                ok = apply(step, "truncate \(path) \(size) -> \(newSize)") { r, _ in
                    r.truncate(path, newSize)
                    r.stat(path)
                    let fd = r.open(path, O_RDONLY)
                    guard fd >= 0 else { return }
                    r.pread(fd, "r", 300_000, at: max(0, min(size, newSize) - 1_000))
                    r.close(fd, "r")
                }
            case 44..<52:  // rename a file or a directory, to a new name or onto something existing
                let movable = files + dirs.filter { !$0.isEmpty }
                guard !movable.isEmpty else { continue }
                let source = chooser.chance(0.7) && !files.isEmpty ? chooser.pick(files) : chooser.pick(movable)
                let target: String
                switch chooser.int(0...9) {
                case 0...4: target = chooser.newPath(in: dirs)
                case 5...7: target = files.isEmpty ? chooser.newPath(in: dirs) : chooser.pick(files)
                default: target = dirs.count > 1 ? chooser.pick(Array(dirs.dropFirst())) : chooser.newPath(in: dirs)
                }
                let parents = Set([source, target].map { parentPath($0) }).sorted()
                ok = apply(step, "rename \(source) -> \(target)") { r, _ in
                    r.rename(source, target)
                    r.lstat(source)
                    r.lstat(target)
                    for p in parents { r.list(p) }
                }
            case 52..<57:  // create exclusively with a little content
                let path = chooser.chance(0.15) && !files.isEmpty ? chooser.pick(files) : chooser.newPath(in: dirs)
                let data = randomBytes(chooser.length(max: 20_000), using: &chooser.rng)
                ok = apply(step, "create \(path) \(data.count)B") { r, _ in
                    let fd = r.open(path, O_CREAT | O_EXCL | O_WRONLY, 0o644)
                    guard fd >= 0 else { return }
                    r.write(fd, "c", data)
                    r.close(fd, "c")
                    r.readFile(path)
                }
            case 57..<62:  // unlink (sometimes a directory, or nothing)
                let path: String
                if chooser.chance(0.1) && dirs.count > 1 { path = chooser.pick(Array(dirs.dropFirst())) }
                else if chooser.chance(0.05) || files.isEmpty { path = chooser.newPath(in: dirs) }
                else { path = chooser.pick(files) }
                ok = apply(step, "unlink \(path)") { r, _ in
                    r.unlink(path)
                    r.lstat(path)
                    r.list(parentPath(path))
                }
            case 62..<66:  // mkdir
                let path = chooser.chance(0.1) && dirs.count > 1 ? chooser.pick(Array(dirs.dropFirst())) : chooser.newPath(in: dirs)
                ok = apply(step, "mkdir \(path)") { r, _ in
                    r.mkdir(path, 0o755)
                    r.stat(path)
                }
            case 66..<70:  // rmdir (empty or not)
                guard dirs.count > 1 else { continue }
                let path = chooser.pick(Array(dirs.dropFirst()))
                ok = apply(step, "rmdir \(path)") { r, _ in
                    r.rmdir(path)
                    r.lstat(path)
                    r.list(parentPath(path))
                }
            case 70..<73:  // chmod
                let isDir = !inPlacePhase && chooser.chance(0.3) && dirs.count > 1
                guard isDir || !files.isEmpty else { continue }
                let path = isDir ? chooser.pick(Array(dirs.dropFirst())) : chooser.pick(files)
                let mode: mode_t = isDir ? chooser.pick([0o755, 0o750, 0o700]) : chooser.pick([0o600, 0o644, 0o640, 0o755, 0o700, 0o444])
                ok = apply(step, "chmod \(path) \(String(mode, radix: 8))") { r, _ in
                    r.chmod(path, mode)
                    r.stat(path)
                }
            case 74:  // symlink (relative target, dangling or not) and readlink
                let target = chooser.chance(0.7) && !files.isEmpty ? chooser.pick(files) : "nowhere/\(chooser.int(0...9))"
                let path = chooser.newPath(in: dirs)
                ok = apply(step, "symlink \(path) -> \(target)") { r, _ in
                    r.symlink(target, path)
                    r.readlink(path)
                    r.lstat(path)
                }
            case 73:  // hard link
                guard !files.isEmpty else { continue }
                let source = chooser.pick(files)
                let target = chooser.newPath(in: dirs)
                ok = apply(step, "link \(source) -> \(target)") { r, _ in
                    r.link(source, target)
                    r.stat(source)
                    r.stat(target)
                }
            case 75..<90:  // long-lived descriptors: they survive renames, unlinks and truncates on both sides
                if fds.isEmpty || (fds.count < 3 && chooser.chance(0.3)) {
                    guard !files.isEmpty else { continue }
                    let path = chooser.pick(files)
                    fdCounter += 1
                    let tag = "fd\(fdCounter)"
                    var opened: [Int32] = [-1, -1]
                    ok = apply(step, "open \(tag) = \(path) O_RDWR") { r, side in
                        opened[side] = r.open(path, O_RDWR)
                    }
                    if opened[0] >= 0 || opened[1] >= 0 { fds.append((tag, opened)) }
                } else {
                    let index = chooser.int(0...(fds.count - 1))
                    let pair = fds[index]
                    switch chooser.int(0...9) {
                    case 0...4:
                        let offset = chooser.offset(size: chooser.int(0...3_000_000))
                        let data = randomBytes(chooser.length(max: 300_000), using: &chooser.rng)
                        let at = min(offset, ModelChooser.maxFileSize - data.count)
                        ok = apply(step, "pwrite \(pair.tag) \(data.count)B @\(at)") { r, side in
                            r.pwrite(pair.fd[side], pair.tag, data, at: at)
                            r.pread(pair.fd[side], pair.tag, data.count + 200, at: max(0, at - 100))
                        }
                    case 5:
                        ok = apply(step, "fstat \(pair.tag)") { r, side in r.fstat(pair.fd[side], pair.tag) }
                    case 6:
                        let offset = chooser.int(0...3_500_000)
                        let count = chooser.length(max: 500_000)
                        ok = apply(step, "pread \(pair.tag) \(count)B @\(offset)") { r, side in
                            r.pread(pair.fd[side], pair.tag, count, at: offset)
                        }
                    case 7:
                        let size = chooser.int(0...4_000_000)
                        ok = apply(step, "ftruncate \(pair.tag) \(size)") { r, side in
                            r.ftruncate(pair.fd[side], pair.tag, size)
                            r.pread(pair.fd[side], pair.tag, 2_000, at: max(0, size - 1_000))
                        }
                    default:
                        ok = apply(step, "close \(pair.tag)") { r, side in r.close(pair.fd[side], pair.tag) }
                        fds.remove(at: index)
                    }
                }
            case 90..<95:  // stat something
                let all = files + dirs.filter { !$0.isEmpty }
                guard !all.isEmpty else { continue }
                let path = chooser.pick(all)
                ok = apply(step, "stat \(path)") { r, _ in r.stat(path) }
            default:  // list a directory
                let dir = chooser.pick(dirs)
                ok = apply(step, "list \(dir.isEmpty ? "/" : dir)") { r, _ in r.list(dir) }
            }
            if !ok {
                diverged = true
                break
            }
            if step == inPlaceSteps || step == operations / 2 {
                // Commit with --keep mid-run (descriptors must be closed for that), export, compare, go on: the
                // workspace stays usable on top of the new version.
                for pair in fds { for fd in pair.fd where fd >= 0 { Glibc.close(fd) } }
                fds.removeAll()
                history.append("#\(step) commit --keep")
                let kept = try fx.commitOK("data/model", ["--keep"])
                // Versions do not record hard links (README, "Workspaces"): after the commit the workspace sits
                // on the new version, where each name is its own file. Mirror that in the local model.
                try breakHardLinks(fx.local)
                let exported = try fx.export("data@v\(kept)")
                let problems = try compareTrees(got: exported, expected: fx.local)
                #expect(problems.isEmpty, """
                    seed \(seed): the export of v\(kept) (commit --keep after step \(step)) differs from the local tree:
                    \(problems.joined(separator: "\n"))
                    """)
            }
            if step % 500 == 0 {
                print("random model test: \(step) operations in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
                if try !compareWholeTrees("after step \(step)") {
                    diverged = true
                    break
                }
            }
        }
        // Close whatever is still open (commit refuses while files are open for writing).
        for pair in fds {
            for fd in pair.fd where fd >= 0 { Glibc.close(fd) }
        }
        fds.removeAll()
        if !diverged { _ = try compareWholeTrees("at the end") }

        // Commit, export, and compare the export with the local tree (contents and modes).
        let status = fx.cli(["workspace", "status", "data/model"])
        let newVersion = try fx.commitOK("data/model")
        #expect(newVersion > v)
        let exported = try fx.export("data@v\(newVersion)")
        let problems = try compareTrees(got: exported, expected: fx.local)
        #expect(problems.isEmpty, """
            seed \(seed): the export of the committed v\(newVersion) differs from the local tree\(diverged ? " (the workspace had already diverged)" : ""):
            \(problems.joined(separator: "\n"))
            workspace status before commit: \(status.out)
            """)
        try fx.verifyOK()
        print("random model test: operations (first call failed): " + counts.keys.sorted().map { "\($0) \(counts[$0]!.ops) (\(counts[$0]!.failed))" }.joined(separator: ", "))
        print("random model test: seed \(seed) done in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }
}

/// Replaces every hard-linked regular file below `root` by an independent copy with the same bytes, mode and
/// mtime: what a committed version holds for it.
func breakHardLinks(_ root: String) throws {
    for rel in try walkTree(root).keys.sorted() {
        let path = root + "/" + rel
        let st = try lstatPath(path)
        guard st.st_mode & S_IFMT == S_IFREG, st.st_nlink > 1 else { continue }
        let bytes = try readAll(path)
        guard unlink(path) == 0 else { throw SysError(op: "unlink", path: path, code: errno) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, st.st_mode & 0o7777)
        guard fd >= 0 else { throw SysError(op: "open", path: path, code: errno) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { close(fd); throw SysError(op: "write", path: path, code: errno) }
            done += n
        }
        fchmod(fd, st.st_mode & 0o7777)
        var times = [st.st_atim, st.st_mtim]
        futimens(fd, &times)
        close(fd)
    }
}
