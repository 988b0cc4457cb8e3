/// Command line: `AssetBench [import] [--work DIR] [--scale F] [--assetfs PATH] [--skip-peers]` or
/// `AssetBench read [--work DIR] [--scale F] [--assetfs PATH] [--cache-size S] [--tiny-versions N] [--random-reads N]`.
struct Options {
    enum Mode { case importComparison, read, shared, upload, lineage }
    var mode = Mode.importComparison
    var work = "/tmp/assetfs-bench"
    var workGiven = false
    var scale = 1.0
    var assetfs = ".build/release/assetfs"
    var skipPeers = false
    /// An older assetfs binary measured beside `assetfs` in the same run (import and read modes), into a store of
    /// its own: what a change costs or buys, measured on the same machine at the same moment.
    var baseline: String?
    // Read mode only; nil: the mount's default.
    var cacheSize: String?
    var tinyVersions = 1000
    var randomReads = 2000
    /// Read mode: the targets to measure (nil: all).
    var only: Set<String>?
    /// Lineage mode: interleaved rounds.
    var rounds = 6

    static let usage = """
        usage: AssetBench [import] [--work DIR] [--scale F] [--assetfs PATH] [--baseline PATH] [--skip-peers]
               AssetBench read [--work DIR] [--scale F] [--assetfs PATH] [--baseline PATH] [--cache-size S]
                               [--tiny-versions N] [--random-reads N] [--only NAME,...]
               AssetBench shared [--work DIR] [--scale F] [--assetfs PATH] [--random-reads N] [--skip-peers]
               AssetBench upload [--work DIR]
               AssetBench lineage [--work DIR] [--rounds N] [--random-reads N]
          import           (default) import comparison: every version into assetfs, borg and restic
          read             read path of version 3 through assetfs mount, borg mount and restic mount against an
                           assetfs export on local disk (root only: drops the page cache; see ReadBench.swift)
          shared           a shared store (SeaweedFS S3 + PostgreSQL started by scripts/shared-servers.sh, run from
                           the repository root, as root) against a local store, restic into the same S3 server and
                           plain objects fetched with curl (see SharedBench.swift; default work directory
                           /tmp/assetfs-sharedbench); then JuiceFS, rclone mount and s3fs on the same servers
                           (FleetBench.swift; --skip-peers leaves them out)
          upload           one PUT against multipart uploads by object size, into SeaweedFS started by
                           scripts/shared-servers.sh (UploadBench.swift; default work directory /tmp/assetfs-uploadbench)
          lineage          lineage on vs --no-lineage, default and -o ro mounts, in interleaved rounds (median), on the
                           store and export a `read` run left in its work directory (LineageCost.swift)
          --work DIR       work directory; its src, store, borg, restic, cache and logs folders are recreated
                           (default /tmp/assetfs-bench)
          --scale F        multiplies file counts of the data set (default 1.0: about 420 MB at v1, 500 MB at v6)
          --assetfs PATH   assetfs binary (default .build/release/assetfs); if missing its columns show n/a
          --baseline PATH  import and read modes: an older assetfs binary, run beside the new one in the same run
                           into a store of its own (store-old), reported as assetfs-old with new/old ratios
          --skip-peers     import mode: do not run borg and restic; shared mode: not JuiceFS, rclone and s3fs
          --cache-size S   read mode: the mounts' --cache-size (default: each binary's own default)
          --tiny-versions N  read mode: versions of a separate tiny asset created before timing the mount start
                           (default 1000)
          --random-reads N read mode: random 4 KiB preads per pass (default 2000)
          --only NAME,...  read mode: measure only these targets (and native), e.g. assetfs-ro,assetfs-ro-nolineage
          In read mode the default work directory is /tmp/assetfs-readbench (its src, store, borg, restic,
          cache, logs, export, tiny and mnt folders are recreated).
        """

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let v = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
            return v
        }
        func count(_ flag: String) throws -> Int {
            let text = try value(flag)
            guard let n = Int(text), n > 0, n <= 1_000_000 else { throw BenchError("bad \(flag) \(text)") }
            return n
        }
        if let first = rest.first, ["read", "import", "shared", "upload", "lineage"].contains(first) {
            options.mode = ["read": .read, "shared": .shared, "upload": .upload, "lineage": .lineage][first] ?? .importComparison
            rest = rest.dropFirst()
        }
        while let arg = rest.popFirst() {
            switch arg {
            case "--work": options.work = try value(arg); options.workGiven = true
            case "--scale":
                let text = try value(arg)
                guard let s = Double(text), s > 0, s <= 100 else { throw BenchError("bad --scale \(text)") }
                options.scale = s
            case "--assetfs": options.assetfs = try value(arg)
            case "--baseline": options.baseline = try value(arg)
            case "--skip-peers": options.skipPeers = true
            case "--cache-size": options.cacheSize = try value(arg)
            case "--tiny-versions": options.tinyVersions = try count(arg)
            case "--random-reads": options.randomReads = try count(arg)
            case "--only": options.only = Set(try value(arg).split(separator: ",").map(String.init))
            case "--rounds": options.rounds = try count(arg)
            case "-h", "--help": throw BenchError(usage)
            default: throw BenchError("unknown argument \(arg)\n\(usage)")
            }
        }
        if options.mode == .read && !options.workGiven { options.work = "/tmp/assetfs-readbench" }
        if options.mode == .shared && !options.workGiven { options.work = "/tmp/assetfs-sharedbench" }
        if options.mode == .upload && !options.workGiven { options.work = "/tmp/assetfs-uploadbench" }
        return options
    }
}
