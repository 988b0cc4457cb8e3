import ArgumentParser
import AssetRepository
import AssetSharedStore
import AssetStore

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a store.",
        discussion: """
            Examples: assetfs init --store /srv/assets-store
                      assetfs init --store s3://team-assets/store --catalog postgresql://assetfs@db.internal:5432/assets
            """)

    @OptionGroup var store: StoreOptions
    @Option(help: "Minimum chunk size in bytes (fixed for the life of the store).") var minChunk = ChunkerParameters.default.minSize
    @Option(help: "Average chunk size in bytes, a power of two.") var avgChunk = ChunkerParameters.default.averageSize
    @Option(help: "Maximum chunk size in bytes.") var maxChunk = ChunkerParameters.default.maxSize

    func validate() throws {
        if let problem = ChunkerParameters(minSize: minChunk, averageSize: avgChunk, maxSize: maxChunk).problem {
            throw ValidationError(problem)
        }
    }

    func run() throws {
        let repo = try Stores.create(try store.location(), chunker: ChunkerParameters(minSize: minChunk, averageSize: avgChunk, maxSize: maxChunk),
                                     settings: try store.sharedSettings())
        if !store.quiet { print("created store \(repo.root)") }
    }
}
