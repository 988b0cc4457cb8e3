import AssetCatalog
import Foundation

/// Versions side by side (issue 19): each key's values with numeric deltas against the first version, the
/// file changes from the first version to each other, and the inputs that differ where lineage exists.
public struct VersionComparison: Encodable, Sendable {
    public struct Value: Encodable, Sendable {
        public let ref: String
        public let value: MetaValue?
        /// This value minus the first version's, when both are numbers.
        public let delta: Double?
    }

    public struct Key: Encodable, Sendable {
        public let key: String
        public let differs: Bool
        public let values: [Value]
    }

    public struct Files: Encodable, Sendable {
        public let from: String
        public let to: String
        public let added: Int
        public let removed: Int
        public let modified: Int
        /// Bytes of added files, of removed files, and the size change of modified ones.
        public let addedBytes: UInt64
        public let removedBytes: UInt64
        public let modifiedDelta: Int64
    }

    public struct Inputs: Encodable, Sendable {
        public let ref: String
        public let inputs: [String]
        /// Inputs of this version that the first does not have, and the first's that this one lacks.
        public let added: [String]
        public let removed: [String]
    }

    public let refs: [String]
    public let meta: [Key]
    public let files: [Files]
    public let inputs: [Inputs]

    public static func build(catalog: Catalog, versions: [VersionInfo]) throws -> VersionComparison {
        let refs = versions.map { "\($0.asset)@v\($0.number)" }
        let typed = versions.map(\.typedMeta)
        let keys = Set(typed.flatMap(\.keys)).sorted()
        let meta = keys.map { key -> Key in
            let base = typed[0][key]
            let values = zip(refs, typed).map { ref, m -> Value in
                var delta: Double?
                // 12 significant digits: 0.9 - 0.83 is 0.07, not 0.07000000000000006.
                if case .number(let x)? = m[key], case .number(let b)? = base { delta = Double(String(format: "%.12g", x - b)) }
                return Value(ref: ref, value: m[key], delta: delta)
            }
            return Key(key: key, differs: Set(typed.map { $0[key].map { "\($0)" } ?? "-" }).count > 1, values: values)
        }
        let differ = Differ(catalog: catalog)
        var files: [Files] = []
        for (i, v) in versions.enumerated().dropFirst() {
            let changes = try differ.diff(versions[0], v)
            func count(_ k: Differ.Change.Kind) -> Int { changes.filter { $0.kind == k }.count }
            let added = changes.filter { $0.kind == .added }.reduce(UInt64(0)) { $0 + ($1.newSize ?? 0) }
            let removed = changes.filter { $0.kind == .removed }.reduce(UInt64(0)) { $0 + ($1.oldSize ?? 0) }
            let modified = changes.filter { $0.kind == .modified }.reduce(Int64(0)) { $0 + Int64($1.newSize ?? 0) - Int64($1.oldSize ?? 0) }
            files.append(Files(from: refs[0], to: refs[i], added: count(.added), removed: count(.removed), modified: count(.modified),
                               addedBytes: added, removedBytes: removed, modifiedDelta: modified))
        }
        let lineage = try versions.map { v in Set((try catalog.lineage(versionID: v.id)?.inputs ?? []).map { "\($0.ref) (\($0.kind.rawValue))" }) }
        let inputs = zip(refs, lineage).map { ref, set in
            Inputs(ref: ref, inputs: set.sorted(), added: set.subtracting(lineage[0]).sorted(), removed: lineage[0].subtracting(set).sorted())
        }
        return VersionComparison(refs: refs, meta: meta, files: files, inputs: inputs)
    }
}
