import Metrics

/// Requests to the object store: `assetfs_object_store_requests_total{method,status}` (status "error" for a
/// request that got no HTTP answer: refused, timed out, reset), `assetfs_object_store_request_duration_seconds
/// {method}`, `assetfs_object_store_errors_total{method}` (no answer, 429 and 5xx: what is retried), and the
/// body bytes each way. Retries are counted by RetryingPackStorage (`assetfs_object_store_retries_total`).
enum ObjectStoreMetrics {
    static let receivedBytes = Counter(label: "assetfs_object_store_received_bytes_total")
    static let sentBytes = Counter(label: "assetfs_object_store_sent_bytes_total")

    static func request(_ method: String, status: Int, nanoseconds: UInt64, received: Int, sent: Int) {
        // A request takes milliseconds; looking its metrics up in the registry takes microseconds.
        Counter(label: "assetfs_object_store_requests_total", dimensions: [("method", method), ("status", status == 0 ? "error" : "\(status)")]).increment()
        Timer(label: "assetfs_object_store_request_duration_seconds", dimensions: [("method", method)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(nanoseconds))
        if status == 0 || status == 429 || status >= 500 {
            Counter(label: "assetfs_object_store_errors_total", dimensions: [("method", method)]).increment()
        }
        if received > 0 { receivedBytes.increment(by: received) }
        if sent > 0 { sentBytes.increment(by: sent) }
    }
}
