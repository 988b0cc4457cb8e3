import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the package, the build and the binary under test are (for the test targets that run `assetfs`).
public enum Paths {
    /// The package root, three path components above this file (`Tests/AssetTestSupport/Paths.swift`).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The directory of the running test binary (`<scratch path>/<triple>/debug`): the products of the same
    /// `swift build` as this test run. Nil when it cannot be read.
    public static let buildProducts: String? = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (exe as NSString).deletingLastPathComponent
    }()

    /// The build's scratch directory (`.build` unless `swift build --scratch-path` named another): two levels
    /// above `buildProducts`.
    public static let buildRoot: String = {
        guard let products = buildProducts else { return packageRoot + "/.build" }
        return ((products as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
    }()

    /// The `assetfs` binary under test: the one built next to the running test binary, so that a build with
    /// `--scratch-path` tests its own binary; `<package root>/.build/debug/assetfs` otherwise (and spelled that
    /// way when it is the same file).
    public static let assetfs: String = {
        let conventional = packageRoot + "/.build/debug/assetfs"
        guard let products = buildProducts, FileManager.default.isExecutableFile(atPath: products + "/assetfs") else {
            return conventional
        }
        let beside = products + "/assetfs"
        return realPath(beside) == realPath(conventional) ? conventional : beside
    }()

    /// Fails (never skips) when the binary has not been built.
    public static func requireBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: assetfs) else {
            throw TestFailure("the assetfs binary is missing at \(assetfs): build it first with `swift build --build-tests` in \(packageRoot)")
        }
    }

    private static func realPath(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        return String(cString: real)
    }
}
