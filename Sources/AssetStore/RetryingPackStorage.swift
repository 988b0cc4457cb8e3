import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// How long and how often a failed storage call is tried again.
public struct RetryPolicy: Sendable {
    /// Tries in all, the first included.
    public var attempts = 8
    /// The delay before the first retry; each later one doubles, up to `maxDelay`. The wait is drawn at random
    /// between zero and that bound ("full jitter"), so many clients that failed together do not retry together.
    public var initialDelay = 0.1
    public var maxDelay = 5.0
    /// No retry starts later than this after the first try.
    public var totalTime = 30.0

    public init() {}
}

/// Retries a backend's transient failures (`StoreError.Code.transient`: timeouts, resets, a busy or restarting
/// server) with exponential backoff and full jitter, within a bounded number of tries and a bounded time; any
/// other failure is passed on at once. A decorator in restic's manner (`internal/backend/retry`): the backend
/// knows nothing of retries, and this knows nothing of the backend.
///
/// Every call it retries is safe to repeat: reads; `put` of a content-named pack (the source stays as it was);
/// `delete`, where a retry that finds the pack gone has succeeded.
public struct RetryingPackStorage: PackStorage {
    public let inner: PackStorage
    public let policy: RetryPolicy
    /// Waits the given seconds (tests pass one that records instead of sleeping).
    let sleep: @Sendable (Double) -> Void
    /// Told of each retry, with the failure (it names the object and the endpoint) and what happens next:
    /// a mount logs it, rate-limited.
    let onRetry: (@Sendable (String) -> Void)?

    public init(_ inner: PackStorage, policy: RetryPolicy = RetryPolicy(),
                sleep: @escaping @Sendable (Double) -> Void = { seconds in usleep(UInt32(seconds * 1_000_000)) },
                onRetry: (@Sendable (String) -> Void)? = nil) {
        self.inner = inner
        self.policy = policy
        self.sleep = sleep
        self.onRetry = onRetry
    }

    public var location: String { inner.location }
    public var scratchDirectory: String { inner.scratchDirectory }
    public func describe(_ id: ContentHash) -> String { inner.describe(id) }

    public func put(_ id: ContentHash, from source: PackSource) throws {
        try retrying("store pack \(inner.describe(id))") { try inner.put(id, from: source) }
    }

    public func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try retrying("read pack \(inner.describe(id))") { try inner.read(id, at: offset, into: buffer) }
    }

    public func size(of id: ContentHash) throws -> UInt64? {
        try retrying("size of pack \(inner.describe(id))") { try inner.size(of: id) }
    }

    public func delete(_ id: ContentHash) throws {
        var tries = 0
        try retrying("delete pack \(inner.describe(id))") {
            tries += 1
            do {
                try inner.delete(id)
            } catch let error as StoreError where error.code == .notFound && tries > 1 {
                return  // An earlier try deleted it and its answer was lost.
            }
        }
    }

    public func list() throws -> [StoredPack] {
        try retrying("list packs in \(inner.location)") { try inner.list() }
    }

    private func retrying<T>(_ what: String, _ body: () throws -> T) throws -> T {
        let started = DispatchTime.now().uptimeNanoseconds
        var bound = policy.initialDelay
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as StoreError where error.code == .transient {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                let wait = Double.random(in: 0...bound)
                guard attempt < policy.attempts, elapsed + wait < policy.totalTime else {
                    throw StoreError(.transient, "\(what): gave up after \(attempt) tries in \(String(format: "%.1f", elapsed)) s: \(error.message)",
                                     cause: error.cause)
                }
                StoreMetrics.retries.increment()
                onRetry?("\(error.message); retrying in \(String(format: "%.2f", wait)) s (try \(attempt + 1) of at most \(policy.attempts), \(String(format: "%.0f", max(0, policy.totalTime - elapsed))) s left before giving up)")
                sleep(wait)
                bound = min(bound * 2, policy.maxDelay)
                attempt += 1
            }
        }
    }
}
