import AssetCatalog
import AssetStore

/// What a workspace changed relative to its base, like `git status`: walks only directories with overrides.
public struct WorkspaceStatus {
    public let workspace: Workspace
    public init(workspace: Workspace) { self.workspace = workspace }

    public struct Change: Sendable, Codable {
        public enum Kind: String, Sendable, Codable { case added, modified, deleted }
        public let kind: Kind
        public let path: String
    }

    public func changes() throws -> [Change] {
        var out: [Change] = []
        try walk(try workspace.root(), prefix: "", into: &out)
        return out.sorted { $0.path < $1.path }
    }

    private func walk(_ dir: WorkspaceNode, prefix: String, into out: inout [Change]) throws {
        var base: [[UInt8]: TreeEntry] = [:]
        if let tree = dir.baseTreeID {
            for e in try workspace.repo.catalog.entries(of: tree) { base[e.name] = e }
        }
        for (name, child) in try workspace.meta.dirents(parent: dir.ino) {
            let path = prefix + String(decoding: name, as: UTF8.self)
            let old = base[name]
            if child == WorkspaceMetadata.whiteout {
                if let old { out.append(Change(kind: .deleted, path: path + (old.kind == .directory ? "/" : ""))) }
                continue
            }
            guard let node = try workspace.meta.node(child) else { continue }
            guard let old, old.kind == node.kind else {
                if let old { out.append(Change(kind: .deleted, path: path + (old.kind == .directory ? "/" : ""))) }
                out.append(Change(kind: .added, path: path + (node.kind == .directory ? "/" : "")))
                if node.kind == .directory { try listAdded(node, prefix: path + "/", into: &out) }
                continue
            }
            switch node.kind {
            case .directory:
                if node.mode != old.mode || node.uid != old.uid || node.gid != old.gid {
                    out.append(Change(kind: .modified, path: path + "/"))
                }
                if node.baseTreeID == old.subtreeID {
                    try walk(node, prefix: path + "/", into: &out)
                } else {
                    try listAdded(node, prefix: path + "/", into: &out)
                }
            case .file:
                let same = !node.hasDelta && node.baseFileID == old.fileID && node.baseLimit == old.size
                    && node.mode == old.mode && node.uid == old.uid && node.gid == old.gid && node.mtimeNs == old.mtimeNs
                if !same { out.append(Change(kind: .modified, path: path)) }
            case .symlink:
                if node.target != old.target { out.append(Change(kind: .modified, path: path)) }
            case .fifo, .socket, .characterDevice, .blockDevice:
                break  // A version never holds one, so `old` cannot be of the same kind.
            }
        }
    }

    private func listAdded(_ dir: WorkspaceNode, prefix: String, into out: inout [Change]) throws {
        for (name, node) in try workspace.listing(dir) {
            let path = prefix + String(decoding: name, as: UTF8.self)
            out.append(Change(kind: .added, path: path + (node.kind == .directory ? "/" : "")))
            if node.kind == .directory { try listAdded(node, prefix: path + "/", into: &out) }
        }
    }
}
