import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

/// Creates, opens, lists and discards workspaces. A workspace is a registry row in the catalog plus
/// `STORE/workspaces/<id>/` (overlay metadata, delta files, locks), so it survives unmounts and crashes.
public struct WorkspaceManager {
    public let repo: Repository
    public init(repo: Repository) { self.repo = repo }

    public func directory(_ id: Int64) -> String { "\(repo.hostDirectory)/workspaces/\(id)" }

    public func create(asset: String, name: String, from selector: Ref.Selector, user: String = currentUserName()) throws -> WorkspaceInfo {
        if let problem = Names.assetProblem(asset) { throw RepositoryError(.usage, problem) }
        if let problem = Names.assetProblem(name) {
            throw RepositoryError(.usage, problem.replacingOccurrences(of: "asset name", with: "workspace name"))
        }
        let base = try repo.catalog.resolve(Ref(asset: asset, selector: selector))
        try makeDirectory(repo.hostDirectory + "/workspaces")
        try DeltaFile.probeHoles(in: repo.hostDirectory + "/workspaces")
        let info = try repo.catalog.createWorkspace(asset: asset, name: name, baseVersion: base.number, user: user,
                                                     host: StoreSession.hostName())
        _ = try open(info)
        return info
    }

    /// Opens a workspace's overlay, creating its directory and root node on first use.
    public func open(_ info: WorkspaceInfo) throws -> Workspace {
        let dir = directory(info.id)
        try makeDirectory(dir)
        try makeDirectory(dir + "/delta")
        try createPrivateFile(dir + "/meta.sqlite")
        let meta = try WorkspaceMetadata(path: dir + "/meta.sqlite")
        if try meta.node(Workspace.rootInode) == nil {
            let now = Clock.nowNanoseconds()
            try meta.transaction {
                let subdirectories = try repo.catalog.subdirectoryCount(of: info.baseTreeID)
                try meta.put(WorkspaceNode(ino: Workspace.rootInode, kind: .directory, mode: 0o755, uid: getuid(), gid: getgid(),
                                           mtimeNs: now, ctimeNs: now, size: 0, baseTreeID: info.baseTreeID,
                                           nlink: UInt32(2 + subdirectories)))
            }
        }
        return Workspace(info: info, directory: dir, meta: meta, repo: repo)
    }

    /// `ASSET/NAME` -> the workspace, or an error naming what is missing.
    public func find(_ spec: String) throws -> WorkspaceInfo {
        let parts = spec.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, Names.isValid(parts[0]), Names.isValid(parts[1]) else {
            throw RepositoryError(.usage, "invalid workspace \(Names.quoted(spec)): expected ASSET/NAME, e.g. data/exp1")
        }
        guard let info = try repo.catalog.workspace(asset: parts[0], name: parts[1]) else {
            throw RepositoryError(.notFound, "no workspace \(spec) (`assetfs workspace list` shows them)")
        }
        return info
    }

    /// After `commit --keep`: the overlay's changes are now in `version`, so start over on top of it (an
    /// empty overlay on the new tree). Runs under the workspace's exclusive lock, with no file open for writing.
    func rebase(_ workspace: Workspace, onto version: VersionInfo) throws {
        let meta = workspace.meta
        let old = try meta.allNodes()
        let root = try workspace.root()
        try meta.transaction {
            try meta.reset()
            var fresh = root
            fresh.baseTreeID = version.rootTreeID
            fresh.nlink = UInt32(2 + (try repo.catalog.subdirectoryCount(of: version.rootTreeID)))
            try meta.put(fresh)
        }
        for node in old where node.hasDelta { unlink(workspace.deltaPath(node.ino)) }
        try repo.catalog.setWorkspaceBase(id: workspace.info.id, version: version.number, treeID: version.rootTreeID)
    }

    public func discard(_ info: WorkspaceInfo, user: String = currentUserName(), reason: String = "discard-workspace") throws {
        try repo.catalog.deleteWorkspace(id: info.id, user: user, reason: reason)
        removeTree(directory(info.id))
    }
}

/// rm -rf without following symlinks; errors are ignored because the registry row is already gone and a
/// leftover directory is only wasted space (gc does not need it).
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR {
        for name in (try? listDirectory(path)) ?? [] { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}
