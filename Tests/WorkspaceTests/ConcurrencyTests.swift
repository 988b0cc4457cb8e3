import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Workspace concurrency")
struct ConcurrencyTests {
    /// Several threads write at once: each its own file, plus disjoint regions of one shared base file.
    @Test("concurrent writers in one workspace: every byte lands where it was written")
    func concurrentWriters() throws {
        let fx = try WSFixture("concurrent")
        defer { fx.close() }
        try buildSmallBase(fx.src)
        let v = try fx.importVersion()
        try fx.mount()
        let ws = try fx.createWorkspace("ws", from: v)
        let shared = ws + "/big.bin"
        let threads = 4
        let region = 600_000  // each thread owns [t * region, (t + 1) * region) of big.bin
        var sharedBytes = try readAll(fx.src + "/big.bin")
        let failures = Mutex<[String]>([])
        // Precompute every thread's writes so the expected content is known.
        struct Write { let file: Int; let offset: Int; let bytes: [UInt8] }
        var plans: [[Write]] = []
        var own: [[UInt8]] = Array(repeating: [], count: threads)
        for t in 0..<threads {
            var g = SplitMix64(seed: UInt64(1_000 + t))
            var plan: [Write] = []
            for _ in 0..<120 {
                let length = Int.random(in: 1...40_000, using: &g)
                if Bool.random(using: &g) {
                    let offset = t * region + Int.random(in: 0...(region - length), using: &g)
                    let bytes = randomBytes(length, using: &g)
                    plan.append(Write(file: -1, offset: offset, bytes: bytes))
                    sharedBytes.replaceSubrange(offset..<(offset + length), with: bytes)
                } else {
                    let offset = Int.random(in: 0...500_000, using: &g)
                    let bytes = randomBytes(length, using: &g)
                    plan.append(Write(file: t, offset: offset, bytes: bytes))
                    if own[t].count < offset + length { own[t] += [UInt8](repeating: 0, count: offset + length - own[t].count) }
                    own[t].replaceSubrange(offset..<(offset + length), with: bytes)
                }
            }
            plans.append(plan)
        }
        let immutablePlans = plans
        fx.io("concurrent writes", seconds: 60) {
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let fdShared = Glibc.open(shared, O_RDWR | O_CLOEXEC)
                let fdOwn = Glibc.open("\(ws)/own-\(t).bin", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
                defer {
                    if fdShared >= 0 { Glibc.close(fdShared) }
                    if fdOwn >= 0 { Glibc.close(fdOwn) }
                }
                guard fdShared >= 0, fdOwn >= 0 else {
                    failures.withLock { $0.append("thread \(t): open failed: \(errnoName(errno))") }
                    return
                }
                for (i, w) in immutablePlans[t].enumerated() {
                    let fd = w.file < 0 ? fdShared : fdOwn
                    let n = pwriteFully(fd, w.bytes, offset: w.offset)
                    if n != w.bytes.count {
                        failures.withLock { $0.append("thread \(t) write \(i): pwrite \(w.bytes.count)B @\(w.offset) = \(n < 0 ? errnoName(errno) : "\(n)")") }
                        return
                    }
                    if i % 40 == 39 { _ = fsync(fd) }
                }
            }
        }
        for f in failures.withLock({ $0 }) { Issue.record(Comment(rawValue: f)) }
        try fx.io("read back") {
            let got = try readAll(shared)
            #expect(sameBytes(got, sharedBytes), "big.bin after concurrent disjoint writes: \(firstDifference(got, sharedBytes))")
            for t in 0..<threads {
                let mine = try readAll("\(ws)/own-\(t).bin")
                #expect(sameBytes(mine, own[t]), "own-\(t).bin: \(firstDifference(mine, own[t]))")
            }
        }
        let n = try fx.commitOK("data/ws")
        let exported = try fx.export("data@v\(n)")
        #expect(sameBytes(try readAll(exported + "/big.bin"), sharedBytes), "big.bin in the committed version")
        for t in 0..<threads {
            #expect(sameBytes(try readAll("\(exported)/own-\(t).bin"), own[t]), "own-\(t).bin in the committed version")
        }
    }
}

/// A minimal lock-protected value (Synchronization's Mutex needs newer platforms in some configurations).
final class Mutex<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
