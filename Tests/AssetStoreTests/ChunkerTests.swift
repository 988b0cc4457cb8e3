import AssetTestSupport
import AssetStore
import Testing

/// Chunk boundaries of a whole buffer, with each chunk's offset and SHA-256.
private func chunks(_ bytes: [UInt8], _ chunker: Chunker) -> [(offset: Int, length: Int, hash: ContentHash)] {
    let lengths = bytes.withUnsafeBytes { chunker.chunkLengths($0) }
    var out: [(offset: Int, length: Int, hash: ContentHash)] = []
    var offset = 0
    bytes.withUnsafeBytes { raw in
        for n in lengths {
            out.append((offset, n, ContentHash.of(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]))))
            offset += n
        }
    }
    return out
}

private let smallParameters = ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536)

@Suite("Chunker")
struct ChunkerTests {
    @Test("parameters: the defaults and the small test sizes are valid; broken ones are named")
    func parameterRules() {
        #expect(ChunkerParameters.default.problem == nil)
        #expect(smallParameters.problem == nil)
        #expect(ChunkerParameters(minSize: 1024, averageSize: 16384, maxSize: 65536).problem != nil)
        #expect(ChunkerParameters(minSize: 4096, averageSize: 20000, maxSize: 65536).problem != nil)
        #expect(ChunkerParameters(minSize: 65536, averageSize: 16384, maxSize: 131072).problem != nil)
        #expect(ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 16384).problem != nil)
        #expect(ChunkerParameters(minSize: 4096, averageSize: 1 << 20, maxSize: 128 << 20).problem != nil)
    }

    @Test("every cut point lies within min...max except the last", arguments: [ChunkerParameters.default, smallParameters])
    func cutPointsWithinBounds(parameters: ChunkerParameters) throws {
        let chunker = Chunker(parameters: parameters)
        let data = randomBytes(8 << 20, seed: 11)
        let lengths = data.withUnsafeBytes { chunker.chunkLengths($0) }
        #expect(lengths.reduce(0, +) == data.count)
        #expect(lengths.count >= (8 << 20) / parameters.maxSize)
        for n in lengths.dropLast() {
            #expect(n >= parameters.minSize && n <= parameters.maxSize, "chunk of \(n) bytes")
        }
        let last = try #require(lengths.last)
        #expect(last >= 1 && last <= parameters.maxSize)
        // Content-defined: on random data most cuts come from the hash, not from the maximum size.
        let hashCuts = lengths.dropLast().filter { $0 < parameters.maxSize }.count
        #expect(hashCuts * 2 > lengths.count - 1, "only \(hashCuts) of \(lengths.count) cuts were content-defined")
        // The average is in the neighbourhood of the configured one.
        let mean = Double(data.count) / Double(lengths.count)
        #expect(mean > Double(parameters.minSize) && mean < Double(parameters.maxSize))
    }

    @Test("short, empty and constant buffers")
    func edgeBuffers() {
        let chunker = Chunker(parameters: smallParameters)
        #expect([UInt8]().withUnsafeBytes { chunker.chunkLengths($0) } == [])
        #expect([UInt8](repeating: 7, count: 1).withUnsafeBytes { chunker.chunkLengths($0) } == [1])
        let short = randomBytes(smallParameters.minSize - 1, seed: 3)
        #expect(short.withUnsafeBytes { chunker.chunkLengths($0) } == [short.count])
        // Zeros never match the mask: every chunk is cut at the maximum size, and all are identical.
        let zeros = [UInt8](repeating: 0, count: 5 * smallParameters.maxSize + 1000)
        let found = chunks(zeros, chunker)
        for c in found.dropLast() { #expect(c.length == smallParameters.maxSize) }
        #expect(found.last?.length == 1000)
        #expect(Set(found.dropLast().map(\.hash)).count == 1)
    }

    @Test("cut points are deterministic and do not depend on how much is passed beyond maxSize")
    func deterministic() {
        let data = randomBytes(6 << 20, seed: 5)
        for parameters in [ChunkerParameters.default, smallParameters] {
            let first = data.withUnsafeBytes { Chunker(parameters: parameters).chunkLengths($0) }
            let second = data.withUnsafeBytes { Chunker(parameters: parameters).chunkLengths($0) }
            #expect(first == second)
            // Streaming with a window of exactly maxSize bytes (what the importer guarantees) gives the same cuts.
            let chunker = Chunker(parameters: parameters)
            var streamed: [Int] = []
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let end = min(raw.count, offset + parameters.maxSize)
                    let n = chunker.cutPoint(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                    streamed.append(n)
                    offset += n
                }
            }
            #expect(streamed == first)
        }
        // Different content gives different cuts.
        let other = randomBytes(6 << 20, seed: 6)
        #expect(data.withUnsafeBytes { Chunker().chunkLengths($0) } != other.withUnsafeBytes { Chunker().chunkLengths($0) })
    }

    @Test("inserting 100 bytes near the start of 16 MiB changes only the chunks around the edit",
          arguments: [ChunkerParameters.default, smallParameters])
    func editLocalityInsertNearStart(parameters: ChunkerParameters) {
        let chunker = Chunker(parameters: parameters)
        let original = randomBytes(16 << 20, seed: 2024)
        let editAt = 1000
        let inserted = randomBytes(100, seed: 99)
        var edited = original
        edited.insert(contentsOf: inserted, at: editAt)

        let before = chunks(original, chunker)
        let after = chunks(edited, chunker)
        let beforeHashes = Set(before.map(\.hash))
        let afterHashes = Set(after.map(\.hash))

        let unchanged = before.filter { afterHashes.contains($0.hash) }.count
        let fraction = Double(unchanged) / Double(before.count)
        #expect(fraction >= 0.9, "only \(unchanged) of \(before.count) chunks survived a 100-byte insert")

        // The chunk holding the edit is new; every new chunk lies near the edit.
        let changed = after.filter { !beforeHashes.contains($0.hash) }
        #expect(!changed.isEmpty)
        #expect(changed.contains { $0.offset <= editAt && editAt < $0.offset + $0.length })
        for c in changed {
            #expect(c.offset < editAt + inserted.count + 2 * parameters.maxSize,
                    "changed chunk at \(c.offset) is far from the edit at \(editAt)")
        }
        #expect(changed.count <= 4)
        // After resynchronisation the cut points are the old ones shifted by the insert.
        let lastChanged = changed.map { $0.offset + $0.length }.max()!
        let shiftedOld = Set(before.map { $0.offset + $0.length + inserted.count }.filter { $0 >= lastChanged })
        let newEnds = Set(after.map { $0.offset + $0.length }.filter { $0 >= lastChanged })
        #expect(shiftedOld == newEnds)
    }

    @Test("an edit in the middle leaves every chunk before it and nearly every chunk after it unchanged")
    func editLocalityInMiddle() {
        let chunker = Chunker(parameters: smallParameters)
        let original = randomBytes(4 << 20, seed: 77)
        let editAt = 2 << 20
        var edited = original
        edited.replaceSubrange(editAt..<(editAt + 50), with: randomBytes(10, seed: 1))  // delete 40 bytes, change 10
        let before = chunks(original, chunker)
        let after = chunks(edited, chunker)
        let prefixBefore = before.filter { $0.offset + $0.length <= editAt }
        let prefixAfter = after.filter { $0.offset + $0.length <= editAt }
        #expect(prefixBefore.map(\.hash) == prefixAfter.map(\.hash))
        let afterHashes = Set(after.map(\.hash))
        let lost = before.filter { !afterHashes.contains($0.hash) }
        #expect(!lost.isEmpty)
        #expect(lost.count <= 4, "\(lost.count) chunks changed for a 50-byte edit")
        for c in lost { #expect(c.offset + c.length > editAt && c.offset < editAt + 50 + 2 * smallParameters.maxSize) }
    }
}
