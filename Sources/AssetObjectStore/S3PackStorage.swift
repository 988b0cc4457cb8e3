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
        let response = try client.perform("PUT", key(id), headers: ["If-None-Match: *", "Content-Type: application/octet-stream"],
                                          upload: source)
        // 412: an object of this name exists; names are content, so it holds these bytes.
        guard (200..<300).contains(response.status) || response.status == 412 else {
            throw client.failure(response, "PUT", key(id))
        }
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
