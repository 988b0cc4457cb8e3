/// Content-defined chunking limits, fixed per store when it is created (Documentation/Format.md).
public struct ChunkerParameters: Sendable, Equatable, Codable {
    public var minSize: Int
    public var averageSize: Int
    public var maxSize: Int

    /// Chosen from the chunker benchmark (Documentation/Format.md, "Chunk sizes").
    public static let `default` = ChunkerParameters(minSize: 128 << 10, averageSize: 512 << 10, maxSize: 2 << 20)

    public init(minSize: Int, averageSize: Int, maxSize: Int) {
        self.minSize = minSize
        self.averageSize = averageSize
        self.maxSize = maxSize
    }

    /// Nil when the sizes are usable; otherwise the rule they break.
    public var problem: String? {
        if minSize < 4096 { return "minimum chunk size must be at least 4 KiB" }
        if averageSize & (averageSize - 1) != 0 { return "average chunk size must be a power of two" }
        if !(minSize < averageSize && averageSize < maxSize) { return "chunk sizes must satisfy min < avg < max" }
        if maxSize > 64 << 20 { return "maximum chunk size must be at most 64 MiB" }
        return nil
    }
}
