import ArgumentParser
import AssetCatalog
import AssetRepository
import Foundation

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Snapshot a directory as the next version of an asset.",
        discussion: "Example: assetfs import data ./dataset -m \"drop bad rows\" --tag prod --meta git=4f2a1c")

    @OptionGroup var store: StoreOptions
    @Argument(help: "Asset name.") var asset: String
    @Argument(help: "Directory to snapshot.") var source: String
    @Option(name: [.short, .long], help: "Message stored with the version.") var message = ""
    @Option(help: "Tag to point at the new version.") var tag: String?
    @Option(help: "Metadata KEY=VALUE stored with the version (repeatable).") var meta: [String] = []
    @Flag(help: "Re-read every file, even those unchanged since the last import.") var rehash = false
    @OptionGroup var inputs: InputOptions
    @OptionGroup var metaFiles: MetaFileOptions
    @Option(help: "Attach what `assetfs run --name NAME` recorded as the version's observed inputs.") var lineageFrom: String?

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
        if let tag, let problem = Names.tagProblem(tag) { throw ValidationError(problem) }
        _ = try parseMeta(meta)
        try inputs.validate()
    }

    func run() throws {
        let repo = try store.open()
        var options = ImportOptions(asset: asset, source: source)
        options.message = message
        options.tag = tag
        options.meta = try metaFiles.items(root: source) + parseMeta(meta)  // --meta last: it wins over a file's key
        options.rehash = rehash
        var lineage = LineageRecord(inputs: try inputs.declared(repo))
        if let lineageFrom { lineage.merge(try RunRecords.read(lineageFrom)) }
        options.lineage = lineage
        if store.showProgress {
            options.progress = { p in
                ProgressBar.render(done: p.bytesDone, total: p.bytesTotal, files: p.filesDone, filesTotal: p.filesTotal,
                                   elapsed: p.elapsed, label: "importing")
            }
        }
        let result = try Importer(repo: repo, options: options).run()
        if store.showProgress { ProgressBar.finish() }
        for warning in result.warnings { printError("warning: \(warning)") }
        print("\(asset) v\(result.version.number)")
    }
}

func parseMeta(_ items: [String]) throws -> [MetaItem] {
    try items.map { item in
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw ValidationError("invalid --meta \(Names.quoted(item)): expected KEY=VALUE")
        }
        return MetaItem(key: String(item[..<eq]), value: String(item[item.index(after: eq)...]))
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
