/// FastCDC-style content-defined chunker (gear rolling hash with normalised chunking).
///
/// Written by hand because no maintained Swift library offers content-defined chunking, and the cut points are
/// part of the store format: they must never change between releases.
public struct Chunker: Sendable {
    public let parameters: ChunkerParameters
    /// Mask with more bits, used before the average size: makes small chunks rarer.
    private let strictMask: UInt64
    /// Mask with fewer bits, used after the average size: makes large chunks rarer.
    private let looseMask: UInt64

    public init(parameters: ChunkerParameters = .default) {
        self.parameters = parameters
        let bits = parameters.averageSize.trailingZeroBitCount
        // The gear hash shifts left, so its high bits depend on the most bytes: take masks from the top.
        strictMask = Self.topBits(bits + 2)
        looseMask = Self.topBits(max(bits - 2, 1))
    }

    private static func topBits(_ n: Int) -> UInt64 { n >= 64 ? ~0 : ~(~UInt64(0) >> UInt64(n)) }

    /// Length of the next chunk at the start of `buffer`. The caller passes at least `maxSize` bytes unless the
    /// buffer holds the end of the stream; the result is then in `1...buffer.count`.
    public func cutPoint(_ buffer: UnsafeRawBufferPointer) -> Int {
        var end = buffer.count
        if end <= parameters.minSize { return end }
        if end > parameters.maxSize { end = parameters.maxSize }
        let normal = min(parameters.averageSize, end)
        let bytes = buffer.bindMemory(to: UInt8.self)
        return GearTable.table.withUnsafeBufferPointer { gear -> Int in
            var hash: UInt64 = 0
            var i = parameters.minSize
            while i < normal {
                hash = (hash << 1) &+ gear[Int(bytes[i])]
                if hash & strictMask == 0 { return i + 1 }
                i += 1
            }
            while i < end {
                hash = (hash << 1) &+ gear[Int(bytes[i])]
                if hash & looseMask == 0 { return i + 1 }
                i += 1
            }
            return end
        }
    }

    /// All chunk lengths of a complete in-memory buffer (tests and benchmarks).
    public func chunkLengths(_ buffer: UnsafeRawBufferPointer) -> [Int] {
        var out = [Int]()
        var offset = 0
        while offset < buffer.count {
            let n = cutPoint(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
            out.append(n)
            offset += n
        }
        return out
    }
}

/// 256 pseudo-random 64-bit values, generated from a fixed seed with SplitMix64 so the table is reproducible
/// from this file alone. Changing the seed changes every cut point: it is part of format version 1.
enum GearTable {
    static let table: [UInt64] = {
        var state: UInt64 = 0x6173_7365_7466_7331  // "assetfs1"
        return (0..<256).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }()
}
