import AssetCatalog
import AssetStore

/// What an inode stands for. Nodes inside a version carry the catalog entry they came from, so `getattr`
/// never needs the catalog.
public enum Node: Sendable {
    case root
    case asset(String)
    /// `latest` or a tag: a symlink whose target is read from the catalog each time.
    case assetLink(asset: String, name: String)
    case versionRoot(asset: String, version: Int, treeID: Int64, rootHash: ContentHash, createdNs: Int64)
    case directory(asset: String, version: Int, path: [UInt8], entry: TreeEntry, subdirectories: Int)
    case file(asset: String, version: Int, path: [UInt8], entry: TreeEntry)
    case symlink(asset: String, version: Int, path: [UInt8], entry: TreeEntry)
    /// `<asset>/workspaces`: one directory per open workspace.
    case workspaces(asset: String)
    /// A node inside workspace `id`; `parent`/`name` record where it was looked up (see WorkspaceOverlay).
    case workspace(id: Int64, local: UInt64, parent: UInt64, name: [UInt8])

    /// `filesPerVersion`: version files are told apart by version (a mount recording lineage).
    func identity(filesPerVersion: Bool) -> InodeNumber.Identity? {
        switch self {
        case .root: return nil
        case .asset(let a): return .asset(a)
        case .assetLink(let a, let n): return .assetLink(asset: a, name: n)
        case .versionRoot(let a, let v, _, _, _): return .versionRoot(asset: a, version: v)
        case .directory(let a, let v, let p, _, _): return .directory(asset: a, version: v, path: p)
        case .file(let a, let v, let p, let e):
            return .file(asset: a, version: filesPerVersion ? v : nil, path: p, fileID: e.fileID ?? 0, mode: e.mode, uid: e.uid,
                         gid: e.gid, mtimeNs: e.mtimeNs)
        case .symlink(let a, let v, let p, _): return .symlink(asset: a, version: v, path: p)
        case .workspaces(let a): return .workspacesDirectory(asset: a)
        case .workspace(let id, let local, _, _): return .workspaceNode(workspace: id, local: local)
        }
    }


    /// True for everything inside a version, whose answers never change.
    var isImmutable: Bool {
        switch self {
        case .root, .asset, .assetLink, .workspaces, .workspace: return false
        default: return true
        }
    }
}

/// The inodes the kernel currently knows, with their lookup counts (FUSE's forget protocol).
final class NodeTable: @unchecked Sendable {
    /// Version files get an inode per version (lineage), else one per unchanged file across versions.
    let filesPerVersion: Bool
    private let lock = Lock()
    // Protected by `lock`.
    private var nodes: [UInt64: (node: Node, lookups: UInt64)] = [InodeNumber.root: (.root, 1)]

    init(filesPerVersion: Bool) { self.filesPerVersion = filesPerVersion }

    func node(_ inode: UInt64) -> Node? { lock.withLock { nodes[inode]?.node } }

    func inode(of node: Node) -> UInt64 { node.identity(filesPerVersion: filesPerVersion).map(InodeNumber.of) ?? InodeNumber.root }

    /// Records one more kernel reference to `node`. Fails if its number is already taken by another identity.
    func remember(_ node: Node) throws -> UInt64 {
        let inode = inode(of: node)
        return try lock.withLock {
            if let existing = nodes[inode] {
                guard existing.node.identity(filesPerVersion: filesPerVersion) == node.identity(filesPerVersion: filesPerVersion) else {
                    throw VFSError.io
                }
                // A newer catalog read of the same identity (a moved tag, a refreshed entry) replaces the old one.
                nodes[inode] = (node, existing.lookups + 1)
            } else {
                nodes[inode] = (node, 1)
            }
            return inode
        }
    }

    func forget(_ inode: UInt64, count: UInt64) {
        guard inode != InodeNumber.root else { return }
        lock.withLock {
            guard let existing = nodes[inode] else { return }
            if existing.lookups <= count {
                nodes.removeValue(forKey: inode)
            } else {
                nodes[inode] = (existing.node, existing.lookups - count)
            }
        }
    }

    var count: Int { lock.withLock { nodes.count } }
}
