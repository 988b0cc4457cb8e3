import AssetCatalog
import AssetStore
import Foundation

/// A lease in the catalog that says "this process, on this host, is doing this to the store", kept alive by a
/// heartbeat. gc reads the leases of every host (JuiceFS's client sessions are the model): it never runs beside
/// an import or commit, and they never start beside it. A process that dies stops renewing, and its lease
/// expires by itself after `lease` seconds.
///
/// Hosts judge expiry by their own clocks: keep them in sync (NTP), as for any lease.
public final class StoreSession: @unchecked Sendable {
    public static let defaultLease = 30.0

    public let info: SessionInfo
    private let catalog: Catalog
    private let beat: Heartbeat

    private init(info: SessionInfo, catalog: Catalog, lease: Double) {
        self.info = info
        self.catalog = catalog
        beat = Heartbeat(id: info.id, catalog: catalog, lease: lease)
        // The thread holds the heartbeat, not the session: a session dropped without `close` still closes.
        let thread = Thread { [beat] in beat.run() }
        thread.name = "assetfs-session"
        thread.start()
    }

    deinit { close() }

    /// Opens a session of `kind` once no live session of the `excluding` kinds remains, waiting up to `wait`
    /// seconds for them (polling); then fails with a message naming what holds the store.
    /// `waiting` is told once, when the first attempt finds the store busy.
    public static func open(_ repo: Repository, kind: SessionKind, excluding: Set<SessionKind>, wait: Double = 600,
                            lease: Double = defaultLease, waiting: (([SessionInfo]) -> Void)? = nil) throws -> StoreSession {
        let deadline = Date().addingTimeInterval(wait)
        let host = hostName()
        var told = false
        while true {
            let new = NewSession(host: host, pid: getpid(), kind: kind, expiresNs: expiry(after: lease))
            switch try repo.catalog.openSession(new, excluding: excluding) {
            case .opened(let info):
                return StoreSession(info: info, catalog: repo.catalog, lease: lease)
            case .blocked(let holders):
                // A holder on this host whose process is gone (it crashed, or exited without closing, e.g. when
                // the disk was full) need not be waited for until its lease runs out.
                let dead = holders.filter { $0.host == host && $0.pid != getpid() && kill($0.pid, 0) != 0 && errno == ESRCH }
                let cleared = dead.filter { (try? repo.catalog.closeSession($0.id)) != nil }
                if !cleared.isEmpty { continue }
                if !told {
                    waiting?(holders)
                    told = true
                }
                if Date() >= deadline {
                    let names = holders.prefix(3).map(\.summary).joined(separator: ", ")
                    throw RepositoryError(.conflict, "cannot start \(kind.rawValue): the store is busy with \(names); retry when \(holders.count == 1 ? "it finishes" : "they finish") (a crashed one lets go within \(Int(lease)) s)")
                }
                Thread.sleep(forTimeInterval: min(0.5, max(0.01, deadline.timeIntervalSinceNow)))
            }
        }
    }

    /// False once a renewal found the lease expired: other hosts may have acted as if this process were gone.
    public var isValid: Bool { !beat.lost }

    /// Throws when the lease was lost: gc on another host may have deleted what this work relies on, so it
    /// must not record anything.
    public func requireValid(_ what: String) throws {
        guard isValid else {
            throw RepositoryError(.failure, "the \(what) lost its lease in the catalog (it stalled for longer than \(Int(beat.lease)) s, or the catalog was unreachable that long); nothing was recorded: run it again")
        }
    }

    public func close() {
        if beat.stop() { _ = try? catalog.closeSession(info.id) }  // Safe: an unclosed lease expires by itself.
    }

    /// This host's name (gethostname: no DNS lookup).
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func expiry(after seconds: Double) -> Int64 { Clock.nowNanoseconds() + Int64(seconds * 1e9) }
}

/// Renews a session's lease every third of it until stopped.
private final class Heartbeat: @unchecked Sendable {
    let id: Int64
    let lease: Double
    private let condition = NSCondition()
    // Protected by `condition`.
    private var catalog: Catalog?
    private var stopped = false
    private var finished = false
    private var expired = false

    init(id: Int64, catalog: Catalog, lease: Double) {
        self.id = id
        self.catalog = catalog
        self.lease = lease
    }

    var lost: Bool { condition.withLock { expired } }

    /// Stops the beat and waits (a bounded time) until its thread has let go of the catalog: a process that
    /// exits right after must still close its catalog connection (SQLite checkpoints its log on that close).
    /// True the first time.
    func stop() -> Bool {
        condition.withLock {
            let first = !stopped
            stopped = true
            condition.broadcast()
            let deadline = Date().addingTimeInterval(10)
            while !finished && condition.wait(until: deadline) {}
            return first
        }
    }

    func run() {
        condition.lock()
        defer {
            catalog = nil
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        while !stopped {
            _ = condition.wait(until: Date().addingTimeInterval(lease / 3))
            if stopped { return }
            let current = catalog
            condition.unlock()
            let renewed = try? current?.renewSession(id, expiresNs: StoreSession.expiry(after: lease))
            condition.lock()
            // A failed renewal (catalog unreachable) is tried again at the next beat; only an expired lease is lost.
            if renewed == false { expired = true }
        }
    }
}
