/// A reference to a version, optionally a path inside it: `data`, `data@v12`, `data@latest`, `data@prod`,
/// `data@v3:shards/0001.csv`.
public struct Ref: Sendable, Equatable, CustomStringConvertible {
    public enum Selector: Sendable, Equatable {
        case number(Int)
        case latest
        case tag(String)
    }

    public let asset: String
    public let selector: Selector
    /// Path components inside the version; empty for the root.
    public let path: [String]

    public init(asset: String, selector: Selector, path: [String] = []) {
        self.asset = asset
        self.selector = selector
        self.path = path
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ text: String) throws -> Ref {
        var rest = Substring(text)
        var pathPart: Substring?
        if let colon = rest.firstIndex(of: ":") {
            pathPart = rest[rest.index(after: colon)...]
            rest = rest[..<colon]
        }
        var asset = rest
        var selector = Selector.latest
        if let at = rest.firstIndex(of: "@") {
            asset = rest[..<at]
            let sel = String(rest[rest.index(after: at)...])
            selector = try parseSelector(sel, in: text)
        }
        if let problem = Names.assetProblem(String(asset)) {
            throw ParseError(description: "invalid reference \(Names.quoted(text)): \(problem)")
        }
        var components = [String]()
        if let pathPart {
            for component in pathPart.split(separator: "/", omittingEmptySubsequences: true) {
                if component == "." { continue }
                if component == ".." {
                    throw ParseError(description: "invalid reference \(Names.quoted(text)): '..' is not allowed in a path inside a version")
                }
                components.append(String(component))
            }
        }
        return Ref(asset: String(asset), selector: selector, path: components)
    }

    static func parseSelector(_ sel: String, in text: String) throws -> Selector {
        if sel == "latest" { return .latest }
        let bytes = Array(sel.utf8)
        if bytes.first == UInt8(ascii: "v"), bytes.count >= 2, bytes.dropFirst().allSatisfy({ (0x30...0x39).contains($0) }) {
            guard let n = Int(sel.dropFirst()), n >= 1, n <= Int(Int32.max) else {
                throw ParseError(description: "invalid reference \(Names.quoted(text)): version numbers are v1 to v\(Int32.max)")
            }
            return .number(n)
        }
        if Names.looksLikeVersion(sel) {
            throw ParseError(description: "invalid reference \(Names.quoted(text)): version numbers are v1 to v\(Int32.max)")
        }
        if let problem = Names.tagProblem(sel) {
            throw ParseError(description: "invalid reference \(Names.quoted(text)): expected vN, latest or a tag; \(problem)")
        }
        return .tag(sel)
    }

    /// Parses `v12`, `latest` or a tag name on its own.
    public static func parseSelectorPublic(_ text: String) throws -> Selector { try parseSelector(text, in: text) }

    public var versionText: String {
        switch selector {
        case .number(let n): return "v\(n)"
        case .latest: return "latest"
        case .tag(let t): return t
        }
    }

    public var description: String {
        "\(asset)@\(versionText)" + (path.isEmpty ? "" : ":" + path.joined(separator: "/"))
    }
}
