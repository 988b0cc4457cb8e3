import Metrics

/// The catalog on PostgreSQL: `assetfs_catalog_requests_total{result}` and
/// `assetfs_catalog_request_duration_seconds` per catalog call (a read or a whole transaction, on one
/// connection), `assetfs_catalog_queries_total` (round trips), `assetfs_catalog_retries_total` (calls run
/// again after a transient failure) and `assetfs_catalog_errors_total`.
enum CatalogMetrics {
    static let ok = Counter(label: "assetfs_catalog_requests_total", dimensions: [("result", "ok")])
    static let failed = Counter(label: "assetfs_catalog_requests_total", dimensions: [("result", "error")])
    static let errors = Counter(label: "assetfs_catalog_errors_total")
    static let duration = Timer(label: "assetfs_catalog_request_duration_seconds", preferredDisplayUnit: .seconds)
    static let queries = Counter(label: "assetfs_catalog_queries_total")
    static let retries = Counter(label: "assetfs_catalog_retries_total")
}
