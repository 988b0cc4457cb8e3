import Crypto

/// A SHA-256 digest naming a chunk, a file, a tree or a pack: always the hash of the plain bytes it names.
public struct ContentHash: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 32

    // Stored as four words so the type stays small, hashable and free of heap allocation.
    public let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// 32 bytes, most significant first. Catalog rows and pack indexes decode hashes by the thousand: four
    /// word loads, no allocation.
    public init(bytes raw: UnsafeRawBufferPointer) {
        precondition(raw.count == Self.byteCount, "a content hash is 32 bytes")
        w0 = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init<C: Collection>(bytes: C) where C.Element == UInt8 {
        if let hash = bytes.withContiguousStorageIfAvailable({ ContentHash(bytes: UnsafeRawBufferPointer($0)) }) {
            self = hash
            return
        }
        self = Array(bytes).withUnsafeBytes { ContentHash(bytes: $0) }
    }

    /// Parses 64 hex digits; nil for anything else.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(32)
        var i = 0
        while i < 64 {
            guard let hi = Self.nibble(utf8[i]), let lo = Self.nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self.init(bytes: out)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.byteCount) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for (i, w) in [w0, w1, w2, w3].enumerated() { raw.storeBytes(of: w.bigEndian, toByteOffset: i * 8, as: UInt64.self) }
            count = Self.byteCount
        }
    }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }
    public var short: String { String(hex.prefix(12)) }

    public static func < (a: ContentHash, b: ContentHash) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }

    public static func of(_ buffer: UnsafeRawBufferPointer) -> ContentHash {
        ContentHash(digest: SHA256.hash(data: buffer))
    }

    public static func of(_ bytes: [UInt8]) -> ContentHash {
        bytes.withUnsafeBytes { of($0) }
    }

    init(digest: SHA256.Digest) {
        self.init(bytes: Array(digest))
    }
}

/// Incremental SHA-256 for streams (whole files, whole packs).
public struct StreamingHasher {
    private var sha = SHA256()
    public init() {}
    public mutating func update(_ buffer: UnsafeRawBufferPointer) { sha.update(bufferPointer: buffer) }
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { sha.update(bufferPointer: $0) } }
    public func finalize() -> ContentHash { ContentHash(digest: sha.finalize()) }
}
