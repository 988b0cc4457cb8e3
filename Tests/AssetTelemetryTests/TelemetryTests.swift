import AssetTelemetry
import CoreMetrics
import Prometheus
import Testing

// Metrics made as the product makes them: swift-metrics handlers from the Prometheus factory.
private func count(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)], _ by: Int64) {
    PrometheusMetricsFactory(registry: registry).makeCounter(label: name, dimensions: labels).increment(by: by)
}

private func gauge(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)], _ value: Double) {
    PrometheusMetricsFactory(registry: registry).makeRecorder(label: name, dimensions: labels, aggregate: false).record(value)
}

private func timer(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)], _ buckets: [Duration]) -> any TimerHandler {
    var factory = PrometheusMetricsFactory(registry: registry)
    factory.durationHistogramBuckets[name] = buckets
    return factory.makeTimer(label: name, dimensions: labels)
}

@Suite("Telemetry: addresses, the text format read back, figures for a person")
struct TelemetryTests {
    @Test("metrics addresses: a bare port is loopback; hosts and IPv6 need a port; anything else is refused")
    func addresses() {
        #expect(MetricsAddress.parse("9108") == .ipv4("127.0.0.1", 9108))
        #expect(MetricsAddress.parse("0.0.0.0:9108") == .ipv4("0.0.0.0", 9108))
        #expect(MetricsAddress.parse("localhost:9108") == .ipv4("127.0.0.1", 9108))
        #expect(MetricsAddress.parse("[::1]:9108") == .ipv6("::1", 9108))
        for bad in ["", "0", "70000", "host", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "example.com:80", "[::1]", "::1:80", "1.2.3.4:5:6"] {
            #expect(MetricsAddress.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("what swift-prometheus writes reads back: names, labels (escaped quotes too), counters, gauges, histograms")
    func roundTrip() {
        let registry = PrometheusCollectorRegistry()
        count(registry, "assetfs_x_total", [("method", "GET"), ("status", "206")], 3)
        count(registry, "assetfs_x_total", [("method", "PUT"), ("status", "200")], 1)
        gauge(registry, "assetfs_y_bytes", [("asset", "a \"quoted\" name")], 12.5)
        let histogram = timer(registry, "assetfs_z_seconds", [("operation", "read")], [.milliseconds(1), .milliseconds(10)])
        histogram.recordNanoseconds(500000)
        histogram.recordNanoseconds(5000000)
        let samples = PrometheusText.parse(registry.emitToString())
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == labels }?.value
        }
        #expect(value("assetfs_x_total", ["method": "GET", "status": "206"]) == 3)
        #expect(value("assetfs_x_total", ["method": "PUT", "status": "200"]) == 1)
        #expect(value("assetfs_y_bytes", ["asset": "a \"quoted\" name"]) == 12.5)
        #expect(value("assetfs_z_seconds_count", ["operation": "read"]) == 2)
        #expect(value("assetfs_z_seconds_bucket", ["operation": "read", "le": "0.001"]) == 1)
        #expect(value("assetfs_z_seconds_bucket", ["operation": "read", "le": "+Inf"]) == 2)
        #expect(abs((value("assetfs_z_seconds_sum", ["operation": "read"]) ?? 0) - 0.0055) < 1e-9)
    }

    @Test("figures: hit ratios, requests by method, mean latencies, versions read; no disk cache or object store on a local mount")
    func figures() {
        let registry = PrometheusCollectorRegistry()
        count(registry, "assetfs_memory_cache_hits_total", [], 3)
        count(registry, "assetfs_memory_cache_misses_total", [], 1)
        count(registry, "assetfs_version_file_opens_total", [("asset", "data"), ("version", "v2")], 4)
        let fuse = timer(registry, "assetfs_fuse_request_duration_seconds", [("operation", "read")], [.milliseconds(1)])
        fuse.recordNanoseconds(2000000)
        fuse.recordNanoseconds(4000000)
        let local = MountFigures(PrometheusText.parse(registry.emitToString()))
        #expect(local.memoryCache.hitRatio == 0.75)
        #expect(local.diskCache == nil && local.objectStore == nil && local.catalog == nil)
        #expect(local.versionOpens == ["data@v2": 4])
        #expect(local.operations["read"]?.requests == 2)
        #expect(abs((local.operations["read"]?.meanLatencySeconds ?? 0) - 0.003) < 1e-9)

        gauge(registry, "assetfs_disk_cache_limit_bytes", [], 1000)
        count(registry, "assetfs_disk_cache_hits_total", [], 1)
        count(registry, "assetfs_disk_cache_misses_total", [], 3)
        count(registry, "assetfs_object_store_requests_total", [("method", "GET"), ("status", "206")], 5)
        count(registry, "assetfs_object_store_requests_total", [("method", "GET"), ("status", "error")], 1)
        count(registry, "assetfs_object_store_retries_total", [], 1)
        let shared = MountFigures(PrometheusText.parse(registry.emitToString()))
        #expect(shared.diskCache?.hitRatio == 0.25)
        #expect(shared.objectStore?.requests == ["GET": 6] && shared.objectStore?.retries == 1)
    }
}
