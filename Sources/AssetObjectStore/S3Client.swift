import AssetStore
import CCurl
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where an S3-compatible server is and how to sign for it, from the variables AWS tools already use.
public struct S3Settings: Sendable {
    /// `http://127.0.0.1:8333` or `https://s3.eu-west-1.amazonaws.com`, without a trailing slash.
    public var endpoint: String
    public var region: String
    public var accessKey: String
    public var secretKey: String
    public var sessionToken: String?
    /// Bucket in the path (`ENDPOINT/BUCKET/KEY`) rather than in the host name; what self-hosted servers need.
    public var pathStyle: Bool
    /// Bound on one read, HEAD, LIST or DELETE request (a retry decorator bounds the whole call).
    public var requestTimeout: Double = 60
    /// Bound on one upload: a 32 MiB pack over a slow link takes minutes.
    public var uploadTimeout: Double = 600
    public var connectTimeout: Double = 5

    public init(endpoint: String, region: String = "us-east-1", accessKey: String, secretKey: String,
                sessionToken: String? = nil, pathStyle: Bool? = nil) {
        var trimmed = endpoint
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.endpoint = trimmed
        self.region = region
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.sessionToken = sessionToken
        self.pathStyle = pathStyle ?? Self.needsPathStyle(trimmed)
    }

    /// Settings the way AWS tools find them. Endpoint: `override` (a command-line option), else
    /// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else `endpoint_url` of the profile in the config file. Region:
    /// AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`, else us-east-1. Credentials: AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN), else the profile (AWS_PROFILE, else "default") in the
    /// credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials), else in the config file
    /// (AWS_CONFIG_FILE, else ~/.aws/config). Errors say what is missing and where it was looked for; no secret
    /// is ever put in a message.
    public static func resolve(_ env: [String: String] = ProcessInfo.processInfo.environment,
                               endpoint override: String? = nil) throws -> S3Settings {
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        let home = value("HOME") ?? "/root"
        let profile = value("AWS_PROFILE") ?? "default"
        let credentialsPath = value("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials"
        let configPath = value("AWS_CONFIG_FILE") ?? home + "/.aws/config"
        let credentials = IniFile(path: credentialsPath).section(profile)
        // The config file names sections "profile NAME", except the default one.
        let configFile = IniFile(path: configPath)
        let config = configFile.section(profile == "default" ? "default" : "profile \(profile)") ?? configFile.section(profile)

        guard let endpoint = override ?? value("AWS_ENDPOINT_URL_S3") ?? value("AWS_ENDPOINT_URL") ?? config?["endpoint_url"] else {
            throw StoreError(.invalidArgument, "no S3 endpoint: set AWS_ENDPOINT_URL (e.g. http://127.0.0.1:8333), or endpoint_url for profile \(profile) in \(configPath)")
        }
        let region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? config?["region"] ?? "us-east-1"
        let key: String, secret: String, token: String?
        if let k = value("AWS_ACCESS_KEY_ID"), let s = value("AWS_SECRET_ACCESS_KEY") {
            (key, secret, token) = (k, s, value("AWS_SESSION_TOKEN"))
        } else if let k = credentials?["aws_access_key_id"], let s = credentials?["aws_secret_access_key"] {
            (key, secret, token) = (k, s, credentials?["aws_session_token"])
        } else if let k = config?["aws_access_key_id"], let s = config?["aws_secret_access_key"] {
            (key, secret, token) = (k, s, config?["aws_session_token"])
        } else {
            throw StoreError(.invalidArgument, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key for profile \(profile) in \(credentialsPath)")
        }
        return S3Settings(endpoint: endpoint, region: region, accessKey: key, secretKey: secret, sessionToken: token)
    }

    /// Path style for an endpoint given as an IP address or localhost (no DNS name per bucket there).
    static func needsPathStyle(_ endpoint: String) -> Bool {
        guard let host = URL(string: endpoint)?.host else { return true }
        if host == "localhost" || host.hasPrefix("[") || host.contains(":") { return true }
        return host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
    }
}

/// An HTTP answer from the server.
struct S3Response {
    var status: Int
    var body: [UInt8]
    var headers: [String: String]

    /// The `<Code>` of an S3 error document, if the body is one.
    var errorCode: String? { S3Client.element("Code", in: body) }
}

/// The one file that calls libcurl: signed S3 requests (AWS Signature V4, done by libcurl's
/// CURLOPT_AWS_SIGV4), connections reused through a pool of easy handles. Written by hand because only the
/// request plumbing is needed: libcurl does the HTTP and the signing.
final class S3Client: @unchecked Sendable {
    let settings: S3Settings
    let bucket: String
    private let lock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []  // Protected by `lock`: easy handles keep their connections.

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    init(settings: S3Settings, bucket: String) {
        _ = Self.globalInit
        self.settings = settings
        self.bucket = bucket
    }

    deinit {
        for handle in idle { curl_easy_cleanup(handle) }
    }

    /// The URL of `key` (percent-encoded, '/' kept) with a query sorted by name, as SigV4 wants it.
    func url(_ key: String, query: [(String, String)] = []) -> String {
        let path = key.isEmpty ? "" : "/" + Self.encode(key, keepSlash: true)
        var base: String
        if settings.pathStyle {
            base = "\(settings.endpoint)/\(bucket)\(path)"
        } else {
            let parts = settings.endpoint.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
            base = parts.count >= 3 ? "\(parts[0])//\(bucket).\(parts[2])\(path)" : "\(settings.endpoint)/\(bucket)\(path)"
        }
        if key.isEmpty && !settings.pathStyle { base += "/" }
        guard !query.isEmpty else { return base }
        return base + "?" + query.sorted { $0.0 < $1.0 }.map { "\(Self.encode($0.0, keepSlash: false))=\(Self.encode($0.1, keepSlash: false))" }
            .joined(separator: "&")
    }

    /// A request. `upload` is sent as the body of a PUT or POST, or only bytes `uploadRange` of it (read again
    /// from the start if libcurl rewinds); `download`, when given, receives a 2xx body in place (what does not
    /// fit is an error), else the body is returned.
    func perform(_ method: String, _ key: String, query: [(String, String)] = [], headers: [String] = [],
                 upload: PackSource? = nil, uploadRange: Range<UInt64>? = nil,
                 download: UnsafeMutableRawBufferPointer? = nil) throws -> S3Response {
        let handle = try takeHandle()
        var healthy = false
        defer { giveBack(handle, healthy: healthy) }
        let target = url(key, query: query)
        let context = TransferContext(download: download, upload: upload, range: uploadRange ?? 0..<(upload?.size ?? 0))
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        let opaque = unmanaged.toOpaque()

        var list: UnsafeMutablePointer<curl_slist>?
        var allHeaders = headers + ["x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        if let token = settings.sessionToken { allHeaders.append("x-amz-security-token: \(token)") }
        // "Expect:" (to skip the 100-continue round trip) is not added: libcurl would sign the header it then
        // drops, and the server refuses the signature. One round trip per 32 MiB pack is cheap.
        for header in allHeaders { list = curl_slist_append(list, header) }
        defer { curl_slist_free_all(list) }

        curl_easy_reset(handle)
        _ = assetfs_curl_set_string(handle, CURLOPT_URL, target)
        _ = assetfs_curl_set_string(handle, CURLOPT_AWS_SIGV4, "aws:amz:\(settings.region):s3")
        _ = assetfs_curl_set_string(handle, CURLOPT_USERNAME, settings.accessKey)
        _ = assetfs_curl_set_string(handle, CURLOPT_PASSWORD, settings.secretKey)
        _ = assetfs_curl_set_headers(handle, list)
        _ = assetfs_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = assetfs_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(settings.connectTimeout * 1000))
        let timeout = method == "PUT" || method == "POST" ? settings.uploadTimeout : settings.requestTimeout
        _ = assetfs_curl_set_long(handle, CURLOPT_TIMEOUT_MS, Int(timeout * 1000))
        _ = assetfs_curl_set_write(handle, { buffer, size, count, context in
            let box = Unmanaged<TransferContext>.fromOpaque(context!).takeUnretainedValue()
            return box.received(UnsafeRawBufferPointer(start: buffer, count: size * count))
        }, opaque)
        _ = assetfs_curl_set_header_callback(handle, { buffer, size, count, context in
            let box = Unmanaged<TransferContext>.fromOpaque(context!).takeUnretainedValue()
            box.header(UnsafeRawBufferPointer(start: buffer, count: size * count))
            return size * count
        }, opaque)
        switch method {
        case "GET": break
        case "HEAD": _ = assetfs_curl_set_long(handle, CURLOPT_NOBODY, 1)
        case "PUT", "POST":
            _ = assetfs_curl_set_long(handle, CURLOPT_UPLOAD, 1)
            if method == "POST" { _ = assetfs_curl_set_string(handle, CURLOPT_CUSTOMREQUEST, method) }
            _ = assetfs_curl_set_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(context.range.count))
            _ = assetfs_curl_set_read(handle, { buffer, size, count, context in
                let box = Unmanaged<TransferContext>.fromOpaque(context!).takeUnretainedValue()
                return box.send(UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
            }, opaque)
            _ = assetfs_curl_set_seek(handle, { context, offset, origin in
                // libcurl rewinds an upload it must send again (a redirect, an auth retry).
                guard origin == SEEK_SET, let context else { return 1 /* CURL_SEEKFUNC_FAIL */ }
                Unmanaged<TransferContext>.fromOpaque(context).takeUnretainedValue().uploaded = UInt64(offset)
                return 0 /* CURL_SEEKFUNC_OK */
            }, opaque)
        default: _ = assetfs_curl_set_string(handle, CURLOPT_CUSTOMREQUEST, method)
        }

        let started = DispatchTime.now().uptimeNanoseconds
        let rc = curl_easy_perform(handle)
        let status = rc == CURLE_OK ? assetfs_curl_response_code(handle) : 0
        ObjectStoreMetrics.request(method, status: status, nanoseconds: DispatchTime.now().uptimeNanoseconds &- started,
                                   received: context.receivedBytes, sent: Int(context.uploaded))
        if rc != CURLE_OK {
            if let failure = context.failure { throw failure }
            let text = String(cString: curl_easy_strerror(rc))
            throw StoreError(Self.transient(rc) ? .transient : .failure, "S3 \(method) \(target): \(text)")
        }
        healthy = true
        return S3Response(status: status, body: context.body, headers: context.headers)
    }

    /// The failure for a non-2xx answer to `method` on `key`, with S3's code, the endpoint and what to do.
    func failure(_ response: S3Response, _ method: String, _ key: String) -> StoreError {
        let code = response.errorCode.map { " \($0)" } ?? ""
        var text = "S3 \(method) s3://\(bucket)/\(key) at \(settings.endpoint): HTTP \(response.status)\(code)"
        let kind: StoreError.Code
        switch response.status {
        case 404: kind = .notFound
        case 412: kind = .conflict
        case 429, 500...599: kind = .transient
        case 403:
            kind = .failure
            text += " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and this host's clock)"
        default: kind = .failure
        }
        return StoreError(kind, text, cause: .http(response.status))
    }

    private static func transient(_ rc: CURLcode) -> Bool {
        [CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING,
         CURLE_PARTIAL_FILE, CURLE_COULDNT_RESOLVE_HOST, CURLE_HTTP2, CURLE_HTTP2_STREAM].contains(rc)
    }

    private func takeHandle() throws -> UnsafeMutableRawPointer {
        if let handle = lock.withLock({ idle.popLast() }) { return handle }
        guard let handle = curl_easy_init() else { throw StoreError(.failure, "libcurl could not make a handle") }
        return handle
    }

    /// A handle whose transfer failed is dropped with its connection; a good one is kept for the next request.
    private func giveBack(_ handle: UnsafeMutableRawPointer, healthy: Bool) {
        guard healthy else { return curl_easy_cleanup(handle) }
        lock.withLock { idle.append(handle) }
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (and '/', in keys).
    static func encode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if (byte < 0x80 && (c.isLetter || c.isNumber)) || c == "-" || c == "_" || c == "." || c == "~" || (keepSlash && c == "/") {
                out.append(c)
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// The text of the first `<name>` element in an XML body (S3's answers are flat enough for this).
    static func element(_ name: String, in body: [UInt8]) -> String? {
        let text = String(decoding: body, as: UTF8.self)
        guard let start = text.range(of: "<\(name)>"), let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex) else {
            return nil
        }
        return String(text[start.upperBound..<end.lowerBound])
    }
}

/// One transfer's state, reached from libcurl's callbacks through an opaque pointer.
private final class TransferContext {
    let download: UnsafeMutableRawBufferPointer?
    let upload: PackSource?
    /// The bytes of `upload` to send.
    let range: Range<UInt64>
    var downloaded = 0
    var uploaded: UInt64 = 0
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var status = 0
    var failure: StoreError?

    init(download: UnsafeMutableRawBufferPointer?, upload: PackSource?, range: Range<UInt64>) {
        self.download = download
        self.upload = upload
        self.range = range
    }

    /// Response bytes: into the caller's buffer for a successful ranged read, else kept (error documents, lists).
    func received(_ bytes: UnsafeRawBufferPointer) -> Int {
        if let download, (200..<300).contains(status) {
            guard downloaded + bytes.count <= download.count else {
                failure = StoreError(.corrupt, "S3 answered more bytes than the \(download.count) asked for")
                return 0  // Makes libcurl stop with a write error.
            }
            if let base = bytes.baseAddress, bytes.count > 0 {
                (download.baseAddress! + downloaded).copyMemory(from: base, byteCount: bytes.count)
            }
            downloaded += bytes.count
        } else {
            body += bytes
        }
        return bytes.count
    }

    /// Body bytes received, wherever they went.
    var receivedBytes: Int { downloaded + body.count }

    func header(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            status = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            headers.removeAll()
            body.removeAll()
            downloaded = 0
        } else if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }

    /// Upload bytes from the pack source, by offset: a rewound upload reads its start again.
    func send(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let upload, uploaded < UInt64(range.count) else { return 0 }
        let count = min(buffer.count, Int(UInt64(range.count) - uploaded))
        do {
            let n = try upload.descriptor.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: range.lowerBound + uploaded)
            guard n > 0 else {
                failure = StoreError(.failure, "scratch pack \(upload.path) ended after \(range.lowerBound + uploaded) of \(upload.size) bytes")
                return Int(CURL_READFUNC_ABORT)
            }
            uploaded += UInt64(n)
            return n
        } catch {
            failure = error as? StoreError ?? StoreError(.failure, "reading \(upload.path): \(error)")
            return Int(CURL_READFUNC_ABORT)
        }
    }
}

/// The INI files AWS tools share (`~/.aws/credentials`, `~/.aws/config`): `[section]` lines and `key = value`
/// lines; `#` and `;` start comments. Nested settings (an indented block under `s3 =`) are skipped. Read by hand:
/// a dozen lines, and no INI library is in this project's dependency list.
struct IniFile {
    private var sections: [String: [String: String]] = [:]

    init(path: String) {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        var current: String?
        for raw in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
            if raw.first == " " || raw.first == "\t" { continue }  // A nested setting.
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if !value.isEmpty { sections[section, default: [:]][key] = value }
        }
    }

    func section(_ name: String) -> [String: String]? { sections[name] }
}
