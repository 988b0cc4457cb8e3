import AssetStore
import Metrics

/// A version of an asset, as metrics and lineage count by it.
struct VersionKey: Hashable, Sendable {
    let asset: String
    let version: Int
}

/// What the file system layer counts (no-ops unless the process bootstrapped a metrics backend).
enum VFSMetrics {
    /// The mount's memory cache (`--cache-size`): whole chunks, blocks and block tables, verified.
    static let memoryHits = Counter(label: "assetfs_memory_cache_hits_total")
    static let memoryMisses = Counter(label: "assetfs_memory_cache_misses_total")
    static let memoryBytes = Gauge(label: "assetfs_memory_cache_bytes")
    static let memoryLimit = Gauge(label: "assetfs_memory_cache_limit_bytes")
    /// Chunks fetched ahead and evicted before any reader asked for them: read-ahead the cache had no room
    /// to keep (a steady rise says --cache-size is too small for the readers at once).
    static let prefetchWasted = Counter(label: "assetfs_memory_cache_prefetch_wasted_total")
    /// Workspaces this mount has opened for writing.
    static let workspacesOpen = Gauge(label: "assetfs_workspaces_open")

    /// A version file opened (or first read, on a mount whose opens the kernel serves): which versions the
    /// mount serves, by asset and version.
    static func versionFileOpened(asset: String, version: Int) { versionOpens.increment(VersionKey(asset: asset, version: version)) }

    static let versionOpens = KeyedCounters<VersionKey> {
        Counter(label: "assetfs_version_file_opens_total", dimensions: [("asset", $0.asset), ("version", "v\($0.version)")])
    }
}

/// Lineage recording (Documentation/Lineage.md).
enum LineageMetrics {
    static let jobsCreated = Counter(label: "assetfs_lineage_jobs_total")
    /// Jobs forgotten at the hard cap (8x the bound) while their processes were alive, before they wrote anything.
    static let jobsDropped = Counter(label: "assetfs_lineage_jobs_dropped_total")
    /// Live jobs whose file lists were folded into per-version counts at the file bound.
    static let jobsSummarised = Counter(label: "assetfs_lineage_jobs_summarised_total")
    /// Requests whose process had exited before its job could be named.
    static let unattributed = Counter(label: "assetfs_lineage_unattributed_requests_total")
    static let persistFailures = Counter(label: "assetfs_lineage_persist_failures_total")
}
