import ArgumentParser
import AssetCatalog
import AssetRepository
import Foundation

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Point a tag at a version (moving it if it exists).",
        discussion: """
            With --best KEY (highest value) or --lowest KEY, the version is the one whose metadata KEY is best;
            the move is in the audit log like any other.

            Examples: assetfs tag data v11 prod
                      assetfs tag model --best val.acc best-acc
            """)
    @OptionGroup var store: StoreOptions
    @Argument(help: "Asset name.") var asset: String
    @Argument(help: "Version, e.g. v11 (or, with --best/--lowest, the tag name).") var version: String
    @Argument(help: "Tag name.") var name: String?
    @Option(help: "Tag the version with the highest value of this metadata key.") var best: String?
    @Option(help: "Tag the version with the lowest value of this metadata key.") var lowest: String?

    var tagName: String { (best != nil || lowest != nil) ? version : (name ?? "") }

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
        if best != nil && lowest != nil { throw ValidationError("choose one of --best and --lowest") }
        if best != nil || lowest != nil {
            if name != nil { throw ValidationError("with --best or --lowest give only the tag name: assetfs tag ASSET --best KEY NAME") }
        } else {
            guard name != nil else { throw ValidationError("missing the tag name: assetfs tag ASSET vN NAME") }
            _ = try versionNumber(version)
        }
        if let problem = Names.tagProblem(tagName) { throw ValidationError(problem) }
    }

    func run() throws {
        let catalog = try store.open().catalog
        let number: Int
        var because = ""
        if let key = best ?? lowest {
            let versions = try catalog.versions(of: asset)
            try requireMetaKeys([key], of: versions, asset: asset)
            // Versions without the key sort last, so the first has it.
            let ranked = MetaSort(parsing: (best != nil ? "-" : "") + key).ordered(versions)
            guard let chosen = ranked.first, let value = chosen.typedMeta[key] else {
                throw RepositoryError(.failure, "internal error: no version of \(asset) ranked by '\(key)'")
            }
            number = chosen.number
            because = " (\(best != nil ? "highest" : "lowest") \(key): \(value.text))"
        } else {
            number = try versionNumber(version)
        }
        let old = try catalog.setTag(asset: asset, name: tagName, version: number, user: currentUserName())
        if !store.quiet { print("\(asset)@\(tagName) -> v\(number)" + because + (old.map { $0 == number ? " (unchanged)" : " (was v\($0))" } ?? "")) }
    }
}

func versionNumber(_ text: String) throws -> Int {
    do {
        guard case .number(let n) = try Ref.parseSelectorPublic(text) else { throw ValidationError("expected a version like v3, got \(Names.quoted(text))") }
        return n
    } catch let error as Ref.ParseError {
        throw ValidationError(error.description)
    }
}

struct Untag: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a tag.", discussion: "Example: assetfs untag data candidate")
    @OptionGroup var store: StoreOptions
    @Argument(help: "Asset name.") var asset: String
    @Argument(help: "Tag name.") var name: String

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
        if let problem = Names.tagProblem(name) { throw ValidationError(problem) }
    }

    func run() throws {
        let old = try store.open().catalog.removeTag(asset: asset, name: name, user: currentUserName())
        if !store.quiet { print("removed \(asset)@\(name) (was v\(old))") }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a version (its space is reclaimed by `assetfs gc`).", discussion: "Example: assetfs delete data@v2 && assetfs gc")
    @OptionGroup var store: StoreOptions
    @Argument(help: "ASSET@vN (an explicit version number).") var ref: String

    func run() throws {
        let parsed = try parseRef(ref)
        guard case .number(let n) = parsed.selector, parsed.path.isEmpty else {
            throw ValidationError("delete needs an explicit version, e.g. \(parsed.asset)@v3")
        }
        let catalog = try store.open().catalog
        _ = try catalog.resolve(parsed)
        try catalog.deleteVersion(asset: parsed.asset, number: n, user: currentUserName())
        if !store.quiet { print("deleted \(parsed.asset)@v\(n); run `assetfs gc` to reclaim its space") }
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the audit log: version creations, tag moves, deletions.", discussion: "Example: assetfs log data --json")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Only this asset.") var asset: String?

    struct EntryJSON: Encodable {
        let id: Int64
        let at: String
        let user: String
        let action: String
        let asset: String
        let subject: String
        let from: String?
        let to: String?
        let detail: String
    }

    func run() throws {
        let entries = try store.open().catalog.audit(asset: asset)
        if output.json {
            try printJSON(entries.map { EntryJSON(id: $0.id, at: Format.iso($0.atNs), user: $0.user, action: $0.action, asset: $0.asset,
                                                  subject: $0.subject, from: $0.from, to: $0.to, detail: $0.detail) })
            return
        }
        print(Format.table(["WHEN", "USER", "ACTION", "ASSET", "WHAT", "FROM", "TO", "DETAIL"], entries.map {
            [Format.date($0.atNs), $0.user, $0.action, $0.asset, $0.subject, $0.from ?? "-", $0.to ?? "-", $0.detail]
        }))
    }
}
