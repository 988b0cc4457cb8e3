#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A regular file of the version, relative to the version's root.
struct TreeFile {
    let relative: String
    let size: Int
}

/// One random 4 KiB read: which large file, at which page-aligned offset.
struct RandomRead {
    let file: Int
    let offset: Int
}

/// The read-path measurements, identical for every target: plain POSIX calls from one thread.
enum ReadMeasure {
    static let sequentialBuffer = 1 << 20
    static let randomSize = 4096

    /// `sync; echo 3 > /proc/sys/vm/drop_caches`: page cache, dentries and inodes (FUSE ones included, so the
    /// kernel must look names up again); a daemon's own memory caches are not touched.
    static func dropCaches() throws {
        sync()
        let fd = open("/proc/sys/vm/drop_caches", O_WRONLY)
        guard fd >= 0 else { throw BenchError.posix("open (root needed)", "/proc/sys/vm/drop_caches") }
        defer { close(fd) }
        guard write(fd, "3\n", 2) == 2 else { throw BenchError.posix("write", "/proc/sys/vm/drop_caches") }
    }

    /// Reads every file in order with 1 MiB read() calls; returns seconds. Every byte count is checked against
    /// the native size, so a short or long file fails the run rather than flattering it.
    static func sequential(root: String, files: [TreeFile]) throws -> Double {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: sequentialBuffer, alignment: 4096)
        defer { buffer.deallocate() }
        let (_, seconds) = try timed {
            for file in files {
                let path = root + "/" + file.relative
                let fd = open(path, O_RDONLY)
                guard fd >= 0 else { throw BenchError.posix("open", path) }
                defer { close(fd) }
                var total = 0
                while true {
                    let n = read(fd, buffer, sequentialBuffer)
                    if n < 0 { if errno == EINTR { continue }; throw BenchError.posix("read", path) }
                    if n == 0 { break }
                    total += n
                }
                guard total == file.size else {
                    throw BenchError("\(path): read \(total) bytes, the exported file has \(file.size)")
                }
            }
        }
        return seconds
    }

    struct RandomResult {
        let coldSeconds: Double
        /// Best of `warmPasses` passes over the same offsets, caches kept.
        let warmSeconds: Double
        /// FNV-1a over every byte read, in order: must equal the native one.
        let checksum: UInt64
    }

    /// Opens the large files (untimed), drops caches, times one pass of 4 KiB preads, then warm passes.
    static func random(root: String, files: [TreeFile], plan: [RandomRead], warmPasses: Int = 3) throws -> RandomResult {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for file in files {
            let path = root + "/" + file.relative
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw BenchError.posix("open", path) }
            fds.append(fd)
        }
        // Everything read lands in one buffer and is hashed after the clock stops: hashing 4 KiB costs about as
        // much as a page-cache pread, so hashing inside the loop would halve warm IOPS.
        let bytes = plan.count * randomSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        defer { buffer.deallocate() }
        func pass() throws -> Double {
            try timed {
                for (i, r) in plan.enumerated() {
                    var done = 0
                    while done < randomSize {
                        let n = pread(fds[r.file], buffer + i * randomSize + done, randomSize - done, off_t(r.offset + done))
                        if n < 0 { if errno == EINTR { continue }; throw BenchError.posix("pread", root + "/" + files[r.file].relative) }
                        if n == 0 { throw BenchError("short pread at \(r.offset) in \(root)/\(files[r.file].relative)") }
                        done += n
                    }
                }
            }.1
        }
        try dropCaches()
        let cold = try pass()
        let checksum = fnv1a(UnsafeRawBufferPointer(start: buffer, count: bytes))
        var warm = Double.infinity
        for _ in 0..<warmPasses {
            memset(buffer, 0, bytes)
            warm = min(warm, try pass())
            guard fnv1a(UnsafeRawBufferPointer(start: buffer, count: bytes)) == checksum else {
                throw BenchError("\(root): a warm random pass read different bytes than the cold pass")
            }
        }
        return RandomResult(coldSeconds: cold, warmSeconds: warm, checksum: checksum)
    }

    /// `count` page-aligned 4 KiB reads, uniform over the bytes of `files` (so a file is hit in proportion to
    /// its size); the same seed gives the same plan for every target.
    static func plan(files: [TreeFile], count: Int, seed: UInt64) -> [RandomRead] {
        var rng = SplitMix64(seed: seed)
        let pages = files.map { ($0.size - randomSize) / randomSize + 1 }
        let total = pages.reduce(0, +)
        return (0..<count).map { _ in
            var page = rng.below(total)
            var file = 0
            while page >= pages[file] { page -= pages[file]; file += 1 }
            return RandomRead(file: file, offset: page * randomSize)
        }
    }

    static func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// Runs a tree walk (`ls -lR ROOT`, `find ROOT`), output to its log; returns seconds and output lines.
    static func walk(_ command: String, _ arguments: [String], root: String, runner: CommandRunner,
                     label: String) throws -> (seconds: Double, lines: Int) {
        guard let binary = FileIO.executable(command) else { throw BenchError("\(command) not found in PATH") }
        let result = try Spawn.run(binary, arguments + [root], runner: runner, label: label)
        return (result.seconds, result.output.utf8.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) })
    }

    /// VmHWM and VmRSS of a process, in KiB.
    static func memory(of pid: Int32) -> (peakKiB: Int, currentKiB: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Int? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        guard let peak = field("VmHWM"), let current = field("VmRSS") else { return nil }
        return (peak, current)
    }

    /// 1, 5 and 15 minute load averages: the machine is shared, so the report says how busy it was.
    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?")
            .split(separator: " ").prefix(3).joined(separator: " ")
    }
}
