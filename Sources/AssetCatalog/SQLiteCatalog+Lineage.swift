extension SQLiteCatalog {
    public func lineage(versionID: Int64) throws -> LineageRecord? {
        let text = try locked { db in
            try db.first("SELECT record FROM version_lineage WHERE version_id = ?", [.int(versionID)]) { $0.text(0) }
        }
        return try text.map(LineageRecord.decode)
    }

    public func consumers(asset: String, version: Int) throws -> [LineageConsumer] {
        try locked { db in
            try db.rows("""
                SELECT a.name, v.number, i.kind FROM version_inputs i
                JOIN versions v ON v.id = i.version_id JOIN assets a ON a.id = v.asset_id
                WHERE i.input_asset = ? AND i.input_version = ? ORDER BY a.name, v.number, i.kind
                """, [.text(asset), .int(Int64(version))]) {
                LineageConsumer(asset: $0.text(0), version: Int($0.int(1)), kind: $0.text(2))
            }
        }
    }
}
