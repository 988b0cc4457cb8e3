import AssetCatalog

extension PostgresCatalog {
    public func lineage(versionID: Int64) throws -> LineageRecord? {
        try read("SELECT record FROM version_lineage WHERE version_id = $1", [.int(versionID)]) { try $0.text(0) }
            .first.map(LineageRecord.decode)
    }

    public func consumers(asset: String, version: Int) throws -> [LineageConsumer] {
        try read("""
            SELECT a.name, v.number, i.kind FROM version_inputs i
            JOIN versions v ON v.id = i.version_id JOIN assets a ON a.id = v.asset_id
            WHERE i.input_asset = $1 AND i.input_version = $2 ORDER BY a.name, v.number, i.kind
            """, [.text(asset), .int(Int64(version))]) {
            LineageConsumer(asset: try $0.text(0), version: Int(try $0.int(1)), kind: try $0.text(2))
        }
    }
}
