/// SplitMix64: tiny and fully specified, so the data set is byte-identical on every machine and every run
/// (Foundation's generators are neither seedable nor stable across platforms).
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// One independent stream per (kind, version, index): any file can be regenerated without replaying others.
    init(_ kind: StreamKind, version: Int, index: Int) {
        var s: UInt64 = 0x6173_7365_7462_656E  // "assetben"
        for part in [UInt64(kind.rawValue), UInt64(version), UInt64(index)] {
            s = Self.mix(s ^ part &+ 0x9E37_79B9_7F4A_7C15)
        }
        state = s
    }

    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in 0..<n (modulo bias is irrelevant for test data).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    mutating func inRange(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.upperBound - r.lowerBound + 1) }

    /// k distinct values of 0..<n, sorted.
    mutating func sample(_ k: Int, from n: Int) -> [Int] {
        var pool = Array(0..<n)
        let k = min(k, n)
        for i in 0..<k { pool.swapAt(i, i + below(n - i)) }
        return pool[0..<k].sorted()
    }

    /// Fills with uniform floats in [-amplitude, amplitude): random mantissas, so incompressible like real weights.
    mutating func fill(_ out: UnsafeMutableBufferPointer<Float>, amplitude: Float) {
        let unit = amplitude / Float(1 << 23)
        var i = 0
        while i < out.count {
            let r = next()
            out[i] = Float(Int32(truncatingIfNeeded: r) >> 8) * unit
            if i + 1 < out.count { out[i + 1] = Float(Int32(truncatingIfNeeded: r >> 32) >> 8) * unit }
            i += 2
        }
    }
}

/// Separates the random streams of the different file kinds.
enum StreamKind: UInt64 {
    case shard = 1, shardEdit, array, meta, tensor, plan
}
