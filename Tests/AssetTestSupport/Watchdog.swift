import Foundation

/// A thread that turns a hang into a failure. Operations against a mount run inside `guarding`; if one takes
/// longer than its budget (or the whole test exceeds its backstop), `onFire` runs (the fixture aborts the FUSE
/// connection through fusectl, so every blocked call returns ENOTCONN) and the reason is kept for the report.
public final class Watchdog: @unchecked Sendable {
    private let condition = NSCondition()
    // All protected by `condition`.
    private var operations: [(what: String, deadline: Date, report: Bool)] = []
    private var backstop: Date
    private var backstopSeconds: Double
    private var stopped = false
    private var reasons: [String] = []
    private let onFire: @Sendable (String) -> Void

    public init(backstopSeconds: Double, name: String = "test-watchdog", onFire: @escaping @Sendable (String) -> Void) {
        self.backstopSeconds = backstopSeconds
        self.backstop = Date().addingTimeInterval(backstopSeconds)
        self.onFire = onFire
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Runs `body`; if it has not returned after `seconds`, the watchdog fires. `report: false` is for the test
    /// of the watchdog itself: it still fires, but the firing is not a failure.
    public func guarding<T>(_ what: String, seconds: Double, report: Bool = true, _ body: () throws -> T) rethrows -> T {
        condition.lock()
        operations.append((what, Date().addingTimeInterval(seconds), report))
        let index = operations.count - 1
        condition.signal()
        condition.unlock()
        defer {
            condition.lock()
            if index < operations.count { operations.removeSubrange(index...) }
            condition.signal()
            condition.unlock()
        }
        return try body()
    }

    /// Why it fired, if it did.
    public var fired: [String] { condition.withLock { reasons } }

    public func stop() {
        condition.withLock {
            stopped = true
            condition.signal()
        }
    }

    private func loop() {
        condition.lock()
        while !stopped {
            let now = Date()
            var reason: String?
            var report = true
            if let i = operations.firstIndex(where: { $0.deadline <= now }) {
                reason = "watchdog: `\(operations[i].what)` hung past its time budget; the FUSE connection was aborted"
                report = operations[i].report
                operations[i].deadline = .distantFuture  // fire once per operation
            } else if backstop <= now {
                reason = "watchdog: the test ran longer than \(Int(backstopSeconds)) s; the FUSE connection was aborted"
                backstop = .distantFuture
            }
            if let reason {
                if report { reasons.append(reason) }
                condition.unlock()
                onFire(reason)
                condition.lock()
                continue
            }
            let next = operations.map(\.deadline).min().map { min($0, backstop) } ?? backstop
            // NSCondition.wait(until: .distantFuture) traps on Linux (the deadline overflows its timespec), and
            // after a firing the backstop is .distantFuture: wait without a deadline then.
            if next > Date().addingTimeInterval(365 * 86_400) {
                condition.wait()
            } else {
                _ = condition.wait(until: next)
            }
        }
        condition.unlock()
    }
}
