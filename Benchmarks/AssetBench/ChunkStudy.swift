import AssetStore

/// Running totals of one candidate parameter set over all versions.
struct ChunkStudyRow {
    let parameters: ChunkerParameters
    /// Bytes actually passed through the chunker (new or changed files) and the time the chunker took on them.
    var chunkedBytes = 0
    var chunkSeconds = 0.0
    var chunksCut = 0
    /// Chunks of files longer than maxSize only: small files are single short chunks whatever the parameters,
    /// and would hide the chunker's own mean.
    var largeFileBytes = 0
    var largeFileChunks = 0
    /// Every file of every version counted in full: what per-version plain copies would hold.
    var logicalBytes = 0
    var uniqueBytes = 0
    var unique = Set<ContentHash>()

    var chunkerMBps: Double { chunkSeconds > 0 ? Double(chunkedBytes) / 1e6 / chunkSeconds : 0 }
    var meanChunkBytes: Double { chunksCut > 0 ? Double(chunkedBytes) / Double(chunksCut) : 0 }
    var meanLargeFileChunkBytes: Double {
        largeFileChunks > 0 ? Double(largeFileBytes) / Double(largeFileChunks) : 0
    }
    var dedupRatio: Double { uniqueBytes > 0 ? Double(logicalBytes) / Double(uniqueBytes) : 0 }
}

/// Chunks every version in process with each candidate parameter set and counts what a content-addressed store
/// would keep. A file whose (size, mtime, inode) is unchanged since it was last chunked has the same chunks, so
/// it counts towards the logical size without being re-read, the shortcut every importer compared here takes.
final class ChunkStudy {
    static let candidates: [ChunkerParameters] = [
        ChunkerParameters(minSize: 64 << 10, averageSize: 256 << 10, maxSize: 1 << 20),
        ChunkerParameters(minSize: 128 << 10, averageSize: 512 << 10, maxSize: 2 << 20),
        ChunkerParameters(minSize: 256 << 10, averageSize: 1 << 20, maxSize: 4 << 20),
        ChunkerParameters(minSize: 512 << 10, averageSize: 2 << 20, maxSize: 8 << 20),
    ]

    private(set) var rows: [ChunkStudyRow] = ChunkStudy.candidates.map { ChunkStudyRow(parameters: $0) }
    private var chunked: [String: FileSignature] = [:]

    /// Adds one version (all its files); returns how many files were new or changed.
    func add(files: [String]) throws -> Int {
        var changed = 0
        for path in files {
            let signature = try FileIO.signature(path)
            for r in rows.indices { rows[r].logicalBytes += signature.size }
            if chunked[path] == signature { continue }
            changed += 1
            let bytes = try FileIO.readWhole(path)
            // A file rewritten while we read it would make the study silently wrong.
            guard bytes.count == signature.size else { throw BenchError("\(path) changed while being read") }
            bytes.withUnsafeBytes { buffer in
                for r in rows.indices { chunk(buffer, into: &rows[r]) }
            }
            chunked[path] = signature
        }
        return changed
    }

    private func chunk(_ buffer: UnsafeRawBufferPointer, into row: inout ChunkStudyRow) {
        let chunker = Chunker(parameters: row.parameters)
        let (lengths, seconds) = timed { chunker.chunkLengths(buffer) }
        row.chunkSeconds += seconds
        row.chunkedBytes += buffer.count
        row.chunksCut += lengths.count
        if buffer.count > row.parameters.maxSize {
            row.largeFileBytes += buffer.count
            row.largeFileChunks += lengths.count
        }
        var offset = 0
        for length in lengths {
            let slice = UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + length])
            if row.unique.insert(ContentHash.of(slice)).inserted { row.uniqueBytes += length }
            offset += length
        }
    }
}
