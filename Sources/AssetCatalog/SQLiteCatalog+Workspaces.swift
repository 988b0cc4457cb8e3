extension SQLiteCatalog {
    static let workspaceColumns = """
        SELECT w.id, a.name, w.name, w.base_version, w.base_tree_id, w.created_ns, w.created_by, w.host
        FROM workspaces w JOIN assets a ON a.id = w.asset_id
        """

    static func workspaceRow(_ r: Row) -> WorkspaceInfo {
        WorkspaceInfo(id: r.int(0), asset: r.text(1), name: r.text(2), baseVersion: Int(r.int(3)), baseTreeID: r.int(4),
                      createdNs: r.int(5), createdBy: r.text(6), host: r.text(7))
    }

    public func createWorkspace(asset: String, name: String, baseVersion: Int, user: String, host: String) throws -> WorkspaceInfo {
        try locked { db in
            try db.transaction {
                guard let assetID = try SQLiteCatalogWriter(db: db).assetID(asset, create: false) else {
                    throw CatalogError.noAsset(asset)
                }
                guard let tree = try db.first("SELECT root_tree_id FROM versions WHERE asset_id = ? AND number = ?",
                                              [.int(assetID), .int(Int64(baseVersion))], { $0.int(0) }) else {
                    throw CatalogError.noVersion(asset, baseVersion)
                }
                if try db.first("SELECT 1 FROM workspaces WHERE asset_id = ? AND name = ?", [.int(assetID), .text(name)], { _ in true }) != nil {
                    throw CatalogError.workspaceExists(asset, name)
                }
                try db.run("""
                    INSERT INTO workspaces(asset_id, name, base_version, base_tree_id, created_ns, created_by, host)
                    VALUES(?, ?, ?, ?, ?, ?, ?)
                    """, [.int(assetID), .text(name), .int(Int64(baseVersion)), .int(tree), .int(Clock.nowNanoseconds()), .text(user),
                          .text(host)])
                let id = db.lastInsertRowID
                try appendAudit(db, user: user, action: "create-workspace", asset: asset, subject: name, from: "v\(baseVersion)",
                                to: nil, detail: "")
                return try db.first(Self.workspaceColumns + " WHERE w.id = ?", [.int(id)], Self.workspaceRow)!
            }
        }
    }

    public func workspaces(asset: String?) throws -> [WorkspaceInfo] {
        try locked { db in
            if let asset {
                return try db.rows(Self.workspaceColumns + " WHERE a.name = ? ORDER BY w.name", [.text(asset)], Self.workspaceRow)
            }
            return try db.rows(Self.workspaceColumns + " ORDER BY a.name, w.name", [], Self.workspaceRow)
        }
    }

    public func workspace(asset: String, name: String) throws -> WorkspaceInfo? {
        try locked { db in
            try db.first(Self.workspaceColumns + " WHERE a.name = ? AND w.name = ?", [.text(asset), .text(name)], Self.workspaceRow)
        }
    }

    public func deleteWorkspace(id: Int64, user: String, reason: String) throws {
        try locked { db in try db.transaction { try SQLiteCatalogWriter(db: db).removeWorkspace(id: id, user: user, reason: reason) } }
    }

    public func setWorkspaceBase(id: Int64, version: Int, treeID: Int64) throws {
        try locked { db in
            try db.run("UPDATE workspaces SET base_version = ?, base_tree_id = ? WHERE id = ?",
                       [.int(Int64(version)), .int(treeID), .int(id)])
        }
    }
}
