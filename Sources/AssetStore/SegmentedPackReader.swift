import Dispatch

/// Reads a remote pack in large aligned pieces ("segments") for readers that go through its chunks in order:
/// a mount's read-ahead, `prefetch`, a walk over a directory's files.
///
/// Why: one ranged GET per chunk record (about 512 KiB) makes the object store do a request's whole work for
/// little data. AWS advises ranged GETs of 8-16 MB for throughput, and every GET is billed; SeaweedFS keeps an
/// uploaded object in 4 MiB pieces and reads a whole piece for any range that touches it, so a 512 KiB range
/// costs it the CPU of 4 MiB (measured on this machine's SeaweedFS: 32 ranges of 1 MiB took 4x the server CPU
/// of 8 aligned ranges of 4 MiB for the same bytes). Records of one import sit next to each other in a pack, so
/// the chunks a sequential reader needs next are mostly in the segment it is reading already.
///
/// Segments are held only while they are being read: one is dropped once a reader in order is past it, or
/// when `capacity` segments are held and it is the least recently used (at most `capacity` x `segmentSize`
/// bytes, beside the loads in flight). Bytes here are not verified; the
/// `ChunkReader` above proves each record against its hash, as it does for every read. Two readers that need
/// the same segment share one request. No library does this part (it is specific to pack records).
public final class SegmentedPackReader: @unchecked Sendable {
    public let storage: PackStorage
    public let segmentSize: Int
    /// Segments held at most, loads in flight aside.
    public let capacity: Int

    private struct Key: Hashable {
        let pack: ContentHash
        let index: UInt64
    }

    private final class Segment: @unchecked Sendable {
        let loaded = DispatchSemaphore(value: 0)
        // Written once by the loading thread before `loaded` is signalled; read by others only after waiting.
        var result: Result<[UInt8], Error>?
        // Protected by the reader's lock.
        var handedOut = 0
        var firstHandedOut = Int.max
        var lastUse: UInt64 = 0
        var done = false
    }

    private let lock = Lock()
    // Protected by `lock`.
    private var segments: [Key: Segment] = [:]
    private var tick: UInt64 = 0
    private var fetched = (requests: 0, bytes: 0)

    public init(storage: PackStorage, segmentSize: Int = 4 << 20, capacity: Int = 16) {
        precondition(segmentSize > 0 && capacity > 0)
        self.storage = storage
        self.segmentSize = segmentSize
        self.capacity = capacity
    }

    /// Segment requests made and bytes they returned, since this reader was made.
    public var fetchedFromStorage: (requests: Int, bytes: Int) { lock.withLock { fetched } }

    /// The most memory held segments take, loads in flight aside.
    public var budgetBytes: Int { capacity * segmentSize }

    /// Segments held now (for tests: the memory this costs stays bounded).
    public var held: Int { lock.withLock { segments.count } }

    /// Reads as `PackStorage.read` does: up to `buffer.count` bytes at `offset`, fewer only at the pack's end.
    public func read(_ id: ContentHash, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if buffer.count >= segmentSize { return try storage.read(id, at: offset, into: buffer) }
        var copied = 0
        while copied < buffer.count {
            let position = offset + UInt64(copied)
            let key = Key(pack: id, index: position / UInt64(segmentSize))
            let start = Int(position - key.index * UInt64(segmentSize))
            let bytes = try segment(key)
            guard start < bytes.count else { break }  // Past the pack's end.
            let n = min(buffer.count - copied, bytes.count - start)
            bytes.withUnsafeBytes { src in
                (buffer.baseAddress! + copied).copyMemory(from: src.baseAddress! + start, byteCount: n)
            }
            copied += n
            handedOut(key, from: start, count: n, of: bytes.count)
            if bytes.count < segmentSize { break }  // A short segment is the pack's last.
        }
        return copied
    }

    private func segment(_ key: Key) throws -> [UInt8] {
        let (segment, mine): (Segment, Bool) = lock.withLock {
            tick += 1
            if let held = segments[key] {
                held.lastUse = tick
                return (held, false)
            }
            let new = Segment()
            new.lastUse = tick
            segments[key] = new
            evictIfFull()
            return (new, true)
        }
        if mine {
            let result = Result {
                try uninitializedBytes(segmentSize) {
                    try storage.read(key.pack, at: key.index * UInt64(segmentSize), into: $0)
                }
            }
            segment.result = result
            lock.withLock {
                segment.done = true
                switch result {
                case .success(let bytes):
                    fetched.requests += 1
                    fetched.bytes += bytes.count
                    StoreMetrics.segmentFetches.increment()
                    StoreMetrics.segmentBytes.increment(by: bytes.count)
                case .failure:
                    // Not kept: the next reader asks again (its own retries and timeouts apply).
                    if segments[key] === segment { segments.removeValue(forKey: key) }
                }
            }
            segment.loaded.signal()
        } else {
            segment.loaded.wait()
            segment.loaded.signal()  // Let any other waiter through too.
        }
        return try segment.result!.get()
    }

    /// Drops a segment once every byte from the first one handed out to its end was handed out: a reader in
    /// order is past it (the pack's header, before the first record, is never asked for).
    private func handedOut(_ key: Key, from start: Int, count: Int, of length: Int) {
        lock.withLock {
            guard let segment = segments[key] else { return }
            segment.handedOut += count
            segment.firstHandedOut = min(segment.firstHandedOut, start)
            if segment.handedOut >= length - segment.firstHandedOut { segments.removeValue(forKey: key) }
        }
    }

    /// Drops the least recently used loaded segments while more than `capacity` are held. Loads in flight stay
    /// (their readers wait on them); a dropped segment's current readers keep their own reference.
    private func evictIfFull() {
        while segments.count > capacity {
            guard let victim = segments.filter({ $0.value.done }).min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
            segments.removeValue(forKey: victim.key)
        }
    }
}
