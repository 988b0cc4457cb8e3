import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The process behind a request, as the kernel reports it (FUSE passes the thread id, uid and gid).
public struct Caller: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// What lineage needs to know about a process to name its job (Documentation/Lineage.md).
public struct ProcessFacts: Sendable, Equatable {
    public var processGroup: Int32
    public var session: Int32
    /// cgroup v2 path ("0::/..." in /proc/PID/cgroup), if any.
    public var cgroup: String?

    public init(processGroup: Int32, session: Int32, cgroup: String?) {
        self.processGroup = processGroup
        self.session = session
        self.cgroup = cgroup
    }

    /// The container id when the cgroup is a container's (Docker, containerd, Podman, CRI-O, Kubernetes).
    public var container: String? {
        guard let cgroup else { return nil }
        let markers = ["docker", "containerd", "libpod", "crio", "kubepods", "cri-containerd"]
        guard markers.contains(where: { cgroup.contains($0) }) else { return nil }
        for part in cgroup.split(whereSeparator: { $0 == "/" || $0 == "-" || $0 == "." || $0 == ":" }).reversed()
        where part.count == 64 && part.allSatisfy(\.isHexDigit) {
            return String(part)
        }
        return nil
    }
}

/// Reads processes' facts. A protocol so the VFS tests can describe processes that do not exist.
public protocol ProcessInspector: Sendable {
    func facts(of pid: Int32) -> ProcessFacts?
    /// The command line (never the environment).
    func command(of pid: Int32) -> [String]?
    /// When the process started (ns since the epoch), to tell a process group from a later one with its id.
    func startNs(of pid: Int32) -> Int64?
    /// Whether any process of the group is alive.
    func groupAlive(_ processGroup: Int32) -> Bool
    /// Whether any process is in the cgroup.
    func cgroupAlive(_ path: String) -> Bool
}

/// `/proc` on Linux: `/proc/PID/stat` (process group, session, start time), `/proc/PID/cgroup`,
/// `/proc/PID/cmdline`. Written by hand: no library reads these, and each is one small read.
public struct ProcfsInspector: ProcessInspector {
    private let bootNs: Int64
    private let ticksPerSecond: Int64

    public init() {
        ticksPerSecond = Int64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        var boot: Int64 = 0
        if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
           let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
           let seconds = Int64(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) {
            boot = seconds * 1_000_000_000
        }
        bootNs = boot
    }

    /// The fields after the command name (which may hold spaces and parentheses): field 3 is index 0.
    private func statFields(_ pid: Int32) -> [Substring]? {
        guard let bytes = Self.readSmall("/proc/\(pid)/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        return String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
    }

    public func facts(of pid: Int32) -> ProcessFacts? {
        guard let f = statFields(pid), f.count > 4, let pgrp = Int32(f[2]), let sid = Int32(f[3]) else { return nil }
        var cgroup: String?
        if let bytes = Self.readSmall("/proc/\(pid)/cgroup") {
            let text = String(decoding: bytes, as: UTF8.self)
            cgroup = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }).map { String($0.dropFirst(3)) }
        }
        return ProcessFacts(processGroup: pgrp, session: sid, cgroup: cgroup)
    }

    public func command(of pid: Int32) -> [String]? {
        guard let bytes = Self.readSmall("/proc/\(pid)/cmdline", limit: 64 << 10), !bytes.isEmpty else { return nil }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast(bytes.last == 0 ? 1 : 0)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    public func startNs(of pid: Int32) -> Int64? {
        guard let f = statFields(pid), f.count > 19, let ticks = Int64(f[19]), bootNs > 0 else { return nil }
        return bootNs + ticks * 1_000_000_000 / ticksPerSecond
    }

    public func groupAlive(_ processGroup: Int32) -> Bool {
        kill(-processGroup, 0) == 0 || errno == EPERM
    }

    public func cgroupAlive(_ path: String) -> Bool {
        guard let bytes = Self.readSmall("/sys/fs/cgroup" + path + "/cgroup.procs") else { return false }
        return bytes.contains(where: { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    }

    /// One read of a small proc file (they are generated on read; one read returns them whole up to a page).
    static func readSmall(_ path: String, limit: Int = 4096) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out += buffer[..<n]
        }
        return out
    }
}
