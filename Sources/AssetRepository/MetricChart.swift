import AssetCatalog
import Foundation

/// Metrics over versions (issue 19): an SVG chart, and sparklines for a terminal. Written by hand: an SVG is a
/// few dozen lines of text, and a charting library would be the package's largest dependency for it.
public struct MetricChart: Sendable {
    public struct Point: Sendable, Equatable {
        public let version: Int
        public let x: Double
        public let y: Double
    }

    public struct Series: Sendable {
        public let key: String
        public let points: [Point]
    }

    public let asset: String
    public let series: [Series]
    /// Tagged versions: version -> tag names.
    public let tags: [Int: [String]]
    /// What x is: "version" or "created" (seconds since the epoch).
    public let xAxis: String

    /// One series per key, one point per version whose value of the key is a number.
    public init(asset: String, versions: [VersionInfo], keys: [String], byCreationTime: Bool) {
        self.asset = asset
        self.xAxis = byCreationTime ? "created" : "version"
        self.series = keys.map { key in
            Series(key: key, points: versions.compactMap { v in
                guard case .number(let y)? = v.typedMeta[key] else { return nil }
                return Point(version: v.number, x: byCreationTime ? Double(v.createdNs) / 1e9 : Double(v.number), y: y)
            })
        }
        self.tags = Dictionary(versions.filter { !$0.tags.isEmpty }.map { ($0.number, $0.tags) }, uniquingKeysWith: { a, _ in a })
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// A standalone SVG: one line and one marked point per version for each key, tagged versions as dashed
    /// vertical lines with their names, axes with their ranges, a legend.
    public func svg(width: Int = 900, height: Int = 420) -> String {
        let left = 70.0, right = 20.0, top = 40.0, bottom = 60.0
        let w = Double(width) - left - right, h = Double(height) - top - bottom
        let all = series.flatMap(\.points)
        let xs = all.map(\.x), ys = all.map(\.y)
        let (x0, x1) = Self.range(xs.min() ?? 0, xs.max() ?? 1)
        let (y0, y1) = Self.range(ys.min() ?? 0, ys.max() ?? 1)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * w }
        func py(_ y: Double) -> Double { top + h - (y - y0) / (y1 - y0) * h }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = [#"<svg xmlns="http://www.w3.org/2000/svg" width="\#(width)" height="\#(height)" viewBox="0 0 \#(width) \#(height)" font-family="Helvetica, Arial, sans-serif" font-size="12">"#,
                   #"<rect width="100%" height="100%" fill="white"/>"#,
                   #"<text x="\#(left)" y="22" font-size="15" font-weight="bold">\#(Self.escape(asset)): \#(Self.escape(series.map(\.key).joined(separator: ", "))) by \#(xAxis)</text>"#,
                   #"<line x1="\#(left)" y1="\#(f(top + h))" x2="\#(f(left + w))" y2="\#(f(top + h))" stroke="black"/>"#,
                   #"<line x1="\#(left)" y1="\#(top)" x2="\#(left)" y2="\#(f(top + h))" stroke="black"/>"#]
        let (dataX0, dataX1) = (xs.min() ?? 0, xs.max() ?? 1), (dataY0, dataY1) = (ys.min() ?? 0, ys.max() ?? 1)
        var xTicks = Set<Double>()
        for i in 0...4 {
            // Ticks span the data (not the padded frame); versions are whole numbers.
            let y = dataY0 + (dataY1 - dataY0) * Double(i) / 4
            out.append(#"<line x1="\#(left - 4)" y1="\#(f(py(y)))" x2="\#(f(left + w))" y2="\#(f(py(y)))" stroke="gainsboro"/>"#)
            out.append(#"<text x="\#(left - 8)" y="\#(f(py(y) + 4))" text-anchor="end">\#(Self.label(y))</text>"#)
            var x = dataX0 + (dataX1 - dataX0) * Double(i) / 4
            if xAxis == "version" { x = x.rounded() }
            guard xTicks.insert(x).inserted else { continue }  // Few versions: one label each, not two on one.
            let xText = xAxis == "version" ? "v\(Int(x.rounded()))" : Self.date(x)
            out.append(#"<text x="\#(f(px(x)))" y="\#(f(top + h + 18))" text-anchor="middle">\#(xText)</text>"#)
        }
        out.append(#"<text x="\#(f(left + w / 2))" y="\#(height - 12)" text-anchor="middle">\#(xAxis == "version" ? "version" : "created (UTC)")</text>"#)
        for (version, names) in tags.sorted(by: { $0.key < $1.key }) {
            guard let x = all.first(where: { $0.version == version })?.x else { continue }
            out.append(#"<line class="tag" data-version="\#(version)" x1="\#(f(px(x)))" y1="\#(top)" x2="\#(f(px(x)))" y2="\#(f(top + h))" stroke="gray" stroke-dasharray="4 3"/>"#)
            let anchor = px(x) > left + w * 0.8 ? #"text-anchor="end" "# : ""
            out.append(#"<text \#(anchor)x="\#(f(px(x) + (anchor.isEmpty ? 3 : -3)))" y="\#(f(top + h - 6))" fill="dimgray">\#(Self.escape(names.joined(separator: ",")))</text>"#)
        }
        for (i, s) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let path = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out.append(#"<polyline fill="none" stroke="\#(color)" stroke-width="2" points="\#(path)"/>"#)
            for p in s.points {
                out.append(#"<circle class="point" data-key="\#(Self.escape(s.key))" data-version="\#(p.version)" data-value="\#(p.y)" cx="\#(f(px(p.x)))" cy="\#(f(py(p.y)))" r="3.5" fill="\#(color)"><title>v\#(p.version) \#(Self.escape(s.key))=\#(Self.label(p.y))</title></circle>"#)
            }
            let ly = top + 16 * Double(i) + 8
            out.append(#"<rect x="\#(f(left + w - 160))" y="\#(f(ly - 9))" width="12" height="3" fill="\#(color)"/>"#)
            out.append(#"<text x="\#(f(left + w - 142))" y="\#(f(ly))">\#(Self.escape(s.key))</text>"#)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// One line per key: the key, a sparkline of its values in version order that fits `width` columns, and
    /// its first, last, minimum and maximum.
    public func sparklines(width: Int) -> [String] {
        let bars = Array("▁▂▃▄▅▆▇█")
        let labelWidth = min(24, (series.map(\.key.count).max() ?? 0))
        return series.map { s in
            let ys = s.points.map(\.y)
            // As much of the figures as leaves the line at least 8 columns, in a terminal of any width.
            let choices = ys.isEmpty ? ["no numbers", ""] : [
                "first \(Self.label(ys.first!))  last \(Self.label(ys.last!))  min \(Self.label(ys.min()!))  max \(Self.label(ys.max()!))",
                "last \(Self.label(ys.last!))  min \(Self.label(ys.min()!))  max \(Self.label(ys.max()!))",
                "last \(Self.label(ys.last!))", "",
            ]
            let stats = choices.first { width - labelWidth - $0.count - 4 >= min(8, max(1, ys.count)) } ?? ""
            let room = max(1, width - labelWidth - stats.count - 4)
            // More versions than columns: each column shows the mean of its share of them.
            let columns = min(room, ys.count)
            var cells: [Double] = []
            for c in 0..<columns {
                let from = c * ys.count / columns, to = max(from + 1, (c + 1) * ys.count / columns)
                cells.append(ys[from..<to].reduce(0, +) / Double(to - from))
            }
            let lo = ys.min() ?? 0, hi = ys.max() ?? 0
            let line = String(cells.map { v in bars[hi > lo ? min(7, Int((v - lo) / (hi - lo) * 7.999)) : 3] })
            let key = s.key.count > labelWidth ? String(s.key.prefix(labelWidth - 1)) + "…" : s.key.padding(toLength: labelWidth, withPad: " ", startingAt: 0)
            return stats.isEmpty ? "\(key)  \(line)" : "\(key)  \(line)  \(stats)"
        }
    }

    static func range(_ lo: Double, _ hi: Double) -> (Double, Double) {
        if lo == hi { return (lo - 1, hi + 1) }
        let pad = (hi - lo) * 0.05
        return (lo - pad, hi + pad)
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e9 { return String(Int64(v)) }
        return String(format: "%.4g", v)
    }

    static func date(_ seconds: Double) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
