import CoreMetrics
import Dispatch
import FlyingFox
import FlyingSocks
import Foundation
import Prometheus

/// A process's metrics backend: every swift-metrics counter, gauge and timer that the store, the object store,
/// the catalog, the VFS and the FUSE layer create from now on lands in one Prometheus registry, which the
/// endpoints below serve in the Prometheus text format. Bootstrapped once, before the store is opened (metrics
/// made before it stay no-ops); a process that never bootstraps (every CLI command but `mount`) pays nothing.
public final class Telemetry: Sendable {
    public let registry: PrometheusCollectorRegistry

    private init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    /// Latency buckets for what takes microseconds (FUSE requests answered from memory) to seconds (requests
    /// to a busy object store); the library's default starts at 5 ms, above most FUSE requests.
    public static let durationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .microseconds(2_500_000),
        .seconds(5), .seconds(10), .seconds(30),
    ]

    /// Makes the registry the process's metrics backend. Call once.
    public static func bootstrap() -> Telemetry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        MetricsSystem.bootstrap(factory)
        return Telemetry(registry: registry)
    }

    /// The registry's metrics in the Prometheus text exposition format (version 0.0.4).
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// Where a metrics endpoint listens: `PORT` (loopback), `HOST:PORT` (IPv4) or `[ADDR]:PORT` (IPv6).
public enum MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    case ipv4(String, UInt16)
    case ipv6(String, UInt16)
    case unix(String)

    /// nil for text that is no address; the caller says what was wrong.
    public static func parse(_ text: String) -> MetricsAddress? {
        if let port = UInt16(text), port > 0 { return .ipv4("127.0.0.1", port) }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()), port > 0, (try? sockaddr_in6.inet6(ip6: host, port: port)) != nil else { return nil }
            return .ipv6(host, port)
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else { return nil }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        guard (try? sockaddr_in.inet(ip4: host, port: port)) != nil else { return nil }
        return .ipv4(host, port)
    }

    public var description: String {
        switch self {
        case .ipv4(let host, let port): return "\(host):\(port)"
        case .ipv6(let host, let port): return "[\(host)]:\(port)"
        case .unix(let path): return path
        }
    }
}

public struct TelemetryError: Error, CustomStringConvertible {
    public let description: String
    /// The HTTP status of a request that was answered with one other than 200.
    public let status: Int?
    init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }
}

/// An HTTP server answering `GET /metrics` with the registry's exposition (FlyingFox, on its own tasks).
public final class MetricsEndpoint: Sendable {
    private let server: HTTPServer
    public let address: MetricsAddress

    private init(server: HTTPServer, address: MetricsAddress) {
        self.server = server
        self.address = address
    }

    /// Starts listening, or throws (the port in use, a socket path not writable) within a few seconds. With
    /// `wait` false it returns at once and reports a failure to `failed` instead (the mount's local socket:
    /// the mount must not wait for it).
    /// `routes`: more requests this endpoint answers (the mount's control requests on its local socket).
    public static func start(_ address: MetricsAddress, telemetry: Telemetry, wait: Bool = true, routes: [ControlRoute] = [],
                             failed: (@Sendable (String) -> Void)? = nil) throws -> MetricsEndpoint {
        let server: HTTPServer
        switch address {
        case .ipv4(let host, let port): server = HTTPServer(address: try sockaddr_in.inet(ip4: host, port: port), timeout: 10, logger: .disabled)
        case .ipv6(let host, let port): server = HTTPServer(address: try sockaddr_in6.inet6(ip6: host, port: port), timeout: 10, logger: .disabled)
        case .unix(let path):
            unlink(path)  // A socket left by a daemon that was killed.
            server = HTTPServer(address: sockaddr_un.unix(path: path), timeout: 10, logger: .disabled)
        }
        var report: (@Sendable (Error?) -> Void)?
        if !wait {
            report = { (error: Error?) in
                if let error {
                    failed?("cannot serve metrics on \(address): \(error)")
                } else if case .unix(let path) = address {
                    chmod(path, 0o600)
                }
            }
        }
        let outcome = Outcome(report: report)
        Task {
            await server.appendRoute("GET /metrics") { _ in
                HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                             body: Data(telemetry.exposition()))
            }
            for route in routes {
                await server.appendRoute(HTTPRoute(stringLiteral: route.route)) { request in
                    let (status, body) = route.handle(try await request.bodyData)
                    return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: status == 200 ? "OK" : "Error"),
                                        headers: [.contentType: "application/json"], body: body)
                }
            }
            Task {
                do { try await server.run() } catch { outcome.finish(error) }
            }
            do {
                try await server.waitUntilListening(timeout: 5)
                outcome.finish(nil)
            } catch {
                outcome.finish(error)
            }
        }
        if wait {
            if let error = outcome.wait() {
                throw TelemetryError("cannot serve metrics on \(address): \(error)")
            }
            if case .unix(let path) = address { chmod(path, 0o600) }  // Only this user (root for a root mount).
        }
        return MetricsEndpoint(server: server, address: address)
    }

    public func stop() {
        let done = DispatchSemaphore(value: 0)
        Task {
            await server.stop(timeout: 1)
            done.signal()
        }
        _ = done.wait(timeout: .now() + 3)
        if case .unix(let path) = address { unlink(path) }
    }
}

/// The first result of a start: listening (nil) or why not; handed to `report` when nobody waits for it.
private final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private var result: Error??  // Protected by `lock`; set once.
    private let report: (@Sendable (Error?) -> Void)?

    init(report: (@Sendable (Error?) -> Void)?) { self.report = report }

    func finish(_ error: Error?) {
        let first: Bool = lock.withLock {
            guard result == nil else { return false }
            result = .some(error)
            return true
        }
        guard first else { return }
        report?(error)
        done.signal()
    }

    func wait() -> Error? {
        done.wait()
        return lock.withLock { result! }
    }
}

/// A request a mount's local socket answers besides `/metrics`: "METHOD /path", and what it does with the
/// request's body (its answer: an HTTP status and a JSON body).
public struct ControlRoute: Sendable {
    public let route: String
    public let handle: @Sendable (Data) -> (Int, Data)

    public init(_ route: String, handle: @escaping @Sendable (Data) -> (Int, Data)) {
        self.route = route
        self.handle = handle
    }
}

/// Fetches a metrics endpoint's exposition (what `assetfs stats --mount` reads from a mount's socket).
public enum MetricsScrape {
    public static func fetch(unixSocket path: String, timeout: Double = 5) throws -> String {
        String(decoding: try MountControl.request(unixSocket: path, path: "/metrics", timeout: timeout), as: UTF8.self)
    }
}

/// Requests to a mount's local socket (`assetfs stats --mount`, `assetfs run`, `commit`).
public enum MountControl {
    public static func request(unixSocket socket: String, method: String = "GET", path: String, body: Data = Data(),
                               timeout: Double = 5) throws -> Data {
        let box = ScrapeResult()
        Task {
            do {
                var client = HTTPClient()
                let request = HTTPRequest(method: HTTPMethod(method), version: .http11, path: path, query: [], headers: [:], body: body)
                let response = try await client.sendHTTPRequest(request, to: sockaddr_un.unix(path: socket))
                guard response.statusCode == .ok else {
                    throw TelemetryError("HTTP \(response.statusCode.code)", status: response.statusCode.code)
                }
                box.finish(.success(try await response.bodyData))
            } catch {
                box.finish(.failure(error))
            }
        }
        guard let result = box.wait(seconds: timeout) else { throw TelemetryError("no answer from \(socket) within \(Int(timeout)) s") }
        return try result.get()
    }
}

private final class ScrapeResult: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<Data, Error>?  // Protected by `lock`.

    func finish(_ value: Result<Data, Error>) {
        lock.withLock { result = value }
        done.signal()
    }

    func wait(seconds: Double) -> Result<Data, Error>? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return lock.withLock { result }
    }
}

/// One sample of the text format: `name{label="value",...} number`.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// Reads the Prometheus text format, as far as `assetfs stats --mount` needs: samples, no comments. Written
/// here because swift-prometheus only writes the format.
public enum PrometheusText {
    public static func parse(_ text: String) -> [PrometheusSample] {
        var out: [PrometheusSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var rest = Substring(line)
            guard let nameEnd = rest.firstIndex(where: { $0 == "{" || $0 == " " }) else { continue }
            let name = String(rest[..<nameEnd])
            rest = rest[nameEnd...]
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while let eq = rest.firstIndex(of: "="), rest.first != "}" {
                    let key = String(rest[..<eq]).trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                    rest = rest[rest.index(after: eq)...].dropFirst()  // past the opening quote
                    var value = ""
                    var escaped = false
                    while let c = rest.first {
                        rest = rest.dropFirst()
                        if escaped { value.append(c == "n" ? "\n" : c); escaped = false; continue }
                        if c == "\\" { escaped = true; continue }
                        if c == "\"" { break }
                        value.append(c)
                    }
                    labels[key] = value
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.drop(while: { $0 != "}" }).dropFirst()
            }
            let fields = rest.split(separator: " ")
            guard let first = fields.first, let value = Double(first) ?? (first == "+Inf" ? .infinity : nil) else { continue }
            out.append(PrometheusSample(name: name, labels: labels, value: value))
        }
        return out
    }
}

/// Where a mount's daemon serves its metrics for `assetfs stats --mount` on this host: a UNIX socket named
/// after the mountpoint, readable by the daemon's user only, in `/run/assetfs` for root and in
/// `$XDG_RUNTIME_DIR/assetfs` (else `/tmp/assetfs-UID`) for other users.
public enum MountSocket {
    public static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if getuid() == 0 { return "/run/assetfs" }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/assetfs" }
        return "/tmp/assetfs-\(getuid())"
    }

    /// The socket of the mount at absolute path `mountpoint` (FNV-1a of the path: a socket path must stay
    /// under 108 bytes, and mountpoints need not).
    public static func path(forMountpoint mountpoint: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in mountpoint.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return directory() + "/mount-" + String(hash, radix: 16) + ".sock"
    }

    /// Creates the socket directory (mode 0700) if needed.
    public static func prepareDirectory() throws {
        let dir = directory()
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw TelemetryError("cannot create \(dir): \(String(cString: strerror(errno)))")
        }
    }
}
