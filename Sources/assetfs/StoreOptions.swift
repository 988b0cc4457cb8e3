import ArgumentParser
import AssetCatalog
import AssetRepository
import Foundation

/// Options every store command shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store directory (default: $ASSETFS_STORE, else \(StoreOptions.defaultPath)).")
    var store: String?

    @Flag(name: [.short, .long], help: "Print only errors.")
    var quiet = false

    static var defaultPath: String {
        if geteuid() == 0 { return "/var/lib/assetfs" }
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/assetfs" }
        return (env["HOME"] ?? ".") + "/.local/share/assetfs"
    }

    var path: String {
        if let store { return store }
        if let env = ProcessInfo.processInfo.environment["ASSETFS_STORE"], !env.isEmpty { return env }
        return Self.defaultPath
    }

    /// Where the store is: a directory (made absolute) or a URL.
    func location() throws -> StoreLocation {
        switch try StoreLocation(parsing: path) {
        case .local(let directory): return .local(path: absolute(directory))
        case let other: return other
        }
    }

    func open() throws -> Repository { try Repository.open(try location()) }

    /// Progress is drawn on stderr, so only when stderr is a terminal (git's rule) and --quiet is off.
    var showProgress: Bool { !quiet && isatty(2) == 1 }
}

struct JSONFlag: ParsableArguments {
    @Flag(name: .long, help: "Print JSON instead of a table (schema in README.md).")
    var json = false
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func parseRef(_ text: String) throws -> Ref {
    do {
        return try Ref.parse(text)
    } catch let error as Ref.ParseError {
        throw ValidationError(error.description)
    }
}
