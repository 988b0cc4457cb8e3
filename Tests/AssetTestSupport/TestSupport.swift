import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the unit, catalog, repository and CLI test targets.

/// The format version a local store's marker (`STORE/assetfs-store.json`) names, or nil if it names none.
public func localStoreFormat(_ store: String) throws -> Int? {
    let data = try Data(contentsOf: URL(fileURLWithPath: store + "/assetfs-store.json"))
    return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["version"] as? Int
}

/// A small deterministic generator (a 64-bit LCG with an output mixer), so every test buffer is reproducible.
public struct TestRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed &* 0x2545_F491_4F6C_DD1D &+ 0x1234_5678 }

    public mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        var z = state
        z ^= z >> 33
        z = z &* 0xFF51_AFD7_ED55_8CCD
        z ^= z >> 33
        z = z &* 0xC4CE_B9FE_1A85_EC53
        return z ^ (z >> 33)
    }
}

/// `count` pseudo-random bytes, the same for the same seed.
public func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = TestRandom(seed: seed)
    return randomBytes(count, using: &generator)
}

/// The next `count` bytes of `generator`: whole 64-bit words, then the low bytes of one word each.
public func randomBytes<G: RandomNumberGenerator>(_ count: Int, using generator: inout G) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        let words = count / 8
        for i in 0..<words { raw.storeBytes(of: generator.next(), toByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<count { raw[i] = UInt8(truncatingIfNeeded: generator.next()) }
    }
    return out
}

/// Compressible, CSV-like text of exactly `count` bytes.
public func textBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = TestRandom(seed: seed)
    var out = [UInt8]()
    out.reserveCapacity(count + 64)
    var row = 0
    while out.count < count {
        let label = ["cat", "dog", "bird", "fish"][Int(generator.next() % 4)]
        out.append(contentsOf: Array("\(row),label=\(label),score=0.\(generator.next() % 1000)\n".utf8))
        row += 1
    }
    return Array(out[0..<count])
}

/// Creates a private temporary directory, runs `body` with its path, and removes it afterwards.
public func withTemporaryDirectory<T>(_ label: String = "store", _ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/assetfs-tests-\(label)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw TestFailure("mkdtemp failed: \(String(cString: strerror(errno)))") }
    let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer { removeTree(path) }
    return try body(path)
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Removes a directory tree (rm -rf) without following symlinks; names are handled as raw bytes. No recursion
/// and no PATH_MAX limit (unlinkat below directory descriptors), so it copes with very deep trees; directories
/// below `path` are made accessible (0700) before their contents are removed. What cannot be removed is skipped.
public func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT != S_IFDIR {
        unlink(path)
        return
    }
    let top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard top >= 0 else { return }
    // Stack of (directory fd, its name in the parent, children that could not be removed and are skipped).
    var stack: [(fd: Int32, name: [CChar], skip: Set<[UInt8]>)] = [(top, [], [])]
    while let current = stack.last {
        var descended = false
        for name in rawNames(current.fd) where !current.skip.contains(name) {
            let c = name.map { CChar(bitPattern: $0) } + [0]
            if unlinkat(current.fd, c, 0) == 0 { continue }
            if errno == EISDIR || errno == EPERM {
                if unlinkat(current.fd, c, AT_REMOVEDIR) == 0 { continue }
                let child = openat(current.fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    fchmod(child, 0o700)
                    stack.append((child, c, []))
                    descended = true
                    break
                }
            }
            stack[stack.count - 1].skip.insert(name)
        }
        if descended { continue }
        let done = stack.removeLast()
        close(done.fd)
        if let parent = stack.last, unlinkat(parent.fd, done.name, AT_REMOVEDIR) != 0 {
            stack[stack.count - 1].skip.insert(done.name.dropLast().map { UInt8(bitPattern: $0) })
        }
    }
    rmdir(path)
}

/// The names in a directory as raw bytes, without "." and "..".
public func rawNames(_ fd: Int32) -> [[UInt8]] {
    let copy = dup(fd)
    guard copy >= 0, let dir = fdopendir(copy) else { return [] }
    defer { closedir(dir) }
    rewinddir(dir)  // the dup shares its offset with `fd`: a second listing of the same descriptor starts over
    var names: [[UInt8]] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> [UInt8] in
            let bytes = raw.bindMemory(to: UInt8.self)
            return Array(bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)])
        }
        if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
    }
    return names
}

public func readWhole(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read \(path)") }
    return [UInt8](data)
}

/// Overwrites one byte of a file in place with its bitwise complement.
public func flipByte(in path: String, at offset: UInt64) throws {
    let fd = open(path, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var byte: UInt8 = 0
    guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw TestFailure("cannot read byte \(offset) of \(path)") }
    byte = ~byte
    guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw TestFailure("cannot write byte \(offset) of \(path)") }
}

/// Files (not directories) directly or indirectly below `path`.
public func regularFiles(under path: String) -> [String] {
    guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
    var out: [String] = []
    while let item = walker.nextObject() as? String {
        var st = stat()
        if lstat(path + "/" + item, &st) == 0, st.st_mode & S_IFMT == S_IFREG { out.append(path + "/" + item) }
    }
    return out.sorted()
}

/// Runs the sqlite3 command-line shell on `database` with one SQL text; returns its exit status and output.
public func sqlite3CLI(_ database: String, _ sql: String) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = ["-batch", database, sql]
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
