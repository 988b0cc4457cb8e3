import ArgumentParser
import AssetCatalog
import AssetRepository
import AssetSharedStore
import Foundation

/// Options every store command shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store: a directory, or s3://BUCKET/PREFIX for a store shared by many hosts (default: $ASSETFS_STORE, else \(StoreOptions.defaultPath)).")
    var store: String?

    @Option(name: .long, help: "Shared stores: the PostgreSQL catalog (libpq URL, no password: use ~/.pgpass or PGPASSWORD); needed by init, else read from the store.")
    var catalog: String?

    @Option(name: .customLong("s3-endpoint"), help: "Shared stores: the S3 endpoint URL (default: $AWS_ENDPOINT_URL).")
    var s3Endpoint: String?

    @Option(name: .customLong("disk-cache"), help: "Shared stores: this host's verified chunk cache on disk (default: $ASSETFS_DISK_CACHE, else /var/cache/assetfs for root, ~/.cache/assetfs for others).")
    var diskCache: String?

    @Option(name: .customLong("io-timeout"), help: "Shared stores: seconds a read of the object store may take, retries included, before it fails (a mount answers EIO) (default: 30).")
    var ioTimeout: Double?

    @Option(name: .customLong("disk-cache-size"), help: "Shared stores: the disk cache's bound, e.g. 50G (default: 10G). Not --cache-size, which is a mount's memory.")
    var diskCacheSize: String?

    @Flag(name: [.short, .long], help: "Print only errors.")
    var quiet = false

    static var defaultPath: String {
        if geteuid() == 0 { return "/var/lib/assetfs" }
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/assetfs" }
        return (env["HOME"] ?? ".") + "/.local/share/assetfs"
    }

    var path: String {
        if let store { return store }
        if let env = ProcessInfo.processInfo.environment["ASSETFS_STORE"], !env.isEmpty { return env }
        return Self.defaultPath
    }

    /// Where the store is: a directory (made absolute) or a URL.
    func location() throws -> StoreLocation {
        switch try StoreLocation(parsing: path) {
        case .local(let directory): return .local(path: absolute(directory))
        case let other: return other
        }
    }

    /// The store as an argument for a child process: an absolute directory or the URL.
    var argument: String {
        get throws { try location().description }
    }

    func sharedSettings() throws -> SharedStoreSettings {
        var bytes: UInt64?
        if let diskCacheSize {
            guard let parsed = parseSize(diskCacheSize) else {
                throw ValidationError("invalid --disk-cache-size '\(diskCacheSize)': use a number with K, M, G or T, e.g. 50G")
            }
            bytes = UInt64(parsed)
        }
        var settings = SharedStoreSettings(catalog: catalog, s3Endpoint: s3Endpoint, diskCache: diskCache.map(absolute), diskCacheBytes: bytes)
        if let ioTimeout {
            guard ioTimeout >= 1 && ioTimeout <= 3600 else { throw ValidationError("invalid --io-timeout \(ioTimeout): give 1 to 3600 seconds") }
            settings.ioTimeout = ioTimeout
        }
        return settings
    }

    func open() throws -> Repository { try Stores.open(try location(), settings: try sharedSettings()) }

    /// `open`, with retries of the object store reported to `onRetry` (a mount logs them).
    func open(onRetry: @escaping @Sendable (String) -> Void) throws -> Repository {
        var settings = try sharedSettings()
        settings.onRetry = onRetry
        return try Stores.open(try location(), settings: settings)
    }

    /// The shared-store options as given, for a child process (the daemon) to open the same store the same way.
    var sharedArguments: [String] {
        var out: [String] = []
        if let catalog { out += ["--catalog", catalog] }
        if let s3Endpoint { out += ["--s3-endpoint", s3Endpoint] }
        if let diskCache { out += ["--disk-cache", absolute(diskCache)] }
        if let diskCacheSize { out += ["--disk-cache-size", diskCacheSize] }
        if let ioTimeout { out += ["--io-timeout", "\(ioTimeout)"] }
        return out
    }

    /// Progress is drawn on stderr, so only when stderr is a terminal (git's rule) and --quiet is off.
    var showProgress: Bool { !quiet && isatty(2) == 1 }
}

struct JSONFlag: ParsableArguments {
    @Flag(name: .long, help: "Print JSON instead of a table (schema in README.md).")
    var json = false
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func parseRef(_ text: String) throws -> Ref {
    do {
        return try Ref.parse(text)
    } catch let error as Ref.ParseError {
        throw ValidationError(error.description)
    }
}

/// `--input REF` on import and commit: inputs declared by hand (Documentation/Lineage.md).
struct InputOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: "A version this one was made from, ASSET@vN or ASSET@TAG (repeatable).")
    var refs: [String] = []

    func validate() throws {
        for ref in refs { _ = try parseRef(ref) }
    }

    /// Each REF as the version it names now.
    func declared(_ repo: Repository) throws -> [LineageInput] {
        try refs.map { try repo.declaredInput(try parseRef($0)) }
    }
}

/// `--meta-file FILE` and `--metrics-from PATH` on import (issue 19): metadata from a JSON file.
struct MetaFileOptions: ParsableArguments {
    @Option(help: "A JSON (or .yaml/.yml) file of metrics or parameters, flattened to dotted keys (val.loss=0.3) and stored as metadata.")
    var metaFile: String?
    @Option(help: "A JSON or YAML file inside the imported directory (e.g. metrics.json) to take metadata from, like --meta-file.")
    var metricsFrom: String?

    /// The items of both, `--meta-file` first; `root` is the directory being imported.
    func items(root: String) throws -> [MetaItem] {
        var out: [MetaItem] = []
        if let metaFile { out += try MetaFile.items(file: metaFile) }
        if let metricsFrom {
            guard !metricsFrom.hasPrefix("/"), !metricsFrom.split(separator: "/").contains("..") else {
                throw RepositoryError(.usage, "--metrics-from names a file inside the imported directory, e.g. metrics.json; got \(metricsFrom)")
            }
            out += try MetaFile.items(file: root + "/" + metricsFrom)
        }
        return out
    }
}
