import AssetStore
import Dispatch

/// A size-bounded LRU of verified plain bytes (whole chunks, single blocks, block tables), shared by all
/// open files.
///
/// Concurrency: `lock` guards only the map and the list; loads run outside it, so a miss by one reader never
/// stalls readers of other chunks. Two readers missing the same key share one load (the second waits for the
/// first's result only).
public final class ChunkCache: @unchecked Sendable {
    public enum Key: Hashable, Sendable {
        case chunk(ContentHash)
        case block(ContentHash, Int)
        case table(ContentHash)
    }

    public enum Value: @unchecked Sendable {
        /// Plain bytes; a slice so that an all-raw chunk can be kept in the buffer it was read into.
        case bytes(ArraySlice<UInt8>)
        case table([ChunkRecord.Block])

        var cost: Int {
            switch self {
            case .bytes(let b): return b.count + 64
            case .table(let t): return t.count * 80 + 64
            }
        }
    }

    private final class Slot {
        let key: Key
        var value: Value
        var newer: Slot?
        var older: Slot?
        init(key: Key, value: Value) {
            self.key = key
            self.value = value
        }
    }

    private final class Pending: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<Value, Error>?
    }

    public let capacity: Int
    private let lock = Lock()
    // Protected by `lock`: the map, the recency list (newest at `head`), the total cost, loads in flight.
    private var slots: [Key: Slot] = [:]
    private var head: Slot?
    private var tail: Slot?
    private var used = 0
    private var loading: [Key: Pending] = [:]
    private(set) var hits = 0
    private(set) var misses = 0

    public init(capacity: Int) {
        self.capacity = capacity
        VFSMetrics.memoryLimit.record(capacity)
    }

    public var usedBytes: Int { lock.withLock { used } }

    public func cached(_ key: Key) -> Value? {
        let value: Value? = lock.withLock {
            guard let slot = slots[key] else { return nil }
            touch(slot)
            hits += 1
            return slot.value
        }
        if value != nil { VFSMetrics.memoryHits.increment() }
        return value
    }

    public func contains(_ key: Key) -> Bool { lock.withLock { slots[key] != nil || loading[key] != nil } }

    /// The value for `key`, loading it with `load` (outside the lock) if needed. Errors are not cached.
    public func value(_ key: Key, load: () throws -> Value) throws -> Value {
        enum Step { case hit(Value), wait(Pending), mine(Pending) }
        let step: Step = lock.withLock {
            if let slot = slots[key] {
                touch(slot)
                hits += 1
                return .hit(slot.value)
            }
            misses += 1
            if let pending = loading[key] { return .wait(pending) }
            let pending = Pending()
            loading[key] = pending
            return .mine(pending)
        }
        switch step {
        case .hit(let v):
            VFSMetrics.memoryHits.increment()
            return v
        case .wait(let pending):
            VFSMetrics.memoryMisses.increment()
            pending.done.wait()
            pending.done.signal()  // Let any other waiter through too.
            return try pending.result!.get()
        case .mine(let pending):
            VFSMetrics.memoryMisses.increment()
            let result = Result { try load() }
            let bytes: Int = lock.withLock {
                loading.removeValue(forKey: key)
                if case .success(let v) = result { insert(key, v) }
                return used
            }
            VFSMetrics.memoryBytes.record(bytes)
            pending.result = result
            pending.done.signal()
            return try result.get()
        }
    }

    private func insert(_ key: Key, _ value: Value) {
        if let old = slots[key] {
            unlink(old)
            used -= old.value.cost
        }
        let slot = Slot(key: key, value: value)
        slots[key] = slot
        linkAtHead(slot)
        used += value.cost
        while used > capacity, let victim = tail, victim !== slot {
            unlink(victim)
            slots.removeValue(forKey: victim.key)
            used -= victim.value.cost
        }
    }

    private func touch(_ slot: Slot) {
        guard head !== slot else { return }
        unlink(slot)
        linkAtHead(slot)
    }

    private func linkAtHead(_ slot: Slot) {
        slot.older = head
        slot.newer = nil
        head?.newer = slot
        head = slot
        if tail == nil { tail = slot }
    }

    private func unlink(_ slot: Slot) {
        slot.newer?.older = slot.older
        slot.older?.newer = slot.newer
        if head === slot { head = slot.older }
        if tail === slot { tail = slot.newer }
        slot.newer = nil
        slot.older = nil
    }
}
