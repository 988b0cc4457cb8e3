import AssetCatalog

extension Repository {
    /// The record as this store keeps it: inputs read from this very store name no store (Documentation/Lineage.md).
    public func localized(_ record: LineageRecord) -> LineageRecord {
        var out = LineageRecord(jobs: record.jobs)
        var pending = record
        for i in pending.inputs.indices where pending.inputs[i].store == root { pending.inputs[i].store = nil }
        pending.jobs = []
        out.merge(pending)
        return out
    }

    /// An input declared by hand (`--input REF`): the version REF names now.
    public func declaredInput(_ ref: Ref) throws -> LineageInput {
        let version = try catalog.resolve(ref)
        return LineageInput(asset: version.asset, version: version.number, kind: .declared)
    }
}
