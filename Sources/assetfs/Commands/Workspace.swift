import ArgumentParser
import AssetCatalog
import AssetFUSE
import AssetRepository
import Foundation

struct WorkspaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workspace",
        abstract: "Writable copy-on-write views over a version; `assetfs commit` turns one into the next version.",
        discussion: "Example: assetfs workspace create data exp1 --from v3 && assetfs workspace status data/exp1",
        subcommands: [Create.self, List.self, Status.self, Discard.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a workspace (instant, whatever the version's size).",
            discussion: "Example: assetfs workspace create data exp1 --from v12")
        @OptionGroup var store: StoreOptions
        @Argument(help: "Asset name.") var asset: String
        @Argument(help: "Workspace name.") var name: String
        @Option(help: "Base version: vN, latest or a tag.") var from = "latest"

        func validate() throws {
            if let problem = Names.assetProblem(asset) { throw ValidationError(problem) }
            if !Names.isValid(name) { throw ValidationError("invalid workspace name \(Names.quoted(name)): names must match \(Names.rule)") }
            _ = try selector()
        }

        func selector() throws -> Ref.Selector {
            do { return try Ref.parseSelectorPublic(from) } catch let e as Ref.ParseError { throw ValidationError(e.description) }
        }

        func run() throws {
            let repo = try store.open()
            let info = try WorkspaceManager(repo: repo).create(asset: asset, name: name, from: try selector())
            let mounts = MountTable.mounts(ofStore: repo.root)
            if mounts.isEmpty {
                if !store.quiet { printError("created \(asset)/\(name) from v\(info.baseVersion); it appears as MOUNTPOINT/\(asset)/workspaces/\(name) once the store is mounted") }
            }
            for m in mounts { print("\(m)/\(asset)/workspaces/\(name)") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List workspaces.", discussion: "Example: assetfs workspace list data --json")
        @OptionGroup var store: StoreOptions
        @OptionGroup var output: JSONFlag
        @Argument(help: "Only this asset.") var asset: String?

        struct ItemJSON: Encodable {
            let asset: String
            let name: String
            let base: Int
            let created: String
            let createdBy: String
            let host: String
        }

        func run() throws {
            let items = try store.open().catalog.workspaces(asset: asset)
            if output.json {
                try printJSON(items.map {
                    ItemJSON(asset: $0.asset, name: $0.name, base: $0.baseVersion, created: Format.iso($0.createdNs),
                             createdBy: $0.createdBy, host: $0.host)
                })
                return
            }
            print(Format.table(["WORKSPACE", "BASE", "CREATED", "BY", "HOST"], items.map {
                ["\($0.asset)/\($0.name)", "v\($0.baseVersion)", Format.date($0.createdNs), $0.createdBy, $0.host.isEmpty ? "-" : $0.host]
            }))
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show added, modified and deleted paths, like git status.", discussion: "Example: assetfs workspace status data/exp1")
        @OptionGroup var store: StoreOptions
        @OptionGroup var output: JSONFlag
        @Argument(help: "ASSET/NAME") var workspace: String

        func run() throws {
            let repo = try store.open()
            let manager = WorkspaceManager(repo: repo)
            let ws = try manager.open(try manager.find(workspace))
            let changes = try WorkspaceStatus(workspace: ws).changes()
            if output.json {
                try printJSON(changes)
                return
            }
            if !store.quiet { print("workspace \(workspace) on v\(ws.info.baseVersion)") }
            for c in changes {
                let mark = c.kind == .added ? "A" : (c.kind == .modified ? "M" : "D")
                print("\(mark)  \(c.path)")
            }
            if !store.quiet && changes.isEmpty { print("no changes") }
        }
    }

    struct Discard: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a workspace and everything written in it.", discussion: "Example: assetfs workspace discard data/exp1")
        @OptionGroup var store: StoreOptions
        @Argument(help: "ASSET/NAME") var workspace: String

        func run() throws {
            let manager = WorkspaceManager(repo: try store.open())
            try manager.discard(try manager.find(workspace))
            if !store.quiet { print("discarded \(workspace)") }
        }
    }
}

struct Commit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a workspace into the next version of its asset, atomically.",
        discussion: """
            Refuses while a file in the workspace is open for writing (so no file is captured half-written), and
            when the asset has a version newer than the workspace's base (use --allow-diverge to commit anyway).

            Example: assetfs commit data/exp1 -m "drop corrupt rows" --tag candidate
            """)
    @OptionGroup var store: StoreOptions
    @Argument(help: "ASSET/NAME") var workspace: String
    @Option(name: [.short, .long], help: "Message stored with the version.") var message = ""
    @Option(help: "Tag to point at the new version.") var tag: String?
    @Option(help: "Metadata KEY=VALUE stored with the version (repeatable).") var meta: [String] = []
    @Flag(help: "Keep the workspace open on top of the new version.") var keep = false
    @Flag(help: "Commit even if the asset has a newer version than the workspace's base (parent stays the base).") var allowDiverge = false
    @OptionGroup var inputs: InputOptions
    @Option(help: "A JSON or YAML file inside the workspace (e.g. metrics.json) to take metadata from, flattened to dotted keys.") var metricsFrom: String?

    func validate() throws {
        if let tag, let problem = Names.tagProblem(tag) { throw ValidationError(problem) }
        _ = try parseMeta(meta)
        try inputs.validate()
    }

    func run() throws {
        let repo = try store.open()
        let manager = WorkspaceManager(repo: repo)
        let ws = try manager.open(try manager.find(workspace))
        var options = CommitOptions()
        options.message = message
        options.tag = tag
        options.meta = try parseMeta(meta)
        options.keep = keep
        options.allowDiverge = allowDiverge
        options.declaredInputs = try inputs.declared(repo)
        options.metricsFrom = metricsFrom
        // What the mounts observed the workspace's writers read in their last second is written now.
        for mountpoint in LineageControl.flushMounts(ofStore: repo.root) {
            printError("warning: the mount on \(mountpoint) did not answer; its writers' last reads may be missing from the lineage")
        }
        let version = try WorkspaceCommitter(repo: repo, workspace: ws, options: options).run { printError("warning: \($0)") }
        print("\(version.asset) v\(version.number)")
    }
}
