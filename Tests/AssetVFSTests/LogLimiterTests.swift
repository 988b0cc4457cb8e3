@testable import AssetVFS
import Foundation
import Testing

@Suite("Rate-limited failure logs")
struct LogLimiterTests {
    @Test("at most `burst` lines per window; the next line written says how many were left out")
    func limits() throws {
        let limiter = LogLimiter(burst: 3, window: 0.5)
        let first = (0..<10).map { _ in limiter.admit() }
        #expect(first.map(\.write) == [true, true, true] + Array(repeating: false, count: 7))
        #expect(first.prefix(3).allSatisfy { $0.suppressedBefore == 0 })
        Thread.sleep(forTimeInterval: 0.6)
        let next = limiter.admit()
        #expect(next.write && next.suppressedBefore == 7, "\(next)")
        #expect(limiter.admit().suppressedBefore == 0)
    }
}
