/// The naming rules for assets and tags, checked at every entry point.
public enum Names {
    public static let rule = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"

    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...128).contains(bytes.count), isAlnum(bytes[0]) else { return false }
        return bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
    }

    /// Nil if `name` may name an asset; otherwise the rule it breaks.
    public static func assetProblem(_ name: String) -> String? {
        isValid(name) ? nil : "invalid asset name \(quoted(name)): names must match \(rule)"
    }

    /// Nil if `name` may name a tag; otherwise the rule it breaks.
    public static func tagProblem(_ name: String) -> String? {
        guard isValid(name) else { return "invalid tag name \(quoted(name)): names must match \(rule)" }
        if name == "latest" || name == "workspaces" { return "invalid tag name \(quoted(name)): it is reserved" }
        if looksLikeVersion(name) { return "invalid tag name \(quoted(name)): tags may not look like v<digits>" }
        return nil
    }

    /// `v12`, and also `v-1` or `v+3`: anything a reader would take for a version number.
    static func looksLikeVersion(_ name: String) -> Bool {
        var b = Array(name.utf8)
        guard b.count >= 2, b[0] == UInt8(ascii: "v") else { return false }
        b.removeFirst()
        if b[0] == UInt8(ascii: "-") || b[0] == UInt8(ascii: "+") { b.removeFirst() }
        return !b.isEmpty && b.allSatisfy { (0x30...0x39).contains($0) }
    }

    /// A name shown safely on one line: control characters and overlong names are escaped or cut.
    public static func quoted(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars.prefix(80) {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        if name.unicodeScalars.count > 80 { out += "...(\(name.utf8.count) bytes)" }
        return "'\(out)'"
    }
}
