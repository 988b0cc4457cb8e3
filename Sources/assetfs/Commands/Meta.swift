import ArgumentParser
import AssetCatalog
import AssetRepository
import AssetFUSE
import Foundation

/// A usage error naming the first of `keys` that no version of `asset` has, and the keys there are.
func requireMetaKeys(_ keys: [String], of versions: [VersionInfo], asset: String) throws {
    let known = Set(versions.flatMap { $0.meta.map(\.key) })
    guard let missing = keys.first(where: { !known.contains($0) }) else { return }
    let names = known.sorted().joined(separator: ", ")
    throw RepositoryError(.usage, "no version of \(asset) has the key '\(missing)'; its keys: \(names.isEmpty ? "none (set them with --meta KEY=VALUE)" : names)")
}

/// `assetfs meta`: versions by their metadata, as a table, JSON or CSV (issue 19).
struct MetaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meta",
        abstract: "A table of an asset's versions by metadata: filter, sort, compare numbers as numbers.",
        discussion: """
            Values that are numbers (0.91, 12, -3e-4) compare as numbers; others as text. Versions without a
            --sort key come last.

            Examples: assetfs meta model --keys val.loss,val.acc --sort -val.acc --limit 3
                      assetfs meta model --where 'val.acc>0.9' --where 'optimizer=adam' --csv
            """)

    @OptionGroup var store: StoreOptions
    @Argument(help: "Asset name.") var asset: String
    @Option(help: "Comma-separated keys to show (default: every key, except assetfs.*).") var keys: String?
    @Option(name: .customLong("where"), help: "KEY OP VALUE, OP one of >= <= != = > < (repeatable; all must hold).") var conditions: [String] = []
    @Option(parsing: .unconditional, help: "[-]KEY: sort by KEY, descending with a leading - (--sort -val.acc).") var sort: String?
    @Option(help: "At most N versions.") var limit: Int?
    @Flag(help: "Print JSON: [{version, tags, parent, message, created, meta}].") var json = false
    @Flag(help: "Print CSV: version, tags, parent, message, then one column per key.") var csv = false

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
        if json && csv { throw ValidationError("choose one of --json and --csv") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        for c in conditions {
            do { _ = try MetaCondition(parsing: c) } catch let e as CatalogError { throw ValidationError(e.message) }
        }
    }

    struct Row: Encodable {
        let version: Int
        let tags: [String]
        let parent: Int?
        let message: String
        let created: String
        let meta: [String: MetaValue]
    }

    func run() throws {
        let all = try store.open().catalog.versions(of: asset)
        guard !all.isEmpty else { throw RepositoryError(.notFound, "asset '\(asset)' has no versions (`assetfs assets` lists the assets)") }
        let known = Set(all.flatMap { $0.meta.map(\.key) })
        let parsed = try conditions.map { try MetaCondition(parsing: $0) }
        let order = sort.map(MetaSort.init(parsing:))
        try requireMetaKeys(parsed.map(\.key) + (order.map { [$0.key] } ?? []), of: all, asset: asset)
        var versions = all.filter { v in parsed.allSatisfy { $0.holds(for: v.typedMeta) } }
        if let order { versions = order.ordered(versions) }
        if let limit { versions = Array(versions.prefix(limit)) }
        let columns = keys.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            ?? known.filter { !$0.hasPrefix("assetfs.") }.sorted()
        if json {
            try printJSON(versions.map { v in
                let meta = v.typedMeta.filter { columns.contains($0.key) }
                return Row(version: v.number, tags: v.tags, parent: v.parent, message: v.message, created: Format.iso(v.createdNs), meta: meta)
            })
            return
        }
        func text(_ value: MetaValue?) -> String { value?.text ?? "" }
        let header = ["VERSION", "TAGS", "PARENT", "MESSAGE"] + columns
        let rows = versions.map { v in
            ["v\(v.number)", v.tags.joined(separator: ","), v.parent.map { "v\($0)" } ?? "", v.message]
                + columns.map { text(v.typedMeta[$0]) }
        }
        if csv {
            for row in [header.map { $0.lowercased() }] + rows { print(row.map(Self.csvField).joined(separator: ",")) }
            return
        }
        print(Format.table(header, rows.map { $0.map { $0.isEmpty ? "-" : $0 } }))
    }

    /// RFC 4180: quoted when it holds a comma, a quote or a line break; quotes doubled.
    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// `assetfs plot`: metrics over versions, as an SVG (or PNG) chart or terminal sparklines (issue 19).
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Chart metadata over versions: an SVG or PNG file, or sparklines at the terminal.",
        discussion: """
            One point per version whose KEY is a number; tagged versions are marked. PNG is drawn from the SVG
            with rsvg-convert (Debian package librsvg2-bin).

            Examples: assetfs plot model val.acc val.loss --out metrics.svg
                      assetfs plot model val.acc --x created
            """)

    enum XAxis: String, ExpressibleByArgument, CaseIterable { case version, created }

    @OptionGroup var store: StoreOptions
    @Argument(help: "Asset name.") var asset: String
    @Argument(help: "Metadata keys to plot.") var keys: [String]
    @Option(help: "Write the chart to FILE.svg or FILE.png instead of printing sparklines.") var out: String?
    @Option(help: "version (default) or created.") var x: XAxis = .version

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
        if keys.isEmpty { throw ValidationError("name at least one metadata key to plot, e.g. assetfs plot \(asset) val.acc") }
        if let out, !(out.hasSuffix(".svg") || out.hasSuffix(".png")) { throw ValidationError("--out must end in .svg or .png, got \(out)") }
    }

    func run() throws {
        let versions = try store.open().catalog.versions(of: asset)
        try requireMetaKeys(keys, of: versions, asset: asset)
        let chart = MetricChart(asset: asset, versions: versions, keys: keys, byCreationTime: x == .created)
        guard let out else {
            for line in chart.sparklines(width: Terminal.columns()) { print(line) }
            return
        }
        let svg = chart.svg()
        if out.hasSuffix(".svg") {
            try Data(svg.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
        } else {
            guard let rsvg = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw RepositoryError(.failure, "PNG needs rsvg-convert (apt-get install librsvg2-bin); or write --out \((out as NSString).deletingPathExtension).svg")
            }
            let svgPath = out + ".tmp.svg"
            try Data(svg.utf8).write(to: URL(fileURLWithPath: svgPath))
            defer { unlink(svgPath) }
            let status = ChildProcess.run([rsvg, "--format", "png", "--output", out, svgPath])
            guard status == 0 else { throw RepositoryError(.failure, "rsvg-convert could not draw \(out) (status \(status))") }
        }
        if !store.quiet { printError("wrote \(out): \(chart.series.map { "\($0.key) (\($0.points.count) points)" }.joined(separator: ", "))") }
    }
}

enum Terminal {
    /// Columns of the terminal on stdout, else $COLUMNS, else 80.
    static func columns() -> Int {
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 80
    }
}

/// `assetfs compare`: versions side by side (issue 19).
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Versions side by side: metadata with numeric deltas, file changes, and differing inputs.",
        discussion: """
            Deltas and file changes are against the first REF. Keys whose values differ are marked with *.

            Example: assetfs compare model@v12 model@v15 model@best
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Two or more references: ASSET[@vN|@latest|@TAG].") var refs: [String]

    func validate() throws {
        if refs.count < 2 { throw ValidationError("compare needs at least two references, e.g. assetfs compare model@v3 model@v4") }
        for r in refs { _ = try parseRef(r) }
    }

    func run() throws {
        let catalog = try store.open().catalog
        let versions = try refs.map { try catalog.resolve(try parseRef($0)) }
        let c = try VersionComparison.build(catalog: catalog, versions: versions)
        if output.json {
            try printJSON(c)
            return
        }
        func delta(_ d: Double?) -> String {
            guard let d, d != 0 else { return "" }
            return " (" + (d > 0 ? "+" : "") + MetaValue.number(d).text + ")"
        }
        let rows = c.meta.map { k in
            [(k.differs ? "* " : "  ") + k.key] + k.values.enumerated().map { i, v in (v.value?.text ?? "-") + (i == 0 ? "" : delta(v.delta)) }
        }
        print(Format.table(["KEY"] + c.refs, rows))
        for f in c.files {
            print("\(f.from) -> \(f.to): \(f.added) added (\(Format.bytes(f.addedBytes))), \(f.removed) removed (\(Format.bytes(f.removedBytes))), "
                  + "\(f.modified) modified (\(f.modifiedDelta >= 0 ? "+" : "-")\(Format.bytes(UInt64(abs(f.modifiedDelta)))))")
        }
        for i in c.inputs.dropFirst() where !i.added.isEmpty || !i.removed.isEmpty {
            print("inputs of \(i.ref) against \(c.refs[0]): " + (i.added.map { "+" + $0 } + i.removed.map { "-" + $0 }).joined(separator: ", "))
        }
    }
}
