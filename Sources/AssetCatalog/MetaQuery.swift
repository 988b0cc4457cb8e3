#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Version metadata as typed values (issue 19): a value that is a JSON number (`0.91`, `12`, `-3e-4`; not `007`,
/// `+1`, `0x10` or `nan`) is a number and compares as one; anything else is a string.
public enum MetaValue: Sendable, Equatable, Encodable {
    case number(Double)
    case string(String)

    public init(_ text: String) {
        if let n = MetaValue.number(text) { self = .number(n) } else { self = .string(text) }
    }

    /// The number `text` spells in JSON's grammar, else nil.
    public static func number(_ text: String) -> Double? {
        var s = Substring(text)
        if s.first == "-" { s = s.dropFirst() }
        guard let first = s.first, first.isASCII, first.isNumber else { return nil }
        let integer = s.prefix { $0.isASCII && $0.isNumber }
        if integer.count > 1 && integer.first == "0" { return nil }
        var rest = s.dropFirst(integer.count)
        if rest.first == "." {
            rest = rest.dropFirst()
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { return nil }
            rest = rest.dropFirst(digits.count)
        }
        if rest.first == "e" || rest.first == "E" {
            rest = rest.dropFirst()
            if rest.first == "+" || rest.first == "-" { rest = rest.dropFirst() }
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { return nil }
            rest = rest.dropFirst(digits.count)
        }
        guard rest.isEmpty, let value = Double(text), value.isFinite else { return nil }
        return value
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n):
            if let whole = Self.whole(n) { try c.encode(whole) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        }
    }

    /// Whole numbers print without a fraction (12, not 12.0), in JSON and as text.
    static func whole(_ n: Double) -> Int64? { n == n.rounded() && abs(n) < 1e15 ? Int64(n) : nil }

    /// As typed: whole numbers without a fraction.
    public var text: String {
        switch self {
        case .number(let n): return Self.whole(n).map(String.init) ?? String(n)
        case .string(let s): return s
        }
    }

    /// Numbers before strings; numbers by value, strings by their bytes.
    public static func < (a: MetaValue, b: MetaValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return x < y
        case (.number, .string): return true
        case (.string, .number): return false
        case (.string(let x), .string(let y)): return x < y
        }
    }
}

extension VersionInfo {
    /// The metadata as typed values, the last value of a repeated key winning (as `show --json` shows it).
    public var typedMeta: [String: MetaValue] {
        Dictionary(meta.map { ($0.key, MetaValue($0.value)) }, uniquingKeysWith: { _, last in last })
    }
}

/// `KEY OP VALUE` for `assetfs meta --where`: OP is one of `>=`, `<=`, `!=`, `==`, `=`, `>`, `<`. Numbers compare
/// as numbers when both sides are numbers, strings as strings otherwise.
public struct MetaCondition: Sendable, Equatable {
    public enum Op: String, Sendable, CaseIterable { case ge = ">=", le = "<=", ne = "!=", eq2 = "==", eq = "=", gt = ">", lt = "<" }
    public let key: String
    public let op: Op
    public let value: MetaValue

    public init(parsing text: String) throws {
        // Two-character operators first, so `>=` is not read as `>` followed by `=VALUE`.
        for op in Op.allCases {
            if let range = text.range(of: op.rawValue) {
                let key = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
                let value = text[range.upperBound...].trimmingCharacters(in: .whitespaces)
                guard !key.isEmpty else { break }
                self.key = key
                self.op = op
                self.value = MetaValue(value)
                return
            }
        }
        throw CatalogError(.invalid, "invalid condition '\(text)': use KEY OP VALUE with OP one of >= <= != = > <, e.g. 'val.acc>0.9'")
    }

    public func holds(for meta: [String: MetaValue]) -> Bool {
        guard let actual = meta[key] else { return false }
        switch op {
        case .eq, .eq2: return actual == value
        case .ne: return actual != value
        case .gt: return value < actual
        case .lt: return actual < value
        case .ge: return !(actual < value)
        case .le: return !(value < actual)
        }
    }
}

/// `[-]KEY` for `assetfs meta --sort`: ascending, or descending with `-`; versions without the key come last.
public struct MetaSort: Sendable, Equatable {
    public let key: String
    public let descending: Bool

    public init(parsing text: String) {
        descending = text.hasPrefix("-")
        key = descending ? String(text.dropFirst()) : text
    }

    public func ordered(_ versions: [VersionInfo]) -> [VersionInfo] {
        versions.enumerated().sorted { a, b in
            let x = a.element.typedMeta[key], y = b.element.typedMeta[key]
            switch (x, y) {
            case (nil, nil): return a.offset < b.offset
            case (nil, _): return false
            case (_, nil): return true
            case (let x?, let y?):
                if x == y { return a.offset < b.offset }
                return descending ? y < x : x < y
            }
        }.map(\.element)
    }
}
