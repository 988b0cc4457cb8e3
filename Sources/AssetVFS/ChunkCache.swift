import AssetStore
import Dispatch

/// A size-bounded LRU of verified plain bytes (whole chunks, single blocks, block tables), shared by all
/// open files.
///
/// What it must hold (issue 15): the kernel keeps every page it has read of a version file (keep_cache), so
/// bytes already served are worth little here. The cache exists for chunks fetched ahead and not yet read
/// (`prefetch`, bounded by `prefetchLimit`), chunks a reader is part way through, verified blocks and block
/// tables of random reads. A chunk read to its end by a sequential reader is moved to the cold end (`consumed`):
/// kept while there is room, dropped first when there is none.
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
        /// Bytes still counted in `prefetchBytes`: loaded by a prefetch and not yet asked for by a reader.
        var unreadPrefetch = 0
        /// `insertedBytes` when the prefetch put it here.
        var prefetchedAt = 0
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
    /// At most this many bytes are fetched ahead and not yet read (a quarter of the capacity): with many
    /// readers at once, read-ahead waits rather than evicting what another reader is about to read.
    public var prefetchLimit: Int { capacity / 4 }
    /// Block tables are small (about 700 bytes for a 512 KiB chunk) and each saves a read on every random read of
    /// its chunk: up to an eighth of the cache is kept for them however many blocks pass through.
    public var tableBudget: Int { capacity / 8 }
    private let lock = Lock()
    // Protected by `lock`: the map, the recency list (newest at `head`), the total cost, loads in flight.
    private var slots: [Key: Slot] = [:]
    private var head: Slot?
    private var tail: Slot?
    private var used = 0
    private var loading: [Key: Pending] = [:]
    private(set) var hits = 0
    private(set) var misses = 0
    /// Block tables held: up to `tableBudget` of them outlive the LRU order (see `insert`).
    private var tableBytes = 0
    /// Bytes of prefetches queued, loading, or loaded and not yet read.
    private var prefetchBytes = 0
    /// Bytes inserted since the cache was made: a prefetched value older than a cache's worth of inserts is
    /// stale (see `reclaimStalePrefetches`).
    private var insertedBytes = 0
    /// Prefetched values in the order they arrived (some since read or evicted), from `unreadHead` on.
    private var unreadOrder: [Key] = []
    private var unreadHead = 0
    /// When `unreadOrder` holds more entries than this it is cleared of those read or evicted since (twice the
    /// entries still unread after the last clearing, at least 1,024): a mount whose read-ahead never runs out
    /// of budget never calls `reclaimStalePrefetches`, and its list must not grow with every chunk it reads.
    private var unreadOrderLimit = 1024

    /// Entries in the read-ahead order list (for tests: it stays bounded).
    var unreadOrderCount: Int { lock.withLock { unreadOrder.count - unreadHead } }
    /// Prefetched chunks evicted before any reader asked for them (read-ahead that was wasted).
    private(set) var prefetchWasted = 0

    public init(capacity: Int) {
        self.capacity = capacity
        VFSMetrics.memoryLimit.record(capacity)
        VFSMetrics.prefetchWasted.increment(by: 0)  // Exported from the start, as 0.
    }

    public var usedBytes: Int { lock.withLock { used } }

    public func cached(_ key: Key) -> Value? {
        let value: Value? = lock.withLock {
            guard let slot = slots[key] else { return nil }
            touch(slot)
            noteRead(slot)
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
                noteRead(slot)
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
            let value = try pending.result!.get()
            lock.withLock { if let slot = slots[key] { noteRead(slot) } }  // A prefetch this reader waited for.
            return value
        case .mine(let pending):
            VFSMetrics.memoryMisses.increment()
            let result = Result { try load() }
            finish(key, result, pending, prefetched: nil)
            return try result.get()
        }
    }

    /// Ends a load this caller registered in `loading`: keeps a value (as an unread prefetch holding `prefetched`
    /// bytes of read-ahead, or as read), gives back the reservation of a failed prefetch, and wakes the waiters.
    private func finish(_ key: Key, _ result: Result<Value, Error>, _ pending: Pending, prefetched reserved: Int?) {
        let (bytes, wasted): (Int, Int) = lock.withLock {
            loading.removeValue(forKey: key)
            let before = prefetchWasted
            switch (result, reserved) {
            case (.success(let v), let reserved?):
                let slot = insert(key, v)
                slot.unreadPrefetch = reserved
                slot.prefetchedAt = insertedBytes
                noteUnread(key)
            case (.success(let v), nil): insert(key, v)
            case (.failure, let reserved?): prefetchBytes -= reserved
            case (.failure, nil): break
            }
            return (used, prefetchWasted - before)
        }
        VFSMetrics.memoryBytes.record(bytes)
        if wasted > 0 { VFSMetrics.prefetchWasted.increment(by: wasted) }
        pending.result = result
        pending.done.signal()
    }

    /// Reserves `bytes` of read-ahead: false (nothing reserved) when the bytes already fetched ahead and not
    /// yet read would pass `limit`. A successful reservation must end in `prefetch` or `cancelPrefetch`.
    public func reservePrefetch(_ bytes: Int, limit: Int) -> Bool {
        lock.withLock {
            if prefetchBytes + bytes > limit { reclaimStalePrefetches() }
            guard prefetchBytes + bytes <= limit else { return false }
            prefetchBytes += bytes
            return true
        }
    }

    /// Gives back the reservations of prefetched values that no reader asked for while a whole cache's worth of
    /// other values came in (a reader that stopped early, a directory walk that looked files up without reading
    /// them): counted as wasted and moved to the cold end. Without this, chunks that sequential readers finish
    /// (sent to the cold end first) would keep such values out of eviction, and their reservations would hold
    /// the read-ahead budget for good. Called under `lock`.
    private func reclaimStalePrefetches() {
        while unreadHead < unreadOrder.count {
            let key = unreadOrder[unreadHead]
            guard let slot = slots[key], slot.unreadPrefetch > 0 else {
                unreadHead += 1  // Read or evicted since: nothing to give back.
                continue
            }
            guard insertedBytes - slot.prefetchedAt > capacity else { break }
            unreadHead += 1
            dropUnread(slot)
            moveToTail(slot)
        }
    }

    /// Records a prefetched value in `unreadOrder`, which is cleared of entries read or evicted since whenever it
    /// passes `unreadOrderLimit`. Called under `lock`.
    private func noteUnread(_ key: Key) {
        unreadOrder.append(key)
        guard unreadOrder.count > unreadOrderLimit else { return }  // Entries before `unreadHead` count too.
        unreadOrder = unreadOrder[unreadHead...].filter { (slots[$0]?.unreadPrefetch ?? 0) > 0 }
        unreadHead = 0
        unreadOrderLimit = max(1024, 2 * unreadOrder.count)
    }

    /// A prefetched value no reader asked for: counted as wasted, its reservation given back. Under `lock`.
    private func dropUnread(_ slot: Slot) {
        guard slot.unreadPrefetch > 0 else { return }
        prefetchWasted += 1
        noteRead(slot)
    }

    /// Gives back a reservation that was not used.
    public func cancelPrefetch(_ bytes: Int) { lock.withLock { prefetchBytes -= bytes } }

    /// Loads `key` ahead of a reader, on a reservation of `reserved` bytes (see `reservePrefetch`), which is
    /// held until a reader asks for the value or it is evicted. Errors are dropped: the reader that needs the
    /// value loads it again and reports the error.
    public func prefetch(_ key: Key, reserved: Int, load: () throws -> Value) {
        let mine: Pending? = lock.withLock {
            guard slots[key] == nil, loading[key] == nil else { return nil }
            let pending = Pending()
            loading[key] = pending
            return pending
        }
        guard let pending = mine else { return cancelPrefetch(reserved) }
        finish(key, Result { try load() }, pending, prefetched: reserved)
    }

    /// A reader has read `key` to its end and will not ask again (the kernel keeps the pages): it goes to the
    /// cold end, first to be evicted.
    public func consumed(_ key: Key) {
        lock.withLock {
            guard let slot = slots[key] else { return }
            moveToTail(slot)
        }
    }

    private func moveToTail(_ slot: Slot) {
        guard tail !== slot else { return }
        unlink(slot)
        slot.newer = tail
        tail?.older = slot
        tail = slot
        if head == nil { head = slot }
    }

    /// Bytes fetched ahead and not yet read, and prefetched chunks evicted unread (for tests and the stats).
    public var prefetchFigures: (pending: Int, wasted: Int) { lock.withLock { (prefetchBytes, prefetchWasted) } }

    private func noteRead(_ slot: Slot) {
        guard slot.unreadPrefetch > 0 else { return }
        prefetchBytes -= slot.unreadPrefetch
        slot.unreadPrefetch = 0
    }

    @discardableResult
    private func insert(_ key: Key, _ value: Value) -> Slot {
        if let old = slots[key] {
            unlink(old)
            used -= old.value.cost
            if case .table = old.value { tableBytes -= old.value.cost }
            noteRead(old)
        }
        let slot = Slot(key: key, value: value)
        slots[key] = slot
        linkAtHead(slot)
        used += value.cost
        insertedBytes += value.cost
        if case .table = value { tableBytes += value.cost }
        var spared = 0
        while used > capacity, let victim = tail, victim !== slot {
            // A table within the tables' budget gets a second turn at the head instead of going (at most one
            // turn per slot per insert, so this ends).
            if case .table = victim.value, tableBytes <= tableBudget, spared < slots.count {
                spared += 1
                unlink(victim)
                linkAtHead(victim)
                continue
            }
            unlink(victim)
            slots.removeValue(forKey: victim.key)
            used -= victim.value.cost
            if case .table = victim.value { tableBytes -= victim.value.cost }
            dropUnread(victim)
        }
        return slot
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
