import AssetStore

/// A catalog failure, in words every catalog backend shares (SQLite here, a server database for shared stores),
/// with what the backend itself reported kept as the cause.
public struct CatalogError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// An asset, version, tag or workspace that does not exist.
        case notFound
        /// A rule would be broken (a tagged version deleted, a name taken, a unique row inserted twice).
        case conflict
        /// A request that makes no sense for this catalog (a newer schema, a bad argument).
        case invalid
        /// The catalog's own data is damaged.
        case corrupt
        /// The disk holding the catalog is full.
        case noSpace
        /// May succeed if the transaction is run again: busy, locked, a serialization failure, a lost connection.
        case transient
        /// Anything else, permanent (read-only store, I/O error).
        case failure
    }

    public let code: Code
    public let message: String
    /// The backend's own code and name, e.g. "SQLite 13 (SQLITE_FULL)".
    public let cause: String?

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
    public var isNoSpace: Bool { code == .noSpace }
}

/// The errors every catalog backend reports in the same words, so a command prints the same line whichever
/// catalog the store uses.
extension CatalogError {
    public static func noAsset(_ asset: String) -> CatalogError {
        CatalogError(.notFound, "no asset named '\(asset)' in this store (`assetfs assets` lists them)")
    }

    public static func noVersion(_ asset: String, _ number: Int) -> CatalogError {
        CatalogError(.notFound, "asset '\(asset)' has no version v\(number)")
    }

    public static func noTag(_ asset: String, _ name: String) -> CatalogError {
        CatalogError(.notFound, "asset '\(asset)' has no tag '\(name)'")
    }

    public static func tagged(_ asset: String, _ number: Int, tags: [String]) -> CatalogError {
        CatalogError(.conflict, "\(asset)@v\(number) is tagged \(tags.joined(separator: ", ")): move or remove the tag first (`assetfs untag \(asset) \(tags[0])`)")
    }

    public static func workspaceExists(_ asset: String, _ name: String) -> CatalogError {
        CatalogError(.conflict, "workspace \(asset)/\(name) already exists (`assetfs workspace discard \(asset)/\(name)` removes it)")
    }

    public static func packInUse(_ id: ContentHash, chunks: Int64) -> CatalogError {
        CatalogError(.conflict, "pack \(id.short) still holds \(chunks) indexed chunks; not forgetting it")
    }
}
