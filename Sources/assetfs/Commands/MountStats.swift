import AssetFUSE
import AssetRepository
import AssetTelemetry
import Foundation

/// `assetfs stats --mount MNT`: the figures of the mount's daemon, read from its local metrics socket.
enum MountStats {
    static func print(mountpoint: String, json: Bool) throws {
        guard MountTable.isMounted(mountpoint) else {
            throw RepositoryError(.failure, "nothing is mounted on \(mountpoint)")
        }
        let socket = MountSocket.path(forMountpoint: mountpoint)
        var text: String?
        var failure: Error?
        // A mount that has just started may not be listening yet: its socket comes up beside the mount.
        for attempt in 0..<10 where text == nil {
            if attempt > 0 { usleep(100_000) }
            do { text = try MetricsScrape.fetch(unixSocket: socket) } catch { failure = error }
        }
        guard let text else {
            throw RepositoryError(.failure, "cannot read the figures of the mount on \(mountpoint) from \(socket): \(failure.map { "\($0)" } ?? "no answer") (is it an assetfs mount of this version, run by this user, without --metrics off?)")
        }
        let figures = MountFigures(PrometheusText.parse(text))
        if json { return try printJSON(figures) }
        Swift.print(render(figures, mountpoint: mountpoint))
    }

    static func render(_ f: MountFigures, mountpoint: String) -> String {
        func ratio(_ c: MountFigures.Cache) -> String {
            c.hitRatio.map { String(format: "%.1f%% hit ratio", $0 * 100) } ?? "no lookups yet"
        }
        func ms(_ seconds: Double?) -> String { seconds.map { String(format: "%.2f ms", $0 * 1000) } ?? "-" }
        func n(_ v: Double) -> String { String(Int64(v)) }
        func bytes(_ v: Double) -> String { Format.bytes(UInt64(max(0, v))) }
        var lines = ["mount \(mountpoint) (since its daemon started)"]
        let m = f.memoryCache
        lines.append("memory cache:  \(bytes(m.bytes)) of \(bytes(m.limitBytes)) (--cache-size); \(n(m.hits)) hits, \(n(m.misses)) misses, \(ratio(m))")
        if let d = f.diskCache {
            var line = "disk cache:    \(bytes(d.bytes)) of \(bytes(d.limitBytes)) (--disk-cache-size); \(n(d.hits)) hits, \(n(d.misses)) misses, \(ratio(d))"
            if d.damaged > 0 { line += "; \(n(d.damaged)) damaged entries fetched again" }
            lines.append(line)
        }
        if let o = f.objectStore {
            let methods = o.requests.sorted { $0.key < $1.key }.map { "\($0.key) \(n($0.value))" }.joined(separator: ", ")
            lines.append("object store:  \(n(o.total)) requests (\(methods.isEmpty ? "none" : methods)), mean \(ms(o.meanLatencySeconds)); \(bytes(o.receivedBytes)) received, \(bytes(o.sentBytes)) sent; \(n(o.errors)) errors, \(n(o.retries)) retries")
        }
        if let c = f.catalog {
            lines.append("catalog:       \(n(c.total)) requests (\(n(c.queries)) queries), mean \(ms(c.meanLatencySeconds)); \(n(c.errors)) errors, \(n(c.retries)) retries")
        }
        lines.append("read:          \(bytes(f.readBytes)) answered to reads; \(n(f.workspacesOpen)) workspaces open")
        if !f.versionOpens.isEmpty {
            let versions = f.versionOpens.sorted { $0.key < $1.key }.map { "\($0.key) (\(n($0.value)))" }.joined(separator: ", ")
            lines.append("versions read: \(versions) (files opened)")
        }
        if !f.operations.isEmpty {
            lines.append("FUSE requests:")
            let width = f.operations.keys.map(\.count).max() ?? 0
            for (op, o) in f.operations.sorted(by: { $0.value.requests > $1.value.requests }) {
                lines.append("  \(op.padding(toLength: width, withPad: " ", startingAt: 0))  \(n(o.requests)) requests, \(n(o.errors)) errors, mean \(ms(o.meanLatencySeconds))")
            }
        }
        return lines.joined(separator: "\n")
    }
}
