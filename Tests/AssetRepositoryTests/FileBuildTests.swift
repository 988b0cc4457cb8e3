@testable import AssetRepository
import AssetStore
import Testing

/// The import pipeline writes a file's catalog row only once `readyHash` answers: a file of two or more
/// chunks must wait for the file hasher, which runs on its own thread and can lag behind the pipeline.
@Suite("FileBuild whole-file hash")
struct FileBuildTests {
    let a = ContentHash.of(Array("first chunk".utf8))
    let b = ContentHash.of(Array("second chunk".utf8))

    @Test("a multi-chunk file has no hash until the file hasher gives one, even with every chunk hashed")
    func multiChunkWaitsForStreamedHash() throws {
        let file = FileBuild(size: 2 << 20)
        let first = file.appendChunk(offset: 0, hash: nil)
        let second = file.appendChunk(offset: 1 << 20, hash: nil)
        file.setHash(a, at: first)
        file.setHash(b, at: second)
        #expect(file.readyHash == nil)
        #expect(throws: RepositoryError.self) { try file.finalHash() }
        let whole = ContentHash.of(Array("first chunksecond chunk".utf8))
        file.streamedHash = whole
        #expect(file.readyHash == whole)
        #expect(try file.finalHash() == whole)
    }

    @Test("format 1: a single-chunk file's hash is its chunk's, once the pipeline has hashed it; an empty file's is SHA-256 of nothing")
    func singleAndEmpty() throws {
        let one = FileBuild(size: 11, chunkIDIsFileHash: true)
        let index = one.appendChunk(offset: 0, hash: nil)
        #expect(one.readyHash == nil)
        one.setHash(a, at: index)
        #expect(one.readyHash == a)

        let empty = FileBuild(size: 0)
        #expect(try empty.finalHash() == ContentHash.of([UInt8]()))
    }

    @Test("format 2: a single-chunk file waits for the file hasher too (its chunk id is not the hash of its bytes)")
    func singleChunkFormatTwo() throws {
        let one = FileBuild(size: 11)
        let index = one.appendChunk(offset: 0, hash: nil)
        one.setHash(a, at: index)
        #expect(one.readyHash == nil)
        #expect(throws: RepositoryError.self) { try one.finalHash() }
        one.streamedHash = b
        #expect(one.readyHash == b)
    }
}
