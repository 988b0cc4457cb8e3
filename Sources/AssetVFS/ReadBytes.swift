/// The bytes of one read, as slices of the buffers that hold them (cached chunks and blocks), in order.
///
/// A read of 1 MiB usually spans two or three chunks; handing the kernel the pieces (one gathered write to
/// /dev/fuse) instead of joining them saves a copy of every byte served.
public struct ReadBytes: Sendable {
    public private(set) var pieces: [ArraySlice<UInt8>] = []
    public private(set) var count = 0

    public init() {}

    public init(_ bytes: [UInt8]) { append(bytes[...]) }

    mutating func append(_ piece: ArraySlice<UInt8>) {
        guard !piece.isEmpty else { return }
        pieces.append(piece)
        count += piece.count
    }

    /// One contiguous array (for callers that need one: workspace files reading their base).
    public var joined: [UInt8] {
        if pieces.count == 1 { return Array(pieces[0]) }
        var out = [UInt8]()
        out.reserveCapacity(count)
        for piece in pieces { out.append(contentsOf: piece) }
        return out
    }
}
