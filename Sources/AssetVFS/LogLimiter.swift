import AssetStore
import Dispatch
import Logging

/// At most `burst` log lines per `window` seconds for one kind of failure, then one line saying how many were
/// left out: a dead server under a busy mount fails thousands of reads a second, and each would otherwise
/// write a line to the journal or the log file until the disk is full.
public final class LogLimiter: @unchecked Sendable {
    public let burst: Int
    public let window: Double
    private let lock = Lock()
    // Protected by `lock`.
    private var windowStartNs: UInt64 = 0
    private var written = 0
    private var suppressed = 0

    public init(burst: Int = 10, window: Double = 10) {
        self.burst = burst
        self.window = window
    }

    /// Writes the line through `logger` if `admit` lets it, with how many lines were left out before it
    /// (`suppressed_since_last`); `metadata` is only built for a line that is written.
    public func log(_ logger: Logger, _ level: Logger.Level, _ message: String, metadata: () -> Logger.Metadata = { [:] }) {
        let admitted = admit()
        guard admitted.write else { return }
        var all = metadata()
        if admitted.suppressedBefore > 0 { all["suppressed_since_last"] = "\(admitted.suppressedBefore)" }
        logger.log(level: level, "\(message)", metadata: all)
    }

    /// Whether to write this line, and how many lines were left out since the last one written (to say so).
    public func admit() -> (write: Bool, suppressedBefore: Int) {
        lock.withLock {
            // The clock is read under the lock: read before it, another thread could have started a window
            // later than this thread's `now`, and the subtraction below would underflow (it did, in a test).
            let now = DispatchTime.now().uptimeNanoseconds
            if now - windowStartNs >= UInt64(window * 1e9) {
                windowStartNs = now
                written = 0
            }
            guard written < burst else {
                suppressed += 1
                return (false, 0)
            }
            written += 1
            defer { suppressed = 0 }
            return (true, suppressed)
        }
    }
}
