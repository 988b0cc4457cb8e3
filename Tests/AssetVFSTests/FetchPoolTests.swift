@testable import AssetVFS
import Foundation
import Testing

@Suite("FetchPool: read-ahead threads")
struct FetchPoolTests {
    @Test("blocking jobs run side by side up to the pool's width, beyond the machine's core count")
    func width() {
        let pool = FetchPool(width: 6)
        let inFlight = Gauge()
        let release = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for _ in 0..<6 {
            done.enter()
            pool.run {
                inFlight.add(1)
                release.wait()  // blocks like a request to the object store
                inFlight.add(-1)
                done.leave()
            }
        }
        let deadline = Date().addingTimeInterval(5)
        while inFlight.peak < 6 && Date() < deadline { usleep(1_000) }
        #expect(inFlight.peak == 6, "only \(inFlight.peak) jobs ran at once")
        for _ in 0..<6 { release.signal() }
        #expect(done.wait(timeout: .now() + 5) == .success)
    }

    @Test("jobs start in the order they were asked for, and every one runs")
    func order() {
        let pool = FetchPool(width: 1)
        let seen = Gauge()
        let done = DispatchGroup()
        for i in 0..<2000 {
            done.enter()
            pool.run {
                seen.append(i)
                done.leave()
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(seen.values == Array(0..<2000))
    }
}

private final class Gauge: @unchecked Sendable {
    private let lock = NSLock()
    private var current = 0, highest = 0
    private var list: [Int] = []
    func add(_ n: Int) { lock.withLock { current += n; highest = max(highest, current) } }
    func append(_ v: Int) { lock.withLock { list.append(v) } }
    var peak: Int { lock.withLock { highest } }
    var values: [Int] { lock.withLock { list } }
}
