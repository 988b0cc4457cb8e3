import AssetCatalog
import AssetStore

/// Where a store lives, as a person gives it with `--store` or `ASSETFS_STORE`: a directory (a path or a
/// `file://` URL) or, for stores shared by many hosts, an `s3://BUCKET/PREFIX` URL.
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    case local(path: String)
    case s3(bucket: String, prefix: String)

    /// Parses `text`; a path is taken as it is (the caller makes it absolute). Anything that looks like a URL
    /// with another scheme is refused rather than created as a directory named `scheme:`.
    public init(parsing text: String) throws {
        if text.hasPrefix("file://") {
            let path = String(text.dropFirst("file://".count))
            guard path.hasPrefix("/") else {
                throw RepositoryError(.usage, "invalid store URL \(text): a file:// URL needs an absolute path (file:///srv/store)")
            }
            self = .local(path: path)
        } else if text.hasPrefix("s3://") {
            let rest = text.dropFirst("s3://".count)
            let bucket = String(rest.prefix { $0 != "/" })
            var prefix = Substring(rest.dropFirst(bucket.count).drop { $0 == "/" })
            while prefix.last == "/" { prefix = prefix.dropLast() }
            guard Self.validBucket(bucket) else {
                throw RepositoryError(.usage, "invalid store URL \(text): the bucket name must be 3-63 lowercase letters, digits, dots or hyphens (s3://BUCKET/PREFIX)")
            }
            self = .s3(bucket: bucket, prefix: String(prefix))
        } else if let scheme = text.range(of: "://").map({ String(text[..<$0.lowerBound]) }),
                  !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }) {
            throw RepositoryError(.usage, "unknown store URL scheme \(scheme):// in \(text): give a directory, file:///PATH or s3://BUCKET/PREFIX")
        } else {
            self = .local(path: text)
        }
    }

    public var description: String {
        switch self {
        case .local(let path): return path
        case .s3(let bucket, let prefix): return prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)"
        }
    }

    /// S3's bucket naming rules (the subset every S3-compatible server accepts).
    static func validBucket(_ name: String) -> Bool {
        guard (3...63).contains(name.count), let first = name.first, let last = name.last,
              first.isLetter || first.isNumber, last.isLetter || last.isNumber else { return false }
        return name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "." || $0 == "-" }
    }
}

/// The backends of a local store. Stores of every kind are opened by `Stores` (AssetSharedStore), which
/// dispatches on the location; retries, caches and metrics are decorators applied there, around backends that
/// know none of them.
public enum StoreBackends {
    /// Pack storage and catalog of the local store in `root`, and the directory for host-local state
    /// (workspaces, locks, logs): for a local store its own root.
    public static func local(root: String) throws -> (storage: PackStorage, catalog: Catalog, hostDirectory: String) {
        (LocalPackStorage(root: root), try SQLiteCatalog(path: root + "/" + Repository.catalogName), root)
    }
}
