/// Reads the footer index of a pack: the way to rebuild or cross-check the chunk index from packs alone.
public enum PackIndexReader {
    public static func read(_ id: ContentHash, from storage: PackStorage) throws -> [ChunkLocation] {
        guard let size = try storage.size(of: id) else {
            throw StoreError(.notFound, "pack \(storage.describe(id)) is missing")
        }
        let trailerSize = UInt64(PackWriter.trailerSize)
        guard size >= UInt64(PackWriter.headerSize) + trailerSize else {
            throw StoreError.corrupt("pack \(storage.describe(id)) is truncated")
        }
        var trailer = [UInt8](repeating: 0, count: PackWriter.trailerSize)
        _ = try trailer.withUnsafeMutableBytes { try storage.read(id, at: size - trailerSize, into: $0) }
        guard Array(trailer[8..<16]) == PackWriter.footerMagic else {
            throw StoreError.corrupt("pack \(storage.describe(id)) has no footer index (truncated or damaged)")
        }
        let count = UInt64(trailer.loadLE(UInt32.self, at: 0))
        let footerLength = count * UInt64(PackWriter.footerEntrySize)
        guard footerLength + trailerSize + UInt64(PackWriter.headerSize) <= size else {
            throw StoreError.corrupt("pack \(storage.describe(id)) footer count is impossible")
        }
        var footer = [UInt8](repeating: 0, count: Int(footerLength))
        _ = try footer.withUnsafeMutableBytes { try storage.read(id, at: size - trailerSize - footerLength, into: $0) }
        return try footer.withUnsafeBytes { raw in
            try (0..<Int(count)).map { i in
                let e = i * PackWriter.footerEntrySize
                let chunkID = ContentHash(bytes: UnsafeRawBufferPointer(rebasing: raw[e..<(e + 32)]))
                let offset = raw.loadLE(UInt64.self, at: e + 32)
                let length = Int(raw.loadLE(UInt32.self, at: e + 40))
                let rawLength = Int(raw.loadLE(UInt32.self, at: e + 44))
                let table = ContentHash(bytes: UnsafeRawBufferPointer(rebasing: raw[(e + 48)..<(e + 80)]))
                // Overflow-safe bounds check: a damaged offset near UInt64.max must throw, not trap.
                guard let codec = ChunkRecord.CodecSummary(rawValue: raw[e + 80]),
                    UInt64(length) <= size, offset <= size - UInt64(length)
                else { throw StoreError.corrupt("pack \(storage.describe(id)) footer entry \(i) is invalid") }
                return ChunkLocation(id: chunkID, pack: id, offset: offset, length: length, rawLength: rawLength,
                                     codec: codec, tableHash: table)
            }
        }
    }
}
