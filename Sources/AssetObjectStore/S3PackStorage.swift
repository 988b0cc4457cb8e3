import AssetStore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Packs as immutable objects `PREFIX/packs/xx/<sha256>.pack` in a bucket of an S3-compatible object store.
///
/// A finished pack is uploaded once with `If-None-Match: *` (create if absent: an object of that name already
/// holds the same bytes); a read is one ranged GET of the bytes asked for, never the whole pack; a listing is
/// ListObjectsV2, page by page. Every byte read is still verified by `ChunkReader` against its hash. Retries
/// are not done here: wrap this in `RetryingPackStorage`.
public final class S3PackStorage: PackStorage, @unchecked Sendable {
    let client: S3Client
    public let bucket: String
    /// Ends with "/" unless empty.
    public let prefix: String
    public let scratchDirectory: String
    /// Packs of at least this many bytes are uploaded in parts, `partsInFlight` at a time; smaller ones with one
    /// PUT. See `MultipartPolicy` for the measurement behind the defaults.
    public var multipart = MultipartPolicy()

    public init(settings: S3Settings, bucket: String, prefix: String, scratchDirectory: String) {
        client = S3Client(settings: settings, bucket: bucket)
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.scratchDirectory = scratchDirectory
    }

    public var location: String { "s3://\(bucket)/\(prefix)packs at \(client.settings.endpoint)" }

    func key(_ id: ContentHash) -> String {
        let hex = id.hex
        return "\(prefix)packs/\(hex.prefix(2))/\(hex).pack"
    }

    public func describe(_ id: ContentHash) -> String { "s3://\(bucket)/\(key(id))" }

    public func put(_ id: ContentHash, from source: PackSource) throws {
        if source.size >= multipart.threshold { return try putInParts(id, from: source) }
        let response = try client.perform("PUT", key(id), headers: ["If-None-Match: *", "Content-Type: application/octet-stream"],
                                          upload: source)
        // 412: an object of this name exists; names are content, so it holds these bytes.
        guard (200..<300).contains(response.status) || response.status == 412 else {
            throw client.failure(response, "PUT", key(id))
        }
    }

    /// A multipart upload (CreateMultipartUpload, UploadPart in parallel, CompleteMultipartUpload with
    /// `If-None-Match: *`). Nothing is visible under the pack's name until the completion, so a half-uploaded
    /// pack never is; a failed upload is aborted, so its parts do not linger (one of a killed process stays until
    /// the bucket's AbortIncompleteMultipartUpload lifecycle rule removes it).
    func putInParts(_ id: ContentHash, from source: PackSource) throws {
        let name = key(id)
        let created = try client.perform("POST", name, query: [("uploads", "")], headers: ["Content-Type: application/octet-stream"])
        guard (200..<300).contains(created.status), let uploadID = S3Client.element("UploadId", in: created.body) else {
            throw client.failure(created, "POST (create multipart upload)", name)
        }
        do {
            let ranges = multipart.parts(of: source.size)
            let client = self.client
            let etags = try ParallelParts<String>.run(count: ranges.count, width: multipart.partsInFlight) { i in
                let part = try client.perform("PUT", name, query: [("partNumber", "\(i + 1)"), ("uploadId", uploadID)],
                                              upload: source, uploadRange: ranges[i])
                guard (200..<300).contains(part.status), let etag = part.headers["etag"] else {
                    throw client.failure(part, "PUT (part \(i + 1) of \(ranges.count))", name)
                }
                return etag
            }
            let xml = "<CompleteMultipartUpload>" + etags.enumerated().map { i, etag in
                "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(etag.replacingOccurrences(of: "&", with: "&amp;"))</ETag></Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let body = try PackSource.scratch(in: scratchDirectory, contents: Array(xml.utf8))
            defer { body.discard() }
            let done = try client.perform("POST", name, query: [("uploadId", uploadID)],
                                          headers: ["If-None-Match: *", "Content-Type: application/xml"], upload: body)
            // 412: an object of this name exists (names are content: it holds these bytes). A 200 may still carry
            // an error document (S3 sends it when the completion fails after its answer started).
            if done.status == 412 {
                _ = try? client.perform("DELETE", name, query: [("uploadId", uploadID)])
                return
            }
            guard (200..<300).contains(done.status), S3Client.element("Code", in: done.body) == nil else {
                throw client.failure(done, "POST (complete multipart upload)", name)
            }
        } catch {
            _ = try? client.perform("DELETE", name, query: [("uploadId", uploadID)])  // Abort: drop the parts.
            throw error
        }
    }

    /// The keys of multipart uploads begun under this store's packs and neither completed nor aborted
    /// (ListMultipartUploads, first page).
    public func unfinishedUploads() throws -> [String] {
        let response = try client.perform("GET", "", query: [("uploads", ""), ("prefix", prefix + "packs/")])
        guard (200..<300).contains(response.status) else { throw client.failure(response, "LIST UPLOADS", prefix + "packs/") }
        return String(decoding: response.body, as: UTF8.self).components(separatedBy: "<Key>").dropFirst()
            .compactMap { $0.components(separatedBy: "</Key>").first }
    }

    public func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        let range = "Range: bytes=\(offset)-\(offset + UInt64(buffer.count) - 1)"
        let response = try client.perform("GET", key(id), headers: [range], download: buffer)
        switch response.status {
        case 206:
            return try received(response, buffer, id)
        case 200:
            // A server that ignores Range sends the whole object: only acceptable when that is what was asked.
            guard offset == 0 else { throw StoreError(.failure, "S3 GET \(describe(id)) ignored the byte range asked for") }
            return try received(response, buffer, id)
        case 416:
            return 0  // The range starts at or past the end.
        case 404:
            throw StoreError(.notFound, "pack \(describe(id)) is missing from the object store", cause: .http(404))
        default:
            throw client.failure(response, "GET", key(id))
        }
    }

    private func received(_ response: S3Response, _ buffer: UnsafeMutableRawBufferPointer, _ id: ContentHash) throws -> Int {
        guard let length = response.headers["content-length"].flatMap(Int.init), length <= buffer.count else {
            throw StoreError(.failure, "S3 GET \(describe(id)): the answer's length does not match the range asked for")
        }
        return length
    }

    public func size(of id: ContentHash) throws -> UInt64? {
        let response = try client.perform("HEAD", key(id))
        if response.status == 404 { return nil }
        guard (200..<300).contains(response.status), let length = response.headers["content-length"].flatMap(UInt64.init) else {
            throw client.failure(response, "HEAD", key(id))
        }
        return length
    }

    public func delete(_ id: ContentHash) throws {
        let response = try client.perform("DELETE", key(id))
        guard (200..<300).contains(response.status) || response.status == 404 else {
            throw client.failure(response, "DELETE", key(id))
        }
    }

    /// A small object beside the packs (the store's marker, `PREFIX/NAME`): its bytes, or nil when it is missing.
    public func readObject(_ name: String) throws -> [UInt8]? {
        let response = try client.perform("GET", prefix + name)
        if response.status == 404 && response.errorCode == "NoSuchBucket" { throw noBucket() }
        if response.status == 404 { return nil }
        guard (200..<300).contains(response.status) else { throw client.failure(response, "GET", prefix + name) }
        return response.body
    }

    /// Creates the small object `PREFIX/NAME` unless it exists (`If-None-Match: *`); false when it existed.
    public func createObject(_ name: String, contents: [UInt8]) throws -> Bool {
        let scratch = try PackSource.scratch(in: scratchDirectory, contents: contents)
        defer { scratch.discard() }
        let response = try client.perform("PUT", prefix + name, headers: ["If-None-Match: *", "Content-Type: application/json"],
                                          upload: scratch)
        if response.status == 404 && response.errorCode == "NoSuchBucket" { throw noBucket() }
        if response.status == 412 { return false }
        guard (200..<300).contains(response.status) else { throw client.failure(response, "PUT", prefix + name) }
        return true
    }

    private func noBucket() -> StoreError {
        StoreError(.notFound, "bucket \(bucket) does not exist at \(client.settings.endpoint): create it first (e.g. `aws s3 mb s3://\(bucket)`)",
                   cause: .http(404))
    }

    public func list() throws -> [StoredPack] {
        var out: [StoredPack] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix + "packs/")]
            if let token { query.append(("continuation-token", token)) }
            let response = try client.perform("GET", "", query: query)
            guard (200..<300).contains(response.status) else { throw client.failure(response, "LIST", prefix + "packs/") }
            let page = try ListPage(response.body)
            for object in page.objects where object.key.hasSuffix(".pack") {
                let name = object.key.split(separator: "/").last.map { String($0.dropLast(5)) } ?? ""
                guard let id = ContentHash(hex: name), object.key == key(id) else { continue }
                out.append(StoredPack(id: id, size: object.size, modifiedNs: object.modifiedNs))
            }
            token = page.truncated ? page.nextToken : nil
        } while token != nil
        return out
    }
}

/// When and how packs are uploaded in parts.
///
/// Measured with `swift run -c release AssetBench upload` (SeaweedFS on loopback, 2 cores; README table): one
/// PUT was as fast as parts at every size from 8 to 256 MiB (parts of 8 or 16 MiB, 4 or 8 at a time: 0.94-1.04x
/// one PUT), and one PUT costs one request where parts cost three or more. So packs (about 32 MiB) go in one
/// PUT, and only objects of 128 MiB and more, where one PUT's rate began to fall (197 MB/s at 128 MiB, 175 at
/// 256), go in parts: a PackWriter with a larger target, and any object far below S3's 5 GiB limit for one PUT.
/// S3 needs parts of at least 5 MiB (the last aside) and at most 10,000 of them.
public struct MultipartPolicy: Sendable {
    public var threshold: UInt64 = 128 << 20
    public var partSize: UInt64 = 16 << 20
    public var partsInFlight = 4

    public init() {}

    /// The byte ranges of the parts of an object of `size` bytes.
    public func parts(of size: UInt64) -> [Range<UInt64>] {
        let step = max(partSize, (size + 9_999) / 10_000, 5 << 20)
        return stride(from: UInt64(0), to: size, by: Int(step)).map { $0..<min(size, $0 + step) }
    }
}

/// Runs `count` jobs on up to `width` threads of their own (each waits on a request) and returns their results
/// in order; after a failure no new job starts, and the first error is thrown once the running ones are done.
final class ParallelParts<T>: @unchecked Sendable {
    private let lock = NSLock()
    // Protected by `lock`.
    private var next = 0
    private var results: [T?]
    private var failure: Error?

    private init(count: Int) { results = Array(repeating: nil, count: count) }

    static func run(count: Int, width: Int, _ job: @escaping @Sendable (Int) throws -> T) throws -> [T] {
        let state = ParallelParts(count: count)
        let group = DispatchGroup()
        for _ in 0..<max(1, min(width, count)) {
            group.enter()
            Thread {
                defer { group.leave() }
                while let index = state.take() {
                    do {
                        let value = try job(index)
                        state.lock.withLock { state.results[index] = value }
                    } catch {
                        state.lock.withLock { if state.failure == nil { state.failure = error } }
                    }
                }
            }.start()
        }
        group.wait()
        if let failure = state.failure { throw failure }
        return state.results.map { $0! }
    }

    private func take() -> Int? {
        lock.withLock {
            guard failure == nil, next < results.count else { return nil }
            defer { next += 1 }
            return next
        }
    }
}

/// One page of a ListObjectsV2 answer, read with Foundation's XML parser.
struct ListPage {
    struct Object {
        var key = ""
        var size: UInt64 = 0
        var modifiedNs: Int64?
    }

    var objects: [Object] = []
    var truncated = false
    var nextToken: String?

    init(_ body: [UInt8]) throws {
        let reader = ListReader()
        let parser = XMLParser(data: Data(body))
        parser.delegate = reader
        guard parser.parse() else {
            throw StoreError(.failure, "S3 LIST answer is not XML: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        objects = reader.objects
        truncated = reader.truncated
        nextToken = reader.nextToken
    }
}

private final class ListReader: NSObject, XMLParserDelegate {
    var objects: [ListPage.Object] = []
    var truncated = false
    var nextToken: String?
    private var current: ListPage.Object?
    private var text = ""

    private let dates: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f
    }()
    private let fractionalDates: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        text = ""
        if name == "Contents" { current = ListPage.Object() }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        switch name {
        case "Contents":
            if let current { objects.append(current) }
            current = nil
        case "Key": current?.key = text
        case "Size": current?.size = UInt64(text) ?? 0
        case "LastModified":
            let date = dates.date(from: text) ?? fractionalDates.date(from: text)
            current?.modifiedNs = date.map { Int64($0.timeIntervalSince1970 * 1e9) }
        case "IsTruncated": truncated = text == "true"
        case "NextContinuationToken": nextToken = text
        default: break
        }
    }
}
