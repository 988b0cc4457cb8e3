/// SplitMix64: the generator of the mount, workspace and reliability tests' data and random choices (their
/// `randomBytes(_:seed:)` is `SplitMix64.bytes`; the unit tests' `randomBytes` uses `TestRandom`, other data).
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` reproducible, incompressible bytes for `seed`.
    public static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var g = SplitMix64(seed: seed)
        return randomBytes(count, using: &g)
    }
}

/// Compressible CSV text of about `count` bytes (zstd blocks, not raw).
public func csvBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SplitMix64(seed: seed)
    var out = Array("id,label,score,split\n".utf8)
    out.reserveCapacity(count + 64)
    var i = 0
    let labels = ["cat", "dog", "bird", "fish", "horse", "frog"]
    while out.count < count {
        let r = g.next()
        out += Array("\(i),\(labels[Int(r % 6)]),0.\(r % 100_000),\(r % 10 == 0 ? "test" : "train")\n".utf8)
        i += 1
    }
    return out
}
