import Foundation

enum Format {
    /// "1 file", "3 files".
    static func files(_ n: Int) -> String { n == 1 ? "1 file" : "\(n) files" }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func date(_ ns: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
        return formatter.string(from: Date(timeIntervalSince1970: Double(ns) / 1e9))
    }

    static func iso(_ ns: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(ns) / 1e9))
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// A one-line progress display on stderr (a terminal): redrawn in place, never wider than the terminal, so it
/// cannot wrap and leave a trail of half lines.
enum ProgressBar {
    /// The terminal's width from TIOCGWINSZ on stderr, else $COLUMNS, else 80.
    static var columns: Int {
        var size = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let n = Int(text), n > 0 { return n }
        return 80
    }

    /// `importing 1.2 GiB / 3.4 GiB  120/3100 files [#####.....]  35% 410 MB/s ETA 6s`, the bar shrunk (then
    /// dropped, then the line cut) to fit the terminal.
    static func render(done: UInt64, total: UInt64?, files: Int? = nil, filesTotal: Int? = nil, elapsed: Double, label: String) {
        let rate = elapsed > 0 ? Double(done) / elapsed / 1e6 : 0
        var head = "\(label) \(Format.bytes(done))"
        var tail = String(format: " %.0f MB/s", rate)
        var fraction: Double?
        if let total, total > 0 {
            head += " / \(Format.bytes(total))"
            let f = min(1, Double(done) / Double(total))
            fraction = f
            let eta = rate > 0 ? Double(total - min(done, total)) / (rate * 1e6) : 0
            // The first second's rate says little about the rest.
            tail = String(format: " %3.0f%%", f * 100) + tail + (elapsed >= 1 ? String(format: " ETA %.0fs", eta) : "")
        }
        if let files { head += filesTotal.map { "  \(files)/\($0) files" } ?? "  \(files) files" }
        line(head: head, fraction: fraction, tail: tail)
    }

    /// `verifying chunks 120/3100 [#####.....]  4%`, fitted to the terminal like `render`.
    static func count(_ done: Int, of total: Int, label: String) {
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : nil
        line(head: "\(label) \(done)/\(total)", fraction: fraction, tail: fraction.map { String(format: " %3.0f%%", $0 * 100) } ?? "")
    }

    private static func line(head: String, fraction: Double?, tail: String) {
        let room = columns - 1  // The last column would make some terminals wrap.
        var text = head
        let barWidth = min(30, room - head.count - tail.count - 3)
        if let fraction, barWidth >= 10 {
            let filled = Int(fraction * Double(barWidth))
            text += " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled) + "]"
        }
        text += tail
        if text.count > room { text = String(text.prefix(max(room, 0))) }
        FileHandle.standardError.write(Data(("\r" + text + "\u{1B}[K").utf8))
    }

    static func finish() { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
}
