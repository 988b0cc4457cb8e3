import ArgumentParser
import AssetFUSE
import AssetRepository
import AssetTelemetry
import AssetVFS
import Foundation
import Logging

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount every version of every asset at MOUNTPOINT.",
        discussion: """
            Layout: MOUNTPOINT/<asset>/v<N>/... (read-only), MOUNTPOINT/<asset>/latest and one symlink per tag.
            Stop with `assetfs umount MOUNTPOINT`, `fusermount3 -u MOUNTPOINT`, SIGINT or SIGTERM.

            Example: assetfs mount /assets --background
            """)

    @OptionGroup var store: StoreOptions
    @Argument(help: "An existing empty directory.") var mountpoint: String
    @Flag(help: "Stay in the foreground (what systemd and containers want; the default).") var foreground = false
    @Flag(help: "Return once the mount answers; print the daemon's pid.") var background = false
    @Option(name: .short, help: """
        Mount options, comma-separated: allow_other (lets other users in; implies default_permissions); \
        ro (versions only, no workspaces: what training hosts and containers want; the kernel opens files \
        without asking the daemon, so many small files read faster).
        """)
    var options: [String] = []
    @Option(help: "Memory for chunks read, e.g. 64M, 1G (default: 24M for a local store, 256M for a shared one, of which 32M holds pack ranges being fetched; shared stores also keep a disk cache: --disk-cache-size).") var cacheSize: String?
    @Option(help: """
        Serve metrics in the Prometheus text format at http://ADDRESS/metrics: PORT (loopback), IPv4:PORT or \
        [IPv6]:PORT, e.g. 127.0.0.1:9108. Without it they are only on a local socket, for `assetfs stats --mount`; \
        `off` counts nothing at all.
        """)
    var metrics: String?
    @Flag(help: "Record no lineage (which jobs read which versions and wrote into which workspaces; Documentation/Lineage.md).") var noLineage = false
    @Flag(help: "With -o ro: keep every open visible to lineage (opens and closes go to the daemon again, as on a default mount).") var lineageOpens = false
    @Option(help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Flag(help: .hidden) var syslog = false

    func validate() throws {
        if foreground && background { throw ValidationError("choose one of --foreground and --background") }
        if noLineage && lineageOpens { throw ValidationError("--lineage-opens keeps opens visible to lineage, which --no-lineage turns off: choose one") }
        _ = try parsedOptions()
        if let cacheSize, parseSize(cacheSize) == nil { throw ValidationError("invalid --cache-size '\(cacheSize)': use a number with K, M or G, e.g. 512M") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("invalid --log-level '\(logLevel)'") }
        if let metrics, metrics != "off", MetricsAddress.parse(metrics) == nil {
            throw ValidationError("invalid --metrics '\(metrics)': use PORT, HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9108")
        }
    }

    func parsedOptions() throws -> MountOptions {
        var result = MountOptions()
        for item in options.flatMap({ $0.split(separator: ",").map(String.init) }) {
            switch item {
            case "allow_other": result.allowOther = true
            case "ro": result.readOnly = true
            case "rw", "default_permissions", "nosuid", "nodev", "_netdev", "noatime", "auto_unmount": continue
            default: throw ValidationError("unknown mount option '\(item)' (supported: allow_other, ro)")
            }
        }
        return result
    }

    func run() throws {
        let path = absolute(mountpoint)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw RepositoryError(.usage, "mountpoint \(path) is not an existing directory: create it first (mkdir -p \(path))")
        }
        if MountTable.isMounted(path) {
            throw RepositoryError(.conflict, "something is already mounted on \(path): unmount it first (assetfs umount \(path))")
        }
        if background {
            // Opened here first, so that a missing or damaged store is reported before any daemon starts.
            let repo = try store.open()
            try Daemon.start(arguments: foregroundArguments(path), mountpoint: path, logDirectory: repo.hostDirectory + "/logs",
                             quiet: store.quiet)
            return
        }
        // glibc gives each busy thread its own arena; with 16 FUSE threads that is ~100 MiB of memory held
        // beyond the cache. One arena keeps the daemon within --cache-size plus a small constant; the
        // allocations here are few and large, so the shared arena's lock costs little.
        _ = mallopt(-8 /* M_ARENA_MAX */, 1)
        var logger: Logger
        if syslog {
            // Background daemon: each event goes to syslog/journal and to the log file (its stderr), which
            // also keeps crash messages and works where no syslog daemon runs.
            SyslogLogHandler.bootstrap(identifier: "assetfs")
            logger = Logger(label: "assetfs") { label in
                MultiplexLogHandler([StreamLogHandler.standardError(label: label), SyslogLogHandler()])
            }
        } else {
            logger = Logger(label: "assetfs")
        }
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        // Before the store is opened: metrics made earlier would stay no-ops.
        let telemetry = metrics == "off" ? nil : Telemetry.bootstrap()
        var endpoints: [MetricsEndpoint] = []
        defer { for endpoint in endpoints { endpoint.stop() } }
        if let telemetry, let metrics, let address = MetricsAddress.parse(metrics) {
            do {
                endpoints.append(try MetricsEndpoint.start(address, telemetry: telemetry))
            } catch {
                throw RepositoryError(.failure, "\(error): choose another port with --metrics")
            }
            logger.info("serving metrics", metadata: ["url": "http://\(address)/metrics"])
        }
        // One line per retried object-store request, at most 10 per 10 s (a dead server must not fill the disk).
        let retryLog = LogLimiter()
        let repo = try store.open { [logger] message in retryLog.log(logger, .warning, message) }
        var mountOptions = try parsedOptions()
        let fs = AssetFileSystem(repo: repo, cacheBytes: cacheSize.flatMap(parseSize) ?? repo.defaultCacheBytes, logger: logger,
                                 versionsOnly: mountOptions.readOnly, lineage: !noLineage, lineageSeesOpens: lineageOpens)
        defer { fs.flushLineage() }  // After the unmount: what writers read last goes to their workspaces.
        if let telemetry {
            // The local socket `assetfs stats --mount` reads. The mount neither needs it nor waits for it (a
            // wait added 50 ms to every mount's start).
            let warn: @Sendable (String) -> Void = { [logger] text in logger.warning("no metrics socket for `assetfs stats --mount`: \(text)") }
            do {
                try MountSocket.prepareDirectory()
                endpoints.append(try MetricsEndpoint.start(.unix(MountSocket.path(forMountpoint: path)), telemetry: telemetry,
                                                           wait: false, routes: LineageControl.routes(fs), failed: warn))
            } catch {
                warn("\(error)")
            }
        }
        do {
            mountOptions.source = "assetfs:" + repo.root
            try FUSEMount(fs: fs, mountpoint: path, options: mountOptions, logger: logger).run()
        } catch let error as MountError {
            throw RepositoryError(.failure, error.description)
        }
    }

    /// The same command for the daemon child: foreground, with every option spelled out.
    func foregroundArguments(_ path: String) -> [String] {
        var args = ["mount", path, "--foreground", "--syslog", "--store", (try? store.argument) ?? absolute(store.path),
                    "--log-level", logLevel] + (cacheSize.map { ["--cache-size", $0] } ?? []) + store.sharedArguments
        for o in options { args += ["-o", o] }
        if let metrics { args += ["--metrics", metrics] }
        if noLineage { args.append("--no-lineage") }
        if lineageOpens { args.append("--lineage-opens") }
        return args
    }
}

func absolute(_ path: String) -> String {
    let url = URL(fileURLWithPath: path)
    return url.standardizedFileURL.path
}

/// "512M" -> bytes.
func parseSize(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var digits = text.uppercased()
    if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
    var multiplier = 1
    if let last = digits.last, let unit = units[last] {
        multiplier = unit
        digits.removeLast()
    }
    guard let value = Int(digits), value > 0 else { return nil }
    return value * multiplier
}

struct Umount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount an assetfs mount; its daemon then exits.",
        discussion: "Example: assetfs umount /assets")

    @Argument(help: "The mountpoint.") var mountpoint: String
    @Flag(help: "Detach now even if files are open (they stay readable until closed).") var lazy = false

    func run() throws {
        let path = absolute(mountpoint)
        guard MountTable.isMounted(path) else {
            throw RepositoryError(.failure, "nothing is mounted on \(path)")
        }
        let ok = lazy ? Unmount.detach(path) : Unmount.unmount(path)
        if !ok {
            throw RepositoryError(.failure, "cannot unmount \(path): it is busy (a process has a file open or its working directory inside); close it, or use `assetfs umount --lazy \(path)`")
        }
    }
}
