/// Command line: `AssetBench [--work DIR] [--scale F] [--assetfs PATH] [--skip-peers]`.
struct Options {
    var work = "/tmp/assetfs-bench"
    var scale = 1.0
    var assetfs = ".build/release/assetfs"
    var skipPeers = false

    static let usage = """
        usage: AssetBench [--work DIR] [--scale F] [--assetfs PATH] [--skip-peers]
          --work DIR       work directory; its src, store, borg, restic, cache and logs folders are recreated
                           (default /tmp/assetfs-bench)
          --scale F        multiplies file counts of the data set (default 1.0: about 420 MB at v1, 500 MB at v6)
          --assetfs PATH   assetfs binary (default .build/release/assetfs); if missing its columns show n/a
          --skip-peers     do not run borg and restic
        """

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let v = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
            return v
        }
        while let arg = rest.popFirst() {
            switch arg {
            case "--work": options.work = try value(arg)
            case "--scale":
                let text = try value(arg)
                guard let s = Double(text), s > 0, s <= 100 else { throw BenchError("bad --scale \(text)") }
                options.scale = s
            case "--assetfs": options.assetfs = try value(arg)
            case "--skip-peers": options.skipPeers = true
            case "-h", "--help": throw BenchError(usage)
            default: throw BenchError("unknown argument \(arg)\n\(usage)")
            }
        }
        return options
    }
}
