import AssetCatalog
import Foundation
import Yams

/// Flattens a JSON document of metrics or parameters into dotted keys (issue 19): `{"val": {"loss": 0.3}}`
/// gives `val.loss=0.3`; arrays are indexed (`layers.0`); true/false/null stay words.
public enum MetaFile {
    private indirect enum Value: Decodable {
        case object([String: Value]), array([Value]), bool(Bool), number(Double), string(String), null

        /// What Yams loads: mappings, sequences, Bool, Int, Double, String and nil.
        init(yaml value: Any?) {
            switch value {
            case let o as [String: Any]: self = .object(o.mapValues { Value(yaml: $0) })
            case let a as [Any]: self = .array(a.map { Value(yaml: $0) })
            case let b as Bool: self = .bool(b)
            case let n as Int: self = .string(String(n))  // Its digits exactly (as a Double they could round).
            case let n as Double: self = .number(n)
            case let s as String: self = .string(s)
            case nil: self = .null
            case let other?: self = .string("\(other)")
            }
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null; return }
            // Bool first: JSONDecoder refuses 1 as a Bool, so numbers fall through to Double.
            if let b = try? c.decode(Bool.self) { self = .bool(b); return }
            if let n = try? c.decode(Double.self) { self = .number(n); return }
            if let s = try? c.decode(String.self) { self = .string(s); return }
            if let a = try? c.decode([Value].self) { self = .array(a); return }
            self = .object(try c.decode([String: Value].self))
        }
    }

    public static func items(json data: Data, source: String) throws -> [MetaItem] {
        let root: Value
        do { root = try JSONDecoder().decode(Value.self, from: data) } catch {
            throw RepositoryError(.usage, "\(source) is not JSON: \(error)")
        }
        guard case .object = root else { throw RepositoryError(.usage, "\(source) must hold a JSON object of keys and values") }
        return flatten(root)
    }

    /// Dotted keys for every leaf, objects' keys in sorted order.
    private static func flatten(_ root: Value) -> [MetaItem] {
        var out: [MetaItem] = []
        func walk(_ value: Value, _ key: String) {
            switch value {
            case .object(let o): for k in o.keys.sorted() { walk(o[k]!, key.isEmpty ? k : key + "." + k) }
            case .array(let a): for (i, v) in a.enumerated() { walk(v, key + "." + String(i)) }
            case .bool(let b): out.append(MetaItem(key: key, value: b ? "true" : "false"))
            case .number(let n): out.append(MetaItem(key: key, value: MetaValue.number(n).text))
            case .string(let s): out.append(MetaItem(key: key, value: s))
            case .null: out.append(MetaItem(key: key, value: "null"))
            }
        }
        walk(root, "")
        return out
    }

    /// FILE's keys and values (a path on this host): YAML for a name ending in .yaml or .yml, else JSON.
    public static func items(file path: String) throws -> [MetaItem] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RepositoryError(.notFound, "cannot read \(path): no such file or not readable")
        }
        return try items(data, source: path)
    }

    /// JSON or, for a source named *.yaml or *.yml, YAML (a params.yaml).
    public static func items(_ data: Data, source: String) throws -> [MetaItem] {
        guard source.hasSuffix(".yaml") || source.hasSuffix(".yml") else { return try items(json: data, source: source) }
        let root: Any?
        do { root = try Yams.load(yaml: String(decoding: data, as: UTF8.self)) } catch {
            throw RepositoryError(.usage, "\(source) is not YAML: \(error)")
        }
        guard root is [String: Any] else { throw RepositoryError(.usage, "\(source) must hold a YAML mapping of keys and values") }
        return flatten(Value(yaml: root))
    }
}
