import AssetTestSupport
@testable import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func encode(_ plain: [UInt8]) -> ChunkRecord.Encoded {
    plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of($0), compressor: ZstdCompressor()) }
}

private func makeStorage(_ dir: String) throws -> LocalPackStorage {
    let storage = LocalPackStorage(root: dir + "/store")
    try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
    try storage.createLayout()
    return storage
}

/// Samples of different kinds and sizes; the last two are identical to earlier ones in size only.
private let payloads: [[UInt8]] = [
    [0x42],
    randomBytes(70_000, seed: 21),
    textBytes(200_000, seed: 22),
    randomBytes(ChunkRecord.blockSize, seed: 23),
    textBytes(ChunkRecord.blockSize, seed: 24) + randomBytes(250_000, seed: 25),
]

/// A writer whose scratch file writes to /dev/full, so the first flush fails with ENOSPC.
private func fullDiskWriter(_ storage: PackStorage) -> PackWriter {
    let writer = PackWriter(storage: storage)
    writer.openScratch = { directory in
        let scratch = try ScratchFile.create(in: directory)
        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
        guard full >= 0 else { throw TestFailure("cannot open /dev/full") }
        dup2(full, scratch.descriptor.raw)
        close(full)
        return scratch
    }
    return writer
}

/// Storage whose first `attempts` puts fail after reading part of the source, as an interrupted upload does;
/// later puts go to the local backend. Records what each put read of its source.
private final class FlakyPutStorage: PackStorage, @unchecked Sendable {
    let inner: LocalPackStorage
    private let lock = NSLock()
    private var failuresLeft: Int  // Protected by `lock`.
    private var reads: [[UInt8]] = []  // Protected by `lock`.

    init(inner: LocalPackStorage, failures: Int) {
        self.inner = inner
        failuresLeft = failures
    }

    var sourcesRead: [[UInt8]] { lock.withLock { reads } }
    var location: String { inner.location }
    var scratchDirectory: String { inner.scratchDirectory }

    func put(_ id: ContentHash, from source: PackSource) throws {
        let bytes = try source.readAll()
        let fail = lock.withLock { () -> Bool in
            reads.append(bytes)
            guard failuresLeft > 0 else { return false }
            failuresLeft -= 1
            return true
        }
        if fail { throw StoreError(.transient, "injected put failure") }
        try inner.put(id, from: source)
    }

    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try inner.read(id, at: offset, into: buffer)
    }
    func size(of id: ContentHash) throws -> UInt64? { try inner.size(of: id) }
    func delete(_ id: ContentHash) throws { try inner.delete(id) }
    func list() throws -> [StoredPack] { try inner.list() }
    func describe(_ id: ContentHash) -> String { inner.describe(id) }
}

/// Retries a failed put with the same source, as a retry decorator around a remote backend does.
private struct RetryingPut: PackStorage {
    let inner: FlakyPutStorage
    var location: String { inner.location }
    var scratchDirectory: String { inner.scratchDirectory }
    func put(_ id: ContentHash, from source: PackSource) throws {
        do { try inner.put(id, from: source) } catch { try inner.put(id, from: source) }
    }
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try inner.read(id, at: offset, into: buffer)
    }
    func size(of id: ContentHash) throws -> UInt64? { try inner.size(of: id) }
    func delete(_ id: ContentHash) throws { try inner.delete(id) }
    func list() throws -> [StoredPack] { try inner.list() }
    func describe(_ id: ContentHash) -> String { inner.describe(id) }
}

@Suite("PackWriter, LocalPackStorage, PackIndexReader, ChunkReader")
struct PackTests {
    @Test("records of odd sizes across several 4 MiB page-aligned writes (and one larger than the buffer) land byte for byte, with nothing after the index")
    func pageAlignedWrites() throws {
        try withTemporaryDirectory("pack-pages") { dir in
            let storage = try makeStorage(dir)
            let writer = PackWriter(storage: storage)
            let plains = [randomBytes(1_500_001, seed: 31), randomBytes(3_000_007, seed: 32), randomBytes(777, seed: 33),
                          randomBytes(6_300_001, seed: 34), textBytes(2_100_003, seed: 35), [0x07]]
            let encoded = plains.map(encode)
            for chunk in encoded { try writer.append(chunk) }
            let sealed = try writer.seal()
            let file = try readWhole(storage.path(of: sealed.pack))
            let records = encoded.reduce(0) { $0 + $1.bytes.count }
            #expect(file.count == PackWriter.headerSize + records + plains.count * PackWriter.footerEntrySize + PackWriter.trailerSize)
            #expect(UInt64(file.count) == sealed.size)
            let reader = ChunkReader(storage: LocalPackStorage(root: dir + "/store"))
            for (i, location) in sealed.chunks.enumerated() {
                #expect(Array(file[Int(location.offset)..<(Int(location.offset) + location.length)]) == encoded[i].bytes)
                #expect(try reader.read(location) == plains[i])
            }
            #expect(try PackIndexReader.read(sealed.pack, from: storage) == sealed.chunks)

            // Dropped while a background write may still be running: it waits for it, then removes its staging file.
            do {
                let abandoned = PackWriter(storage: storage)
                for chunk in encoded.prefix(4) { try abandoned.append(chunk) }
            }
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "staging file left behind by an abandoned writer")
        }
    }

    @Test("a page write that direct I/O refuses (EINVAL) is done buffered instead, with the same bytes")
    func directWriteFallsBack() throws {
        try withTemporaryDirectory("pack-direct") { dir in
            let path = dir + "/staging"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            try #require(fd >= 0)
            let descriptor = FileDescriptor(raw: fd, path: path)
            defer { descriptor.close() }
            try #require(descriptor.setDirectIO(true), "this file system refuses O_DIRECT; nothing to test here")
            // 1,000 bytes from an unaligned address: direct I/O refuses both (EINVAL).
            let bytes = randomBytes(1_001, seed: 41)
            try bytes.withUnsafeBytes { raw in
                try PackWriter.writePages(UnsafeRawBufferPointer(rebasing: raw[1...]), to: descriptor, at: 0)
            }
            #expect(!descriptor.directIO, "direct I/O is still on after a refused write")
            #expect(try readWhole(path) == Array(bytes[1...]))
        }
    }

    @Test("a sealed pack is named by the SHA-256 of its header and index, and every chunk reads back alone")
    func writeSealAndReadBack() throws {
        try withTemporaryDirectory("pack") { dir in
            let storage = try makeStorage(dir)
            let writer = PackWriter(storage: storage)
            #expect(writer.isEmpty)
            let encoded = payloads.map(encode)
            var offsets: [UInt64] = []
            for chunk in encoded { offsets.append(try writer.append(chunk)) }
            #expect(writer.chunkCount == payloads.count)
            #expect(offsets[0] == UInt64(PackWriter.headerSize))
            for i in 1..<offsets.count { #expect(offsets[i] == offsets[i - 1] + UInt64(encoded[i - 1].bytes.count)) }

            let sealed = try writer.seal()
            #expect(writer.isEmpty)
            let path = storage.path(of: sealed.pack)
            #expect(path.hasPrefix(dir + "/store/packs/" + String(sealed.pack.hex.prefix(2)) + "/"))
            #expect(path.hasSuffix(sealed.pack.hex + ".pack"))
            let file = try readWhole(path)
            // Format.md: the name is the SHA-256 of the 16-byte header followed by the footer index + trailer.
            let footerStart = file.count - 16 - payloads.count * PackWriter.footerEntrySize
            #expect(ContentHash.of(Array(file[0..<16]) + Array(file[footerStart...])) == sealed.pack,
                    "pack name is not the SHA-256 of its header and footer index")
            #expect(UInt64(file.count) == sealed.size)
            #expect(try storage.size(of: sealed.pack) == sealed.size)
            #expect(Array(file[0..<8]) == PackWriter.magic)
            #expect(Array(file[(file.count - 8)...]) == PackWriter.footerMagic)
            #expect(try storage.list().map { [$0.id: $0.size] } == [[sealed.pack: sealed.size]])
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "staging file left behind after seal")

            // Where the writer said each record is, byte for byte.
            #expect(sealed.chunks.count == payloads.count)
            for (i, location) in sealed.chunks.enumerated() {
                #expect(location.id == encoded[i].id)
                #expect(location.pack == sealed.pack)
                #expect(location.offset == offsets[i])
                #expect(location.length == encoded[i].bytes.count)
                #expect(location.rawLength == payloads[i].count)
                #expect(location.tableHash == encoded[i].tableHash)
                #expect(location.codec == encoded[i].codec)
                #expect(Array(file[Int(location.offset)..<(Int(location.offset) + location.length)]) == encoded[i].bytes)
            }

            // A fresh storage (no cached descriptors) and reader: each chunk alone by (pack, offset, length).
            let reader = ChunkReader(storage: LocalPackStorage(root: dir + "/store"))
            for (i, location) in sealed.chunks.enumerated().reversed() {
                #expect(try reader.read(location) == payloads[i])
            }

            // The footer index gives the same locations.
            #expect(try PackIndexReader.read(sealed.pack, from: storage) == sealed.chunks)
        }
    }

    @Test("a writer is reusable after seal; an empty writer refuses to seal; an abandoned one removes its staging file")
    func writerLifecycle() throws {
        try withTemporaryDirectory("lifecycle") { dir in
            let storage = try makeStorage(dir)
            let writer = PackWriter(storage: storage)
            #expect(throws: StoreError.self) { try writer.seal() }
            try writer.append(encode(payloads[1]))
            let first = try writer.seal()
            try writer.append(encode(payloads[2]))
            try writer.append(encode(payloads[3]))
            let second = try writer.seal()
            #expect(first.pack != second.pack)
            #expect(first.chunks.count == 1 && second.chunks.count == 2)
            #expect(second.chunks[0].offset == UInt64(PackWriter.headerSize))
            #expect(Set(try storage.list().map(\.id)) == [first.pack, second.pack])
            #expect(try PackIndexReader.read(second.pack, from: storage) == second.chunks)
            #expect(try ChunkReader(storage: storage).read(second.chunks[1]) == payloads[3])

            do {
                let abandoned = PackWriter(storage: storage)
                try abandoned.append(encode(payloads[4]))
                #expect(rawNamesAt(dir + "/store/tmp").count == 1)
            }
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "abandoned writer left its staging file")
            #expect(Set(try storage.list().map(\.id)) == [first.pack, second.pack])

            // Deleting a pack makes it missing, and reading it then says so.
            try storage.delete(first.pack)
            #expect(try storage.size(of: first.pack) == nil)
            let error = #expect(throws: StoreError.self) { try ChunkReader(storage: storage).read(first.chunks[0]) }
            #expect(error?.code == .notFound)
            #expect(throws: StoreError.self) { try PackIndexReader.read(first.pack, from: storage) }
        }
    }

    @Test("a writer refuses any use after a failed write (disk full)")
    func refusesUseAfterFailedWrite() throws {
        try withTemporaryDirectory("full") { dir in
            let storage = try makeStorage(dir)
            do {
                let writer = fullDiskWriter(storage)
                try writer.append(encode(payloads[1]))
                let failure = #expect(throws: StoreError.self) { try writer.seal() }
                #expect(failure?.isNoSpace == true, "ENOSPC should be reported as a full disk: \(String(describing: failure))")
                let again = #expect(throws: StoreError.self) { try writer.append(encode(payloads[0])) }
                #expect(again?.code == .invalidArgument)
                #expect(throws: StoreError.self) { try writer.seal() }
            }
            #expect(try storage.list().isEmpty)
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "failed writer left its staging file")
        }
    }

    @Test("a writer refuses any use after a failed put, and removes its scratch file")
    func refusesUseAfterFailedPut() throws {
        try withTemporaryDirectory("put-fails") { dir in
            let storage = try makeStorage(dir)
            let writer = PackWriter(storage: FlakyPutStorage(inner: storage, failures: 1))
            try writer.append(encode(payloads[2]))
            #expect(throws: StoreError.self) { try writer.seal() }
            let again = #expect(throws: StoreError.self) { try writer.append(encode(payloads[0])) }
            #expect(again?.code == .invalidArgument)
            #expect(try storage.list().isEmpty)
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "failed writer left its scratch file")
        }
    }

    @Test("a failed put can be retried with the same source: the backend gets the whole pack again")
    func putIsRetryable() throws {
        try withTemporaryDirectory("put-retry") { dir in
            let storage = try makeStorage(dir)
            let flaky = FlakyPutStorage(inner: storage, failures: 1)
            let writer = PackWriter(storage: RetryingPut(inner: flaky))
            for payload in payloads { try writer.append(encode(payload)) }
            let sealed = try writer.seal()
            let attempts = flaky.sourcesRead
            #expect(attempts.count == 2 && attempts[0] == attempts[1] && attempts[0].count == Int(sealed.size))
            #expect(try readWhole(storage.path(of: sealed.pack)) == attempts[1])
            #expect(try storage.list().map { [$0.id: $0.size] } == [[sealed.pack: sealed.size]])
            for (i, location) in sealed.chunks.enumerated() { #expect(try ChunkReader(storage: storage).read(location) == payloads[i]) }
            #expect(rawNamesAt(dir + "/store/tmp").isEmpty, "scratch or link files left behind")

            // Storing a pack that exists already is not an error, and leaves it whole.
            let again = PackWriter(storage: storage)
            for payload in payloads { try again.append(encode(payload)) }
            #expect(try again.seal().pack == sealed.pack)
            #expect(try readWhole(storage.path(of: sealed.pack)) == attempts[1])
        }
    }

    @Test("partial reads: the block table and each block are verified on their own")
    func partialReads() throws {
        try withTemporaryDirectory("partial") { dir in
            let storage = try makeStorage(dir)
            let plain = textBytes(2 * ChunkRecord.blockSize, seed: 31) + randomBytes(3 * ChunkRecord.blockSize + 777, seed: 32)
            let writer = PackWriter(storage: storage)
            try writer.append(encode(randomBytes(1000, seed: 30)))  // so the chunk does not start right after the header
            try writer.append(encode(plain))
            let sealed = try writer.seal()
            let location = sealed.chunks[1]
            let reader = ChunkReader(storage: storage)

            let blocks = try reader.blockTable(location)
            #expect(blocks.count == 6)
            for block in blocks {
                let expected = Array(plain[block.rawOffset..<(block.rawOffset + block.rawLength)])
                #expect(try reader.readBlock(block, of: location) == expected)
            }
            #expect(blocks[0].codec == .zstd && blocks[5].codec == .raw)

            // Damage one stored byte of block 3 (raw) and of block 1 (zstd) directly in the pack file.
            let path = storage.path(of: sealed.pack)
            var damagedSoFar = Set<Int>()
            for damagedIndex in [3, 1] {
                let damaged = blocks[damagedIndex]
                let at = location.offset + UInt64(damaged.storedOffset + damaged.storedLength / 2)
                try flipByte(in: path, at: at)
                damagedSoFar.insert(damagedIndex)
                let fresh = ChunkReader(storage: LocalPackStorage(root: dir + "/store"))
                #expect(throws: StoreError.self) { try fresh.readBlock(damaged, of: location) }
                #expect(throws: StoreError.self) { try fresh.read(location) }
                // Undamaged blocks still read, and the other chunk is intact.
                for (i, block) in blocks.enumerated() where !damagedSoFar.contains(i) {
                    #expect(try fresh.readBlock(block, of: location) == Array(plain[block.rawOffset..<(block.rawOffset + block.rawLength)]))
                }
                #expect(try fresh.read(sealed.chunks[0]) == randomBytes(1000, seed: 30))
            }

            // Damage in the block table is caught before any block is trusted.
            try flipByte(in: path, at: location.offset + UInt64(ChunkRecord.headerSize + 2 * ChunkRecord.blockEntrySize + 1))
            let fresh = ChunkReader(storage: LocalPackStorage(root: dir + "/store"))
            #expect(throws: StoreError.self) { try fresh.blockTable(location) }
        }
    }

    @Test("a truncated pack is reported, not misread")
    func truncatedPack() throws {
        try withTemporaryDirectory("truncated") { dir in
            let storage = try makeStorage(dir)
            let writer = PackWriter(storage: storage)
            for p in payloads { try writer.append(encode(p)) }
            let sealed = try writer.seal()
            let last = sealed.chunks.last!
            #expect(truncate(storage.path(of: sealed.pack), off_t(last.offset) + off_t(last.length / 2)) == 0)
            let fresh = LocalPackStorage(root: dir + "/store")
            #expect(throws: StoreError.self) { try ChunkReader(storage: fresh).read(last) }
            #expect(throws: StoreError.self) { try PackIndexReader.read(sealed.pack, from: fresh) }
            #expect(try ChunkReader(storage: fresh).read(sealed.chunks[0]) == payloads[0])
        }
    }
}

func rawNamesAt(_ path: String) -> [[UInt8]] {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    return rawNames(fd)
}

/// Storage that fails its next calls with the given codes, then works.
private final class ScriptedFailures: PackStorage, @unchecked Sendable {
    let inner: LocalPackStorage
    private let lock = NSLock()
    private var failures: [StoreError.Code]  // Protected by `lock`.
    private var calls = 0  // Protected by `lock`.

    init(inner: LocalPackStorage, failures: [StoreError.Code]) {
        self.inner = inner
        self.failures = failures
    }

    var callCount: Int { lock.withLock { calls } }
    private func next() throws {
        let code = lock.withLock { () -> StoreError.Code? in
            calls += 1
            return failures.isEmpty ? nil : failures.removeFirst()
        }
        if let code { throw StoreError(code, "injected \(code)", cause: .http(503)) }
    }

    var location: String { inner.location }
    var scratchDirectory: String { inner.scratchDirectory }
    func put(_ id: ContentHash, from source: PackSource) throws {
        try next()
        try inner.put(id, from: source)
    }
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try next()
        return try inner.read(id, at: offset, into: buffer)
    }
    func size(of id: ContentHash) throws -> UInt64? {
        try next()
        return try inner.size(of: id)
    }
    func delete(_ id: ContentHash) throws {
        try next()
        try inner.delete(id)
    }
    func list() throws -> [StoredPack] {
        try next()
        return try inner.list()
    }
    func describe(_ id: ContentHash) -> String { inner.describe(id) }
}

/// Waits a retry asked for, recorded instead of slept.
private final class RecordedWaits: @unchecked Sendable {
    private let lock = NSLock()
    private var waits: [Double] = []  // Protected by `lock`.
    func record(_ seconds: Double) { lock.withLock { waits.append(seconds) } }
    var all: [Double] { lock.withLock { waits } }
}

private final class RecordedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []  // Protected by `lock`.
    func record(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

@Suite("RetryingPackStorage")
struct RetryTests {
    @Test("transient failures are retried with growing, jittered waits, each told to onRetry (what failed, the wait, the try); the pack is stored and read whole")
    func retriesTransientFailures() throws {
        try withTemporaryDirectory("retry") { dir in
            let local = try makeStorage(dir)
            let flaky = ScriptedFailures(inner: local, failures: [.transient, .transient, .transient])
            let waits = RecordedWaits()
            var policy = RetryPolicy()
            policy.initialDelay = 0.1
            let told = RecordedLines()
            let storage = RetryingPackStorage(flaky, policy: policy, sleep: { waits.record($0) }, onRetry: { told.record($0) })
            let writer = PackWriter(storage: storage)
            for payload in payloads { try writer.append(encode(payload)) }
            let sealed = try writer.seal()
            #expect(flaky.callCount == 4, "three failed puts and one that worked")
            let lines = told.all
            #expect(lines.count == 3, "\(lines)")
            for (i, line) in lines.enumerated() {
                #expect(line.contains("retrying in") && line.contains("try \(i + 2) of at most 8"), "\(line)")
            }
            let recorded = waits.all
            #expect(recorded.count == 3)
            for (i, wait) in recorded.enumerated() { #expect(wait >= 0 && wait <= 0.1 * Double(1 << i), "wait \(i): \(wait)") }
            for (i, location) in sealed.chunks.enumerated() { #expect(try ChunkReader(storage: storage).read(location) == payloads[i]) }
        }
    }

    @Test("other failures are not retried, and retries stop at the attempt and time bounds with a message saying so")
    func boundsAndPermanentFailures() throws {
        try withTemporaryDirectory("retry-bounds") { dir in
            let local = try makeStorage(dir)
            let permanent = ScriptedFailures(inner: local, failures: [.failure, .transient])
            let noRetry = RetryingPackStorage(permanent, sleep: { _ in Issue.record("a permanent failure was retried") })
            let first = #expect(throws: StoreError.self) { _ = try noRetry.list() }
            #expect(first?.code == .failure && permanent.callCount == 1)

            var policy = RetryPolicy()
            policy.attempts = 4
            let always = ScriptedFailures(inner: local, failures: Array(repeating: .transient, count: 10))
            let bounded = RetryingPackStorage(always, policy: policy, sleep: { _ in })
            let gaveUp = #expect(throws: StoreError.self) { _ = try bounded.list() }
            #expect(always.callCount == 4)
            #expect(gaveUp?.code == .transient && gaveUp?.cause == .http(503))
            #expect(gaveUp?.message.contains("gave up after 4 tries") == true, "\(String(describing: gaveUp))")

            policy.attempts = 100
            policy.totalTime = 0.05
            let slow = ScriptedFailures(inner: local, failures: Array(repeating: .transient, count: 100))
            let timed = RetryingPackStorage(slow, policy: policy, sleep: { usleep(UInt32($0 * 1_000_000)) })
            let started = Date()
            #expect(throws: StoreError.self) { _ = try timed.list() }
            #expect(Date().timeIntervalSince(started) < 1 && slow.callCount < 100, "\(slow.callCount) tries")
        }
    }

    @Test("a delete whose first answer was lost (it worked, then failed) counts as done on the retry")
    func deleteIsIdempotent() throws {
        try withTemporaryDirectory("retry-delete") { dir in
            let local = try makeStorage(dir)
            let writer = PackWriter(storage: local)
            try writer.append(encode(payloads[1]))
            let sealed = try writer.seal()
            let lostAnswer = DeleteThenFail(inner: local)
            try RetryingPackStorage(lostAnswer, sleep: { _ in }).delete(sealed.pack)
            #expect(try local.list().isEmpty)
        }
    }
}

/// Deletes for real, then reports a transient failure: an answer lost on the way back.
private final class DeleteThenFail: PackStorage, @unchecked Sendable {
    let inner: LocalPackStorage
    private let lock = NSLock()
    private var failed = false  // Protected by `lock`.
    init(inner: LocalPackStorage) { self.inner = inner }
    var location: String { inner.location }
    var scratchDirectory: String { inner.scratchDirectory }
    func put(_ id: ContentHash, from source: PackSource) throws { try inner.put(id, from: source) }
    func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try inner.read(id, at: offset, into: buffer)
    }
    func size(of id: ContentHash) throws -> UInt64? { try inner.size(of: id) }
    func delete(_ id: ContentHash) throws {
        if try inner.size(of: id) == nil { throw StoreError(.notFound, "pack \(id.short) is missing") }
        try inner.delete(id)
        let first = lock.withLock { () -> Bool in defer { failed = true }; return !failed }
        if first { throw StoreError(.transient, "connection reset after the delete") }
    }
    func list() throws -> [StoredPack] { try inner.list() }
    func describe(_ id: ContentHash) -> String { inner.describe(id) }
}
