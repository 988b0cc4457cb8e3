import ArgumentParser
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation

struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a file of a version to stdout, verified.", discussion: "Example: assetfs cat data@v3:shards/0001.csv | head")
    @OptionGroup var store: StoreOptions
    @Argument(help: "ASSET[@SEL]:path") var ref: String

    func run() throws {
        let repo = try store.open()
        let parsed = try parseRef(ref)
        guard !parsed.path.isEmpty else { throw ValidationError("cat needs a file path: ASSET@vN:path/to/file") }
        let version = try repo.catalog.resolve(parsed)
        guard let entry = try VersionTree(catalog: repo.catalog, version: version).lookup(parsed.path) else { return }
        guard entry.kind == .file, let fileID = entry.fileID else {
            throw RepositoryError(.usage, "\(parsed) is a \(entry.kind), not a file")
        }
        let out = AssetStore.FileDescriptor(raw: 1, path: "stdout")
        do {
            try FileContentReader(repo: repo).stream(fileID: fileID) { try out.write($0) }
        } catch let error as StoreError where error.code == .corrupt || error.code == .notFound {
            throw RepositoryError(.corruption, "cannot read \(parsed): the store is damaged (\(error.message)); run `assetfs verify` to list every broken file, then restore the pack from a copy of the store or `assetfs delete` the broken versions")
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show added, removed and modified paths between two versions.", discussion: "Example: assetfs diff data@v2 data@v3")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Old version.") var from: String
    @Argument(help: "New version.") var to: String

    func run() throws {
        let catalog = try store.open().catalog
        let a = try catalog.resolve(try parseRef(from))
        let b = try catalog.resolve(try parseRef(to))
        let changes = try Differ(catalog: catalog).diff(a, b)
        if output.json {
            try printJSON(changes)
            return
        }
        for c in changes {
            switch c.kind {
            case .added: print("A  \(Format.bytes(c.newSize ?? 0).leftPad(10))  \(c.path)")
            case .removed: print("D  \(Format.bytes(c.oldSize ?? 0).leftPad(10))  \(c.path)")
            case .modified: print("M  \(Format.bytes(c.oldSize ?? 0).leftPad(10)) -> \(Format.bytes(c.newSize ?? 0))  \(c.path)")
            }
        }
        if !store.quiet {
            let added = changes.filter { $0.kind == .added }.count
            let removed = changes.filter { $0.kind == .removed }.count
            let modified = changes.filter { $0.kind == .modified }.count
            printError("\(added) added, \(removed) removed, \(modified) modified")
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Materialise a version into a new or empty directory, every byte verified.", discussion: "Example: assetfs export data@v3 /tmp/data-v3")
    @OptionGroup var store: StoreOptions
    @Argument(help: "ASSET[@SEL][:path]") var ref: String
    @Argument(help: "Destination directory (created if missing; must be empty).") var destination: String

    func run() throws {
        let result = try Exporter(repo: try store.open()).export(try parseRef(ref), to: destination)
        if !store.quiet {
            print("exported \(result.files) files (\(Format.bytes(result.bytes))), \(result.directories) directories, \(result.symlinks) symlinks to \(destination)")
        }
    }
}
