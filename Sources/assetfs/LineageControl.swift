import AssetCatalog
import AssetFUSE
import AssetTelemetry
import AssetVFS
import Foundation

/// The lineage requests a mount answers on its local socket (Documentation/Lineage.md), and their callers:
/// `commit` asks every mount of its store to flush, `assetfs run` registers its session with every mount.
enum LineageControl {
    struct RunBegin: Codable {
        var session: Int32
        var id: String
        var name: String?
        var command: [String]
        var startedNs: Int64
    }

    struct RunEnd: Codable {
        var session: Int32
    }

    struct Failure: Codable {
        var error: String
    }

    static let offAnswer = (409, Data(#"{"error":"lineage is off on this mount (--no-lineage)"}"#.utf8))

    static func routes(_ fs: AssetFileSystem) -> [ControlRoute] {
        return [
            ControlRoute("POST /lineage/flush") { _ in
                guard fs.lineage != nil else { return offAnswer }
                fs.flushLineage()
                return (200, Data("{}".utf8))
            },
            ControlRoute("POST /lineage/runs/begin") { body in
                guard let recorder = fs.lineage else { return offAnswer }
                guard let run = try? JSONDecoder().decode(RunBegin.self, from: body) else { return (400, Data()) }
                recorder.beginRun(session: run.session, id: run.id, name: run.name, command: run.command, startedNs: run.startedNs)
                return (200, Data("{}".utf8))
            },
            ControlRoute("POST /lineage/runs/end") { body in
                guard let recorder = fs.lineage else { return offAnswer }
                guard let end = try? JSONDecoder().decode(RunEnd.self, from: body) else { return (400, Data()) }
                let record = recorder.endRun(session: end.session) ?? LineageRecord()
                return (200, Data(record.encoded().utf8))
            },
        ]
    }

    /// POSTs `body` to `route` on the local socket of the mount at `mountpoint`; the answer's body.
    static func post(_ route: String, to mountpoint: String, body: Data = Data(), timeout: Double = 5) throws -> Data {
        try MountControl.request(unixSocket: MountSocket.path(forMountpoint: mountpoint), method: "POST", path: route, body: body,
                                 timeout: timeout)
    }

    /// Whether `error` is a mount's answer that it records no lineage (`--no-lineage`).
    static func isOff(_ error: Error) -> Bool { (error as? TelemetryError)?.status == offAnswer.0 }

    /// Asks every mount of the store at `root` on this host to write its writers' observations now; returns the
    /// mounts that did not answer (their last second of observations may be missing).
    static func flushMounts(ofStore root: String) -> [String] {
        var silent: [String] = []
        for mountpoint in MountTable.mounts(ofStore: root) {
            do {
                _ = try post("/lineage/flush", to: mountpoint, timeout: 10)
            } catch where isOff(error) {
                continue  // --no-lineage: nothing to flush.
            } catch {
                silent.append(mountpoint)
            }
        }
        return silent
    }
}
