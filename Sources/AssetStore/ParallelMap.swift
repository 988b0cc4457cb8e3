import Dispatch

/// Carries a value into `concurrentPerform`'s @Sendable closure. Safe only where the caller guarantees that
/// concurrent iterations touch disjoint state, as `parallelMap` does.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
}

/// Runs `transform` for 0..<count on all cores and returns the results in order. `transform` must be safe to
/// call concurrently (it reads shared inputs and returns a fresh value).
public func parallelMap<T>(count: Int, _ transform: (Int) -> T) -> [T] {
    guard count > 0 else { return [] }
    if count == 1 { return [transform(0)] }
    let out = UnsafeMutablePointer<T?>.allocate(capacity: count)
    out.initialize(repeating: nil, count: count)
    defer {
        out.deinitialize(count: count)
        out.deallocate()
    }
    withoutActuallyEscaping(transform) { body in
        let shared = UncheckedSendable(value: (body, out))
        DispatchQueue.concurrentPerform(iterations: count) { i in
            // Each iteration writes only its own slot.
            shared.value.1[i] = shared.value.0(i)
        }
    }
    return (0..<count).map { out[$0]! }
}
