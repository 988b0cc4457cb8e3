import Metrics

/// What the store layer counts (no-ops unless the process bootstrapped a metrics backend, as a mount does).
enum StoreMetrics {
    /// This host's disk cache of a shared store's chunks (`--disk-cache`).
    static let diskHits = Counter(label: "assetfs_disk_cache_hits_total")
    static let diskMisses = Counter(label: "assetfs_disk_cache_misses_total")
    static let diskReadBytes = Counter(label: "assetfs_disk_cache_read_bytes_total")
    static let diskWrittenBytes = Counter(label: "assetfs_disk_cache_written_bytes_total")
    static let diskEvictedBytes = Counter(label: "assetfs_disk_cache_evicted_bytes_total")
    /// Cached records that failed verification (damaged on this host's disk): dropped and fetched again.
    static let diskDamaged = Counter(label: "assetfs_disk_cache_damaged_total")
    /// The cache's size as this process last measured it (every process on the host counts).
    static let diskBytes = Gauge(label: "assetfs_disk_cache_bytes")
    static let diskLimit = Gauge(label: "assetfs_disk_cache_limit_bytes")
    /// Transient failures of a pack storage call that were tried again.
    static let retries = Counter(label: "assetfs_object_store_retries_total")
    /// Aligned pack ranges fetched for readers in order (SegmentedPackReader), and their bytes.
    static let segmentFetches = Counter(label: "assetfs_pack_segment_fetches_total")
    static let segmentBytes = Counter(label: "assetfs_pack_segment_fetched_bytes_total")
}

/// Counters by label values, each made once: looking a labelled metric up in the registry on every event
/// costs microseconds (a lock, hashing, label sorting), which per FUSE request showed in the read benchmark
/// (warm reads of small files 0.87x with metrics on); a hit here is one dictionary lookup under a lock.
public final class KeyedCounters<Key: Hashable & Sendable>: @unchecked Sendable {
    private let make: @Sendable (Key) -> Counter
    private let lock = Lock()
    private var counters: [Key: Counter] = [:]  // Protected by `lock`.

    public init(_ make: @escaping @Sendable (Key) -> Counter) { self.make = make }

    public func increment(_ key: Key, by amount: Int = 1) {
        let counter = lock.withLock { () -> Counter in
            if let existing = counters[key] { return existing }
            let made = make(key)
            counters[key] = made
            return made
        }
        counter.increment(by: amount)
    }
}
