import ArgumentParser
import AssetRepository
import AssetStore

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a store.",
        discussion: "Example: assetfs init --store /srv/assets-store")

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
        let repo = try Repository.create(try store.location(), chunker: ChunkerParameters(minSize: minChunk, averageSize: avgChunk, maxSize: maxChunk))
        if !store.quiet { print("created store \(repo.root)") }
    }
}
