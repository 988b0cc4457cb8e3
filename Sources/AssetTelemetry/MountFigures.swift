/// A mount's metrics summed up for a person (`assetfs stats --mount`) or a script (`--json`).
public struct MountFigures: Codable, Sendable, Equatable {
    public struct Cache: Codable, Sendable, Equatable {
        public var hits = 0.0
        public var misses = 0.0
        public var bytes = 0.0
        public var limitBytes = 0.0
        /// Hits / (hits + misses); nil before the first lookup.
        public var hitRatio: Double? { hits + misses > 0 ? hits / (hits + misses) : nil }
        public var damaged = 0.0

        enum CodingKeys: String, CodingKey { case hits, misses, bytes, limitBytes, hitRatio, damaged }
        public init() {}
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            hits = try c.decode(Double.self, forKey: .hits)
            misses = try c.decode(Double.self, forKey: .misses)
            bytes = try c.decode(Double.self, forKey: .bytes)
            limitBytes = try c.decode(Double.self, forKey: .limitBytes)
            damaged = try c.decode(Double.self, forKey: .damaged)
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(hits, forKey: .hits)
            try c.encode(misses, forKey: .misses)
            try c.encode(bytes, forKey: .bytes)
            try c.encode(limitBytes, forKey: .limitBytes)
            try c.encode(hitRatio, forKey: .hitRatio)
            try c.encode(damaged, forKey: .damaged)
        }
    }

    public struct Remote: Codable, Sendable, Equatable {
        /// Requests by method (object store) or by result (catalog).
        public var requests: [String: Double] = [:]
        public var errors = 0.0
        public var retries = 0.0
        public var meanLatencySeconds: Double?
        public var receivedBytes = 0.0
        public var sentBytes = 0.0
        /// Round trips (catalog only).
        public var queries = 0.0
        public var total: Double { requests.values.reduce(0, +) }
    }

    public struct Operation: Codable, Sendable, Equatable {
        public var requests = 0.0
        public var errors = 0.0
        public var meanLatencySeconds: Double?
    }

    public var memoryCache = Cache()
    /// nil for a mount of a local store (no disk cache).
    public var diskCache: Cache?
    public var objectStore: Remote?
    public var catalog: Remote?
    /// FUSE requests by operation, those with at least one request.
    public var operations: [String: Operation] = [:]
    public var readBytes = 0.0
    public var workspacesOpen = 0.0
    /// Version files opened, by `asset@vN`.
    public var versionOpens: [String: Double] = [:]

    public init(_ samples: [PrometheusSample]) {
        func sum(_ name: String, where match: ([String: String]) -> Bool = { _ in true }) -> Double {
            samples.filter { $0.name == name && match($0.labels) }.reduce(0) { $0 + $1.value }
        }
        func has(_ prefix: String) -> Bool { samples.contains { $0.name.hasPrefix(prefix) } }
        func mean(_ histogram: String, where match: ([String: String]) -> Bool = { _ in true }) -> Double? {
            let count = sum(histogram + "_count", where: match)
            return count > 0 ? sum(histogram + "_sum", where: match) / count : nil
        }
        memoryCache.hits = sum("assetfs_memory_cache_hits_total")
        memoryCache.misses = sum("assetfs_memory_cache_misses_total")
        memoryCache.bytes = sum("assetfs_memory_cache_bytes")
        memoryCache.limitBytes = sum("assetfs_memory_cache_limit_bytes")
        if has("assetfs_disk_cache_limit_bytes") {
            var disk = Cache()
            disk.hits = sum("assetfs_disk_cache_hits_total")
            disk.misses = sum("assetfs_disk_cache_misses_total")
            disk.bytes = sum("assetfs_disk_cache_bytes")
            disk.limitBytes = sum("assetfs_disk_cache_limit_bytes")
            disk.damaged = sum("assetfs_disk_cache_damaged_total")
            diskCache = disk
        }
        // Both remotes are counted under the same names: PREFIX{requests,errors,retries,queries}_total,
        // PREFIX{received,sent}_bytes_total and PREFIXrequest_duration_seconds; requests labelled by `label`.
        func remote(_ prefix: String, by label: String) -> Remote? {
            guard has(prefix) else { return nil }
            var remote = Remote()
            for sample in samples where sample.name == prefix + "requests_total" {
                remote.requests[sample.labels[label] ?? "?", default: 0] += sample.value
            }
            remote.errors = sum(prefix + "errors_total")
            remote.retries = sum(prefix + "retries_total")
            remote.queries = sum(prefix + "queries_total")
            remote.meanLatencySeconds = mean(prefix + "request_duration_seconds")
            remote.receivedBytes = sum(prefix + "received_bytes_total")
            remote.sentBytes = sum(prefix + "sent_bytes_total")
            return remote
        }
        objectStore = remote("assetfs_object_store_", by: "method")
        catalog = remote("assetfs_catalog_", by: "result")
        for sample in samples where sample.name == "assetfs_fuse_request_duration_seconds_count" && sample.value > 0 {
            let op = sample.labels["operation"] ?? "?"
            operations[op] = Operation(requests: sample.value,
                                       errors: sum("assetfs_fuse_errors_total") { $0["operation"] == op },
                                       meanLatencySeconds: mean("assetfs_fuse_request_duration_seconds") { $0["operation"] == op })
        }
        readBytes = sum("assetfs_fuse_read_bytes_total")
        workspacesOpen = sum("assetfs_workspaces_open")
        for sample in samples where sample.name == "assetfs_version_file_opens_total" {
            versionOpens["\(sample.labels["asset"] ?? "?")@\(sample.labels["version"] ?? "?")", default: 0] += sample.value
        }
    }
}
