import ArgumentParser
import AssetCatalog
import AssetRepository
import Foundation

struct Assets: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List assets.", discussion: "Example: assetfs assets --json")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag

    func run() throws {
        let assets = try store.open().catalog.assets()
        if output.json {
            try printJSON(assets.map { AssetJSON(name: $0.name, versions: $0.versionCount, latest: $0.latest, created: Format.iso($0.createdNs)) })
            return
        }
        guard !assets.isEmpty else {
            if !store.quiet { print("no assets yet: `assetfs import NAME DIR` creates one") }
            return
        }
        print(Format.table(["ASSET", "VERSIONS", "LATEST"], assets.map { [$0.name, "\($0.versionCount)", $0.latest.map { "v\($0)" } ?? "-"] }))
    }
}

struct AssetJSON: Encodable {
    let name: String
    let versions: Int
    let latest: Int?
    let created: String
}

struct VersionJSON: Encodable {
    let asset: String
    let version: Int
    let parent: Int?
    let created: String
    let author: String
    let message: String
    let root: String
    let files: Int
    let logicalBytes: UInt64
    let newBytes: UInt64
    let tags: [String]
    /// Numbers as numbers (MetaValue), everything else as strings.
    let meta: [String: MetaValue]
    /// `show` only: the version's inputs (Documentation/Lineage.md).
    var inputs: [LineageInputSummary]?

    init(_ v: VersionInfo) {
        asset = v.asset
        version = v.number
        parent = v.parent
        created = Format.iso(v.createdNs)
        author = v.author
        message = v.message
        root = v.rootHash.hex
        files = v.fileCount
        logicalBytes = v.logicalBytes
        newBytes = v.newBytes
        tags = v.tags
        meta = v.typedMeta
    }
}

struct Versions: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the versions of an asset.", discussion: "Example: assetfs versions data --json")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Asset name.") var asset: String

    func validate() throws {
        if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
    }

    func run() throws {
        let catalog = try store.open().catalog
        _ = try catalog.resolve(Ref(asset: asset, selector: .latest))
        let versions = try catalog.versions(of: asset)
        if output.json {
            try printJSON(versions.map(VersionJSON.init))
            return
        }
        let rows = versions.map { v in
            ["v\(v.number)", v.parent.map { "v\($0)" } ?? "-", Format.date(v.createdNs), "\(v.fileCount)", Format.bytes(v.logicalBytes),
             Format.bytes(v.newBytes), v.rootHash.short, v.tags.joined(separator: ","), v.message]
        }
        print(Format.table(["VERSION", "PARENT", "CREATED", "FILES", "SIZE", "NEW", "ROOT", "TAGS", "MESSAGE"], rows))
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show everything about one version.", discussion: "Example: assetfs show data@prod")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "Reference: ASSET[@vN|@latest|@TAG].") var ref: String

    func run() throws {
        let catalog = try store.open().catalog
        let v = try catalog.resolve(try parseRef(ref))
        let lineage = try catalog.lineage(versionID: v.id) ?? LineageRecord()
        if output.json {
            var json = VersionJSON(v)
            json.inputs = lineage.summary
            try printJSON(json)
            return
        }
        print("""
            asset:    \(v.asset)
            version:  v\(v.number)
            parent:   \(v.parent.map { "v\($0)" } ?? "none")
            created:  \(Format.date(v.createdNs))
            author:   \(v.author)
            message:  \(v.message)
            root:     \(v.rootHash.hex)
            files:    \(v.fileCount)
            size:     \(Format.bytes(v.logicalBytes)) (\(v.logicalBytes) bytes)
            new:      \(Format.bytes(v.newBytes)) stored by this version
            tags:     \(v.tags.isEmpty ? "none" : v.tags.joined(separator: ", "))
            """)
        if !v.meta.isEmpty {
            print("meta:")
            for item in v.meta { print("  \(item.key)=\(item.value)") }
        }
        if !lineage.inputs.isEmpty {
            print("inputs:")
            for i in lineage.inputs {
                let read = i.kind == .declared ? "declared" : "\(Format.files(i.fileCount)) opened, \(Format.bytes(i.bytes)) fetched"
                print("  \(i.ref)  \(read)\(i.store.map { "  (store \($0))" } ?? "")")
            }
        }
        for job in lineage.jobs {
            print("made by:  \(LineageGraph.jobTitle(job))  (\(job.user)@\(job.host), \(job.started) .. \(job.ended), \(job.attribution) \(job.pid))")
        }
    }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a directory of a version.", discussion: "Example: assetfs ls -l data@v3:shards")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Flag(name: .short, help: "Long listing: mode, size, mtime.") var long = false
    @Flag(name: [.short, .customLong("recursive")], help: "List subdirectories too.") var recursive = false
    @Argument(help: "Reference with optional path: ASSET[@SEL][:path].") var ref: String

    struct EntryJSON: Encodable {
        let path: String
        let type: String
        let mode: String
        let size: UInt64
        let mtime: String
        let target: String?
    }

    func run() throws {
        let repo = try store.open()
        let parsed = try parseRef(ref)
        let version = try repo.catalog.resolve(parsed)
        let tree = VersionTree(catalog: repo.catalog, version: version)
        var listed: [(String, TreeEntry)] = []
        let start = try tree.lookup(parsed.path)
        if let start, start.kind != .directory {
            listed = [(start.displayName, start)]
        } else if recursive {
            try tree.walk(start?.subtreeID) { path, entry in listed.append((String(decoding: path, as: UTF8.self), entry)) }
        } else {
            listed = try repo.catalog.entries(of: start?.subtreeID ?? version.rootTreeID).map { ($0.displayName, $0) }
        }
        if output.json {
            try printJSON(listed.map { path, e in
                EntryJSON(path: path, type: "\(e.kind)", mode: String(e.mode, radix: 8), size: e.size, mtime: Format.iso(e.mtimeNs),
                          target: e.target.map { String(decoding: $0, as: UTF8.self) })
            })
            return
        }
        for (path, e) in listed {
            let name = e.kind == .directory ? path + "/" : (e.kind == .symlink ? path + " -> " + String(decoding: e.target ?? [], as: UTF8.self) : path)
            if long {
                print("\(modeString(e))  \(String(e.size).leftPad(12))  \(Format.date(e.mtimeNs))  \(name)")
            } else {
                print(name)
            }
        }
    }

    func modeString(_ e: TreeEntry) -> String {
        let type = e.kind == .directory ? "d" : (e.kind == .symlink ? "l" : "-")
        let chars = Array("rwxrwxrwx")
        return type + String((0..<9).map { e.mode & (1 << (8 - $0)) != 0 ? chars[$0] : "-" })
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
