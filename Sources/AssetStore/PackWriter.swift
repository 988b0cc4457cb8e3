/// Builds one pack: appends encoded chunk records to a staging file, then seals it under its SHA-256.
///
/// Used by one thread at a time (it may be handed whole to another thread, e.g. to be sealed there: hence
/// `@unchecked Sendable`). After any failed write the writer refuses further use (the staging file is in an
/// unknown state); the caller starts a new one.
public final class PackWriter: @unchecked Sendable {
    public static let magic: [UInt8] = Array("ASFPACK1".utf8)
    public static let footerMagic: [UInt8] = Array("ASFPIDX1".utf8)
    public static let headerSize = 16
    public static let footerEntrySize = 88
    public static let trailerSize = 16
    public static let formatVersion: UInt32 = 1
    static let header: [UInt8] = {
        var h = magic
        h.appendLE(formatVersion)
        h.appendLE(UInt32(0))
        return h
    }()

    private let storage: PackStorage
    private var staging: StagingPack?
    private var entries: [(ChunkRecord.Encoded, UInt64)] = []
    private var buffer: [UInt8] = []
    private var fileOffset: UInt64 = 0
    private var failed = false
    /// Size at which `isFull` turns true: packs stay in the tens of MiB.
    public let targetSize: Int

    public init(storage: PackStorage, targetSize: Int = 32 << 20) {
        self.storage = storage
        self.targetSize = targetSize
    }

    deinit {
        if let staging {
            staging.descriptor.close()
            _ = unlinkPath(staging.path)
        }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var isFull: Bool { Int(fileOffset) + buffer.count >= targetSize }
    public var chunkCount: Int { entries.count }

    /// Appends one record; returns its offset in the pack.
    @discardableResult
    public func append(_ chunk: ChunkRecord.Encoded) throws -> UInt64 {
        guard !failed else { throw StoreError(.invalidArgument, "pack writer used after a failed write") }
        if staging == nil {
            staging = try storage.makeStagingPack()
            try write(Self.header)
        }
        let offset = fileOffset + UInt64(buffer.count)
        try write(chunk.bytes)
        entries.append((chunk, offset))
        return offset
    }

    private func write(_ bytes: [UInt8]) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 4 << 20 { try flush() }
    }

    private func flush() throws {
        guard let staging, !buffer.isEmpty else { return }
        do {
            try buffer.withUnsafeBytes { try staging.descriptor.pwrite($0, at: fileOffset) }
        } catch {
            failed = true
            throw error
        }
        fileOffset += UInt64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the footer index, fsyncs, and publishes the pack under its content hash. Returns where each chunk
    /// landed; only after this returns may the catalog refer to them.
    public func seal() throws -> (pack: ContentHash, size: UInt64, chunks: [ChunkLocation]) {
        guard !failed else { throw StoreError(.invalidArgument, "pack writer used after a failed write") }
        guard let staging else { throw StoreError(.invalidArgument, "sealing an empty pack") }
        var footer = [UInt8]()
        footer.reserveCapacity(entries.count * Self.footerEntrySize + Self.trailerSize)
        for (chunk, offset) in entries {
            footer.append(contentsOf: chunk.id.bytes)
            footer.appendLE(offset)
            footer.appendLE(UInt32(chunk.bytes.count))
            footer.appendLE(UInt32(chunk.rawLength))
            footer.append(contentsOf: chunk.tableHash.bytes)
            footer.append(chunk.codec.rawValue)
            footer.append(contentsOf: [UInt8](repeating: 0, count: 7))
        }
        footer.appendLE(UInt32(entries.count))
        footer.appendLE(Self.formatVersion)
        footer.append(contentsOf: Self.footerMagic)
        try write(footer)
        try flush()
        // The name is the SHA-256 of the header and the footer index. The index lists every chunk's id (the
        // SHA-256 of its plain bytes) and table hash (which covers every block's hash), so the name commits
        // to all content without a second pass over the pack's bytes on the import's serial path.
        var hasher = StreamingHasher()
        hasher.update(Self.header)
        hasher.update(footer)
        let id = hasher.finalize()
        // publish consumes the staging pack whether it succeeds or not (it closes the descriptor): forget it
        // first, so that deinit never closes that descriptor number a second time.
        self.staging = nil
        do {
            try storage.publish(staging, as: id)
        } catch {
            failed = true
            throw error
        }
        let size = fileOffset
        let chunks = entries.map { chunk, offset in
            ChunkLocation(id: chunk.id, pack: id, offset: offset, length: chunk.bytes.count,
                          rawLength: chunk.rawLength, codec: chunk.codec, tableHash: chunk.tableHash)
        }
        entries.removeAll()
        fileOffset = 0
        return (id, size, chunks)
    }
}

#if canImport(Glibc)
import Glibc
#endif
func unlinkPath(_ path: String) -> Int32 { unlink(path) }
