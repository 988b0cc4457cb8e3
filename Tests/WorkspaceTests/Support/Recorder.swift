import AssetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs system calls against paths below `root` and writes down what each returned (value or errno), what
/// reads produced, and the comparable stat fields. Two recorders that ran the same case on two file systems
/// must hold identical lines.
final class Recorder {
    let root: String
    /// Runs a child process (for the Python/numpy case) under the fixture's timeout.
    let spawn: ([String]) -> ProcessResult
    private(set) var lines: [String] = []

    init(root: String, spawn: @escaping ([String]) -> ProcessResult) {
        self.root = root
        self.spawn = spawn
    }

    func path(_ rel: String) -> String { rel.isEmpty || rel == "." ? root : root + "/" + rel }

    func note(_ s: String) { lines.append(s) }

    /// Waits (unrecorded) until the kernel's 1 s attribute and entry caches of the workspace have expired, so
    /// the next calls reach the daemon instead of being answered from the cache.
    func pauseForCaches() { usleep(1_200_000) }

    /// Records `label = value` or `label = -1 ERRNO`.
    @discardableResult
    func sys(_ label: String, _ body: () -> Int) -> Int {
        errno = 0
        let r = body()
        let e = errno
        lines.append(r < 0 ? "\(label) = -1 \(errnoName(e))" : "\(label) = \(r)")
        if r < 0 { errno = e }
        return r
    }

    /// Like `sys`, but records success as `ok` (for values that differ between runs, e.g. descriptors).
    @discardableResult
    func sysOK(_ label: String, _ body: () -> Int) -> Int {
        errno = 0
        let r = body()
        let e = errno
        lines.append(r < 0 ? "\(label) = -1 \(errnoName(e))" : "\(label) = ok")
        if r < 0 { errno = e }
        return r
    }

    static func digest(_ bytes: [UInt8]) -> String {
        if bytes.count <= 48, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F || $0 == 0x0A }) {
            return "\(bytes.count)B \"\(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\n", with: "\\n"))\""
        }
        let zeros = bytes.allSatisfy { $0 == 0 }
        return "\(bytes.count)B sha256:\(sha256Hex(bytes).prefix(16))" + (zeros ? " (all zero)" : "")
    }

    /// Type, size (not of directories), permission bits and link count; `extended` adds owner and group,
    /// `times` the mtime (only comparable after the case set it).
    static func describe(_ st: stat, extended: Bool, times: Bool = false, nlink: Bool = true) -> String {
        let type = fileType(st.st_mode)
        var s = "type=\(type)"
        if type != "d" { s += " size=\(st.st_size)" }
        if type == "c" || type == "b" { s += " rdev=\(devMajor(st.st_rdev)):\(devMinor(st.st_rdev))" }
        s += " mode=\(String(UInt32(st.st_mode) & 0o7777, radix: 8))" + (nlink ? " nlink=\(st.st_nlink)" : "")
        if extended { s += " uid=\(st.st_uid) gid=\(st.st_gid)" }
        if times { s += " mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" }
        return s
    }

    static func flagNames(_ flags: Int32) -> String {
        var parts: [String] = []
        switch flags & O_ACCMODE {
        case O_WRONLY: parts.append("WRONLY")
        case O_RDWR: parts.append("RDWR")
        default: parts.append("RDONLY")
        }
        let named: [(Int32, String)] = [(O_CREAT, "CREAT"), (O_EXCL, "EXCL"), (O_TRUNC, "TRUNC"), (O_APPEND, "APPEND"),
                                        (O_DIRECTORY, "DIRECTORY"), (O_NOFOLLOW, "NOFOLLOW")]
        for (bit, name) in named where flags & bit != 0 { parts.append(name) }
        return parts.joined(separator: "|")
    }

    // MARK: Descriptors

    /// open(2) with O_CLOEXEC; returns the descriptor or -1.
    @discardableResult
    func open(_ rel: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        Int32(sysOK("open(\(rel), \(Self.flagNames(flags))\(flags & O_CREAT != 0 ? ", 0" + String(mode, radix: 8) : ""))") {
            Int(Glibc.open(path(rel), flags | O_CLOEXEC, mode))
        })
    }

    /// Opens and closes again (for cases that only care whether open works).
    func openClose(_ rel: String, _ flags: Int32, _ mode: mode_t = 0o644) {
        let fd = open(rel, flags, mode)
        if fd >= 0 { Glibc.close(fd) }
    }

    func close(_ fd: Int32, _ tag: String) { sys("close(\(tag))") { Int(Glibc.close(fd)) } }

    func write(_ fd: Int32, _ tag: String, _ bytes: [UInt8]) {
        sys("write(\(tag), \(Self.digest(bytes)))") { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, bytes.count) } }
    }

    func write(_ fd: Int32, _ tag: String, _ text: String) { write(fd, tag, Array(text.utf8)) }

    func pwrite(_ fd: Int32, _ tag: String, _ bytes: [UInt8], at offset: Int) {
        sys("pwrite(\(tag), \(Self.digest(bytes)) @\(offset))") { pwriteFully(fd, bytes, offset: offset) }
    }

    func pwrite(_ fd: Int32, _ tag: String, _ text: String, at offset: Int) { pwrite(fd, tag, Array(text.utf8), at: offset) }

    func pread(_ fd: Int32, _ tag: String, _ count: Int, at offset: Int) {
        errno = 0
        let (n, bytes) = preadFully(fd, count: count, offset: offset)
        let e = errno
        lines.append("pread(\(tag), \(count)@\(offset)) = " + (n < 0 ? "-1 \(errnoName(e))" : Self.digest(bytes)))
    }

    func fstat(_ fd: Int32, _ tag: String, extended: Bool = false, times: Bool = false) {
        var st = Glibc.stat()
        errno = 0
        let r = Glibc.fstat(fd, &st)
        lines.append("fstat(\(tag)) = " + (r == 0 ? Self.describe(st, extended: extended, times: times) : "-1 \(errnoName(errno))"))
    }

    func ftruncate(_ fd: Int32, _ tag: String, _ size: Int) { sys("ftruncate(\(tag), \(size))") { Int(Glibc.ftruncate(fd, off_t(size))) } }
    func fsync(_ fd: Int32, _ tag: String) { sys("fsync(\(tag))") { Int(Glibc.fsync(fd)) } }
    func fdatasync(_ fd: Int32, _ tag: String) { sys("fdatasync(\(tag))") { Int(Glibc.fdatasync(fd)) } }

    // MARK: Paths

    /// `nlink: false` leaves the link count out (for the top directory, whose count is checked by one case).
    func stat(_ rel: String, extended: Bool = false, times: Bool = false, nlink: Bool = true) {
        var st = Glibc.stat()
        errno = 0
        let r = cStat(path(rel), &st)
        lines.append("stat(\(rel)) = " + (r == 0 ? Self.describe(st, extended: extended, times: times, nlink: nlink) : "-1 \(errnoName(errno))"))
    }

    func lstat(_ rel: String) {
        var st = Glibc.stat()
        errno = 0
        let r = cLstat(path(rel), &st)
        lines.append("lstat(\(rel)) = " + (r == 0 ? Self.describe(st, extended: false) : "-1 \(errnoName(errno))"))
    }

    /// The whole file (open + pread to EOF + close).
    func readFile(_ rel: String) {
        let fd = Glibc.open(path(rel), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            lines.append("content(\(rel)) = -1 \(errnoName(errno))")
            return
        }
        defer { Glibc.close(fd) }
        do {
            lines.append("content(\(rel)) = " + Self.digest(try preadAll(fd: fd, path: path(rel))))
        } catch let e as SysError {
            lines.append("content(\(rel)) = -1 \(errnoName(e.code))")
        } catch {
            lines.append("content(\(rel)) = \(error)")
        }
    }

    /// Names with their d_type, sorted.
    func list(_ rel: String) {
        guard let dir = opendir(path(rel)) else {
            lines.append("list(\(rel)) = -1 \(errnoName(errno))")
            return
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name == "." || name == ".." { continue }
            let t: String
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_REG): t = "f"
            case Int32(DT_DIR): t = "d"
            case Int32(DT_LNK): t = "l"
            case Int32(DT_FIFO): t = "p"
            case Int32(DT_SOCK): t = "s"
            case Int32(DT_CHR): t = "c"
            case Int32(DT_BLK): t = "b"
            default: t = "?\(entry.pointee.d_type)"
            }
            names.append("\(name):\(t)")
        }
        lines.append("list(\(rel)) = [\(names.sorted().joined(separator: ", "))]")
    }

    func truncate(_ rel: String, _ size: Int) { sys("truncate(\(rel), \(size))") { Int(Glibc.truncate(path(rel), off_t(size))) } }
    func rename(_ a: String, _ b: String) { sys("rename(\(a), \(b))") { Int(Glibc.rename(path(a), path(b))) } }
    func renameNoReplace(_ a: String, _ b: String) {
        sys("renameat2(\(a), \(b), RENAME_NOREPLACE)") { Int(sysRenameat2(path(a), path(b), 1)) }
    }
    func renameExchange(_ a: String, _ b: String) {
        sys("renameat2(\(a), \(b), RENAME_EXCHANGE)") { Int(sysRenameat2(path(a), path(b), 2)) }
    }
    func unlink(_ rel: String) { sys("unlink(\(rel))") { Int(Glibc.unlink(path(rel))) } }
    func mkdir(_ rel: String, _ mode: mode_t = 0o755) { sys("mkdir(\(rel), 0\(String(mode, radix: 8)))") { Int(Glibc.mkdir(path(rel), mode)) } }
    func rmdir(_ rel: String) { sys("rmdir(\(rel))") { Int(Glibc.rmdir(path(rel))) } }
    func symlink(_ target: String, _ rel: String) { sys("symlink(\(target), \(rel))") { Int(Glibc.symlink(target, path(rel))) } }
    func link(_ a: String, _ b: String) { sys("link(\(a), \(b))") { Int(Glibc.link(path(a), path(b))) } }
    func chmod(_ rel: String, _ mode: mode_t) { sys("chmod(\(rel), 0\(String(mode, radix: 8)))") { Int(Glibc.chmod(path(rel), mode)) } }
    func chown(_ rel: String, _ uid: uid_t, _ gid: gid_t) { sys("chown(\(rel), \(Int32(bitPattern: uid)), \(Int32(bitPattern: gid)))") { Int(Glibc.chown(path(rel), uid, gid)) } }

    // MARK: Special files

    func mkfifo(_ rel: String, _ mode: mode_t = 0o644) { sys("mkfifo(\(rel), 0\(String(mode, radix: 8)))") { Int(Glibc.mkfifo(path(rel), mode)) } }

    /// `type` is S_IFCHR or S_IFBLK (root only), or S_IFIFO / S_IFSOCK / S_IFREG.
    func mknod(_ rel: String, _ type: mode_t, _ mode: mode_t, major: UInt32 = 0, minor: UInt32 = 0) {
        sys("mknod(\(rel), \(fileType(type)) 0\(String(mode, radix: 8)), \(major):\(minor))") {
            Int(Glibc.mknod(path(rel), type | mode, devMake(major, minor)))
        }
    }

    /// Binds a new UNIX socket to `rel` (through /proc/self/fd: a sockaddr_un holds only 108 bytes of path) and
    /// connects a second socket to it; both are closed after.
    func bindSocket(_ rel: String) {
        let slash = rel.lastIndex(of: "/")
        let dir = slash.map { String(rel[..<$0]) } ?? ""
        let name = slash.map { String(rel[rel.index(after: $0)...]) } ?? rel
        let dirFD = Glibc.open(path(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if dirFD >= 0 { Glibc.close(dirFD) } }
        let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0), client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(server); Glibc.close(client) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let text = Array("/proc/self/fd/\(dirFD)/\(name)".utf8CString)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: text.prefix(raw.count - 1).map { UInt8(bitPattern: $0) })
        }
        let size = socklen_t(MemoryLayout<sockaddr_un>.size)
        sys("bind(\(rel))") { withUnsafePointer(to: &address) { Int(Glibc.bind(server, UnsafeRawPointer($0).assumingMemoryBound(to: sockaddr.self), size)) } }
        sys("listen(\(rel))") { Int(Glibc.listen(server, 1)) }
        sys("connect(\(rel))") { withUnsafePointer(to: &address) { Int(Glibc.connect(client, UnsafeRawPointer($0).assumingMemoryBound(to: sockaddr.self), size)) } }
    }

    /// Writes through a FIFO and reads the bytes back (opened O_RDWR, so neither end blocks).
    func fifoRoundTrip(_ rel: String, _ text: String) {
        let fd = Glibc.open(path(rel), O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return note("fifo(\(rel)) = -1 \(errnoName(errno))") }
        defer { Glibc.close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        var back = [UInt8](repeating: 0, count: bytes.count)
        let read = back.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        note("fifo(\(rel)) = wrote \(written), read \(read) \"\(String(decoding: back.prefix(max(0, read)), as: UTF8.self))\"")
    }

    func readlink(_ rel: String) {
        var buffer = [CChar](repeating: 0, count: 4096)
        errno = 0
        let n = Glibc.readlink(path(rel), &buffer, buffer.count - 1)
        lines.append("readlink(\(rel)) = " + (n < 0 ? "-1 \(errnoName(errno))" : "\"\(cArrayString(Array(buffer[0..<n]) + [0]))\""))
    }

    enum TimeField {
        case now, omit
        case at(Int, Int)
        var spec: timespec {
            switch self {
            case .now: return timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)  // UTIME_NOW
            case .omit: return timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT
            case .at(let s, let n): return timespec(tv_sec: s, tv_nsec: n)
            }
        }
        var label: String {
            switch self {
            case .now: return "NOW"
            case .omit: return "OMIT"
            case .at(let s, let n): return "\(s).\(n)"
            }
        }
    }

    /// utimensat with each field given on its own (a time, UTIME_NOW or UTIME_OMIT).
    func utimens(_ rel: String, atime: TimeField, mtime: TimeField) {
        var times = [atime.spec, mtime.spec]
        sys("utimensat(\(rel), atime \(atime.label), mtime \(mtime.label))") { Int(utimensat(AT_FDCWD, path(rel), &times, AT_SYMLINK_NOFOLLOW)) }
    }

    /// atime, mtime and ctime of `rel` (lstat): each as "recent" when within two minutes of now (the moment a
    /// call set it, which differs between two runs), else exactly.
    func times(_ rel: String) {
        var st = Glibc.stat()
        guard cLstat(path(rel), &st) == 0 else { return note("times(\(rel)) = -1 \(errnoName(errno))") }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        func show(_ t: timespec) -> String { abs(t.tv_sec - now.tv_sec) < 120 ? "recent" : "\(t.tv_sec).\(t.tv_nsec)" }
        note("times(\(rel)) = atime \(show(st.st_atim)), mtime \(show(st.st_mtim)), ctime \(show(st.st_ctim))")
    }

    func utimens(_ rel: String, atime: (Int, Int), mtime: (Int, Int)) {
        var times = [timespec(tv_sec: atime.0, tv_nsec: atime.1), timespec(tv_sec: mtime.0, tv_nsec: mtime.1)]
        sys("utimensat(\(rel), \(mtime.0).\(mtime.1))") { Int(utimensat(AT_FDCWD, path(rel), &times, 0)) }
    }

    func setxattr(_ rel: String, _ name: String, _ value: [UInt8], flags: Int32 = 0) {
        let f = flags == XATTR_CREATE_FLAG ? "CREATE" : (flags == XATTR_REPLACE_FLAG ? "REPLACE" : "0")
        sys("setxattr(\(rel), \(name), \(Self.digest(value)), \(f))") { Int(sysSetxattr(path(rel), name, value, flags)) }
    }

    func setxattr(_ rel: String, _ name: String, _ value: String, flags: Int32 = 0) { setxattr(rel, name, Array(value.utf8), flags: flags) }

    /// With `capacity` nil: asks for the size first, then reads the value (both recorded).
    func getxattr(_ rel: String, _ name: String, capacity: Int? = nil) {
        errno = 0
        if let capacity {
            let (n, value) = sysGetxattr(path(rel), name, capacity: capacity)
            lines.append("getxattr(\(rel), \(name), cap \(capacity)) = " + (n < 0 ? "-1 \(errnoName(errno))" : (capacity == 0 ? "\(n)" : Self.digest(value))))
            return
        }
        let (size, _) = sysGetxattr(path(rel), name, capacity: 0)
        guard size >= 0 else {
            lines.append("getxattr(\(rel), \(name)) = -1 \(errnoName(errno))")
            return
        }
        let (n, value) = sysGetxattr(path(rel), name, capacity: max(size, 1))
        lines.append("getxattr(\(rel), \(name)) = size \(size), " + (n < 0 ? "-1 \(errnoName(errno))" : Self.digest(value)))
    }

    /// The user.* names, sorted (other namespaces differ between file systems and are not asked about).
    func listxattr(_ rel: String) {
        errno = 0
        let (size, _) = sysListxattr(path(rel), capacity: 0)
        guard size >= 0 else {
            lines.append("listxattr(\(rel)) = -1 \(errnoName(errno))")
            return
        }
        let (n, names) = sysListxattr(path(rel), capacity: size + 1)
        lines.append("listxattr(\(rel)) = " + (n < 0 ? "-1 \(errnoName(errno))" : "[\(names.filter { $0.hasPrefix("user.") }.sorted().joined(separator: ", "))]"))
    }

    func removexattr(_ rel: String, _ name: String) { sys("removexattr(\(rel), \(name))") { Int(sysRemovexattr(path(rel), name)) } }

    func statfs(_ rel: String) {
        var st = StatFS()
        errno = 0
        let r = sysStatfs(path(rel), &st)
        lines.append("statfs(\(rel)) = " + (r == 0 ? "ok bsize>0:\(st.f_bsize > 0) namelen>0:\(st.f_namelen > 0)" : "-1 \(errnoName(errno))"))
    }

    /// Runs `python3 -c SCRIPT ROOT` and records exit status and stdout (which must not print paths).
    func python(_ script: String) {
        let r = spawn(["python3", "-c", script, root])
        lines.append("python = exit \(r.exitCode.map(String.init) ?? "-") signal \(r.signal.map(String.init) ?? "-")\(r.timedOut ? " TIMED OUT" : "")")
        for l in r.out.split(separator: "\n") { lines.append("python> \(l)") }
        if !r.succeeded {
            for l in r.err.split(separator: "\n").suffix(6) { lines.append("python! \(l.replacingOccurrences(of: root, with: "ROOT"))") }
        }
    }
}

/// stat(2) and lstat(2) under names that do not collide with `Recorder`'s methods.
func cStat(_ path: String, _ st: inout stat) -> Int32 { stat(path, &st) }
func cLstat(_ path: String, _ st: inout stat) -> Int32 { lstat(path, &st) }

// glibc's dev_t encoding (<sys/sysmacros.h> macros, which Swift does not see).
func devMake(_ major: UInt32, _ minor: UInt32) -> dev_t {
    let ma = UInt64(major), mi = UInt64(minor)
    return dev_t(((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff))
}
func devMajor(_ dev: dev_t) -> UInt32 { UInt32(((UInt64(dev) >> 32) & 0xffff_f000) | ((UInt64(dev) >> 8) & 0xfff)) }
func devMinor(_ dev: dev_t) -> UInt32 { UInt32(((UInt64(dev) >> 12) & 0xffff_ff00) | (UInt64(dev) & 0xff)) }
