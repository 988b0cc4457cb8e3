/// A markdown table padded to column width, so it reads well in a terminal and pastes cleanly into a README.
struct MarkdownTable {
    let headers: [String]
    /// Column indices to right-align (numbers); the others are left-aligned.
    let numeric: Set<Int>
    private(set) var rows: [[String]] = []

    init(_ headers: [String], numeric: Set<Int>? = nil) {
        self.headers = headers
        self.numeric = numeric ?? Set(1..<headers.count)
    }

    mutating func add(_ cells: [String]) {
        precondition(cells.count == headers.count, "row width must match the header")
        rows.append(cells)
    }

    func render() -> String {
        let widths = headers.indices.map { c in ([headers[c]] + rows.map { $0[c] }).map(\.count).max()! }
        func line(_ cells: [String]) -> String {
            "| " + cells.indices.map { c in
                let pad = String(repeating: " ", count: widths[c] - cells[c].count)
                return numeric.contains(c) ? pad + cells[c] : cells[c] + pad
            }.joined(separator: " | ") + " |"
        }
        let rule = "|" + headers.indices.map { c in
            numeric.contains(c) ? String(repeating: "-", count: widths[c] + 1) + ":"
                : ":" + String(repeating: "-", count: widths[c] + 1)
        }.joined(separator: "|") + "|"
        return ([line(headers), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// Fixed-point formatting without Foundation's String(format:).
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    var text = String(whole)
    if decimals > 0 {
        let frac = String(Int(scaled - Double(whole) * scale))
        text += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return (value < 0 && scaled != 0 ? "-" : "") + text
}

/// Megabytes (10^6 bytes), the unit of every size and throughput in the report.
func megabytes(_ bytes: Int) -> String { fixed(Double(bytes) / 1e6, 1) }

/// Formats an optional measurement; absent tools show as n/a.
func cell(_ value: Double?, _ decimals: Int) -> String { value.map { fixed($0, decimals) } ?? "n/a" }
