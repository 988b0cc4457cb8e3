import Foundation

/// Long variants (50 kills per operation, bigger trees, longer soak) run only with ASSETFS_LONG=1.
enum Mode {
    static let long: Bool = ProcessInfo.processInfo.environment["ASSETFS_LONG"] == "1"
    /// Kills per operation in the crash tests.
    static var kills: Int { long ? 50 : 10 }
    /// Seed for everything random; printed in the report so a failing run can be repeated with ASSETFS_SEED.
    static let seed: UInt64 = {
        if let s = ProcessInfo.processInfo.environment["ASSETFS_SEED"], let v = UInt64(s) { return v }
        var g = SystemRandomNumberGenerator()
        return g.next() % 1_000_000_007
    }()
}
