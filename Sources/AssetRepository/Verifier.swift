import AssetCatalog
import AssetStore

/// Re-hashes chunks and files and names everything a damaged chunk breaks.
public struct Verifier {
    public let repo: Repository
    public init(repo: Repository) { self.repo = repo }

    public struct Damage: Sendable, Codable {
        public let chunk: String
        public let pack: String
        public let problem: String
    }

    public struct Affected: Sendable, Codable {
        public let version: String
        public let path: String
    }

    public struct Report: Sendable, Codable {
        public var chunksChecked = 0
        public var filesChecked = 0
        public var bytesChecked: UInt64 = 0
        public var damagedChunks: [Damage] = []
        public var damagedFiles: [String] = []
        public var affected: [Affected] = []
        public var ok: Bool { damagedChunks.isEmpty && damagedFiles.isEmpty }
    }

    /// Checks every chunk and file of `ref`'s version, or of the whole store when `ref` is nil.
    public func verify(_ ref: Ref?, progress: ((Int, Int) -> Void)? = nil) throws -> Report {
        var report = Report()
        var versions: [VersionInfo]
        var files: [FileInfo]
        var chunks: [ChunkLocation]
        if let ref {
            let version = try repo.catalog.resolve(ref)
            versions = [version]
            let tree = VersionTree(catalog: repo.catalog, version: version)
            let ids = try tree.fileIDs().sorted()
            files = try ids.map { try repo.catalog.file($0) }
            chunks = try tree.chunks(of: ids)
        } else {
            versions = try repo.catalog.assets().flatMap { try repo.catalog.versions(of: $0.name) }
            files = try repo.catalog.allFiles()
            chunks = try repo.catalog.allChunks()
        }

        // Pass 1: every chunk, on all cores, in batches so memory stays bounded.
        var bad = Set<ContentHash>()
        let batchSize = 64
        var start = 0
        // Verify proves the store, not this host's disk cache: every chunk is read from the pack storage.
        let storeReader = ChunkReader(storage: repo.storage, identity: repo.reader.identity)
        while start < chunks.count {
            let slice = Array(chunks[start..<min(start + batchSize, chunks.count)])
            let outcomes = parallelMap(count: slice.count) { i -> String? in
                do {
                    _ = try storeReader.read(slice[i])
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            for (i, outcome) in outcomes.enumerated() {
                report.bytesChecked += UInt64(slice[i].rawLength)
                if let problem = outcome {
                    bad.insert(slice[i].id)
                    report.damagedChunks.append(Damage(chunk: slice[i].id.hex, pack: repo.storage.describe(slice[i].pack), problem: problem))
                }
            }
            report.chunksChecked += slice.count
            start += slice.count
            progress?(report.chunksChecked, chunks.count)
        }

        // Pass 2: every file's whole SHA-256. One-chunk files are their chunk, already proven above.
        var badFiles = Set<Int64>()
        for file in files {
            report.filesChecked += 1
            let fileChunks = try repo.catalog.fileChunks(file.id)
            if fileChunks.contains(where: { bad.contains($0.location.id) }) {
                badFiles.insert(file.id)
                continue
            }
            if fileChunks.count == 1, fileChunks[0].location.id == file.hash, UInt64(fileChunks[0].location.rawLength) == file.size {
                continue
            }
            do {
                try FileContentReader(repo: repo).stream(fileID: file.id) { _ in }
            } catch {
                badFiles.insert(file.id)
                report.damagedFiles.append("file \(file.hash.hex): \(error)")
            }
        }

        // Pass 3: name the versions and paths that the damage breaks.
        if !badFiles.isEmpty {
            for version in versions {
                try VersionTree(catalog: repo.catalog, version: version).walk { path, entry in
                    if let f = entry.fileID, badFiles.contains(f) {
                        report.affected.append(Affected(version: "\(version.asset)@v\(version.number)",
                                                        path: String(decoding: path, as: UTF8.self)))
                    }
                }
            }
        }
        return report
    }
}
