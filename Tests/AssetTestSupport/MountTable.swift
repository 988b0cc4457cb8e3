import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `statfs.f_type` of a FUSE mount.
public let fuseSuperMagic: Int = 0x6573_5546

/// The mount table as /proc/self/mountinfo shows it: reading it sends no request to any FUSE daemon, so it is
/// safe against a hung mount.
public enum MountInfo {
    /// "major:minor" of the last mount at `path` in /proc/self/mountinfo.
    public static func device(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        var found: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, unescape(String(fields[4])) == path { found = String(fields[2]) }
        }
        return found
    }

    public static func isMounted(_ path: String) -> Bool { device(of: path) != nil }

    /// The mount line of `path` (for its options), or nil.
    public static func line(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").last(where: { l in
            let fields = l.split(separator: " ")
            return fields.count > 4 && unescape(String(fields[4])) == path
        }).map(String.init)
    }

    /// Every mount point at or below `prefix`, deepest first (a path mounted twice is listed twice), for teardown.
    public static func mounts(under prefix: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let p = unescape(String(fields[4]))
            return p == prefix || p.hasPrefix(prefix + "/") ? p : nil
        }.sorted { $0.count > $1.count }
    }

    /// Undoes mountinfo's octal escapes of space, tab, newline and backslash.
    public static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

/// The FUSE control file system: the last resort against a hung mount.
public enum FuseControl {
    public static let directory = "/sys/fs/fuse/connections"

    /// Mounts fusectl once per process (not mounted by default on these machines). Thread-safe: a global
    /// `let` is initialised once.
    public static let available: Bool = {
        if let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8),
           mounts.split(separator: "\n").contains(where: { $0.contains(" \(directory) fusectl ") }) {
            return true
        }
        if mount("none", directory, "fusectl", 0, nil) == 0 || errno == EBUSY { return true }
        return false
    }()

    /// Aborts the FUSE connection of the mount whose device is `device` ("0:39"): every pending and future
    /// request fails with ENOTCONN, so nothing can stay blocked on it.
    @discardableResult
    public static func abort(device: String) -> Bool {
        guard available, let minor = device.split(separator: ":").last else { return false }
        let fd = Glibc.open("\(directory)/\(minor)/abort", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        return Glibc.write(fd, "1", 1) == 1
    }
}
