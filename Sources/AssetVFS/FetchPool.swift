import AssetStore
import Foundation

/// Threads that run a mount's read-ahead fetches, each of which mostly waits on a request to the object store
/// or a read of the disk cache.
///
/// Why not Dispatch's global queue: on Linux its pool is as wide as the machine has cores and does not grow
/// when its threads block, so on a 2-core machine at most two read-ahead fetches were in flight however far
/// ahead the mount asked. Jobs start in the order they were asked for (a sequential reader's next chunk first).
final class FetchPool: @unchecked Sendable {
    let width: Int
    private let lock = Lock()
    private let ready = DispatchSemaphore(value: 0)
    // Protected by `lock`.
    private var jobs: [() -> Void] = []
    private var head = 0
    private var started = 0

    init(width: Int) { self.width = max(1, width) }

    func run(_ job: @escaping () -> Void) {
        let startThread: Bool = lock.withLock {
            jobs.append(job)
            guard started < width else { return false }
            started += 1
            return true
        }
        if startThread {
            let thread = Thread { [self] in work() }
            thread.name = "assetfs-fetch"
            thread.start()
        }
        ready.signal()
    }

    private func work() {
        while true {
            ready.wait()
            let job: (() -> Void)? = lock.withLock {
                guard head < jobs.count else { return nil }
                let next = jobs[head]
                head += 1
                if head >= 1024 {  // Drop the jobs already taken, now and then.
                    jobs.removeFirst(head)
                    head = 0
                }
                return next
            }
            job?()
        }
    }
}
