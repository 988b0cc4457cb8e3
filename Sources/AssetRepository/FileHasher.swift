import AssetStore
import Dispatch

/// Computes whole-file SHA-256s on their own thread, so the reader thread only reads and chunks.
///
/// Chunks arrive in file order on a serial queue. Queued bytes are bounded so a slow hasher throttles the
/// reader instead of buffering the file in memory.
final class FileHasher: @unchecked Sendable {
    let queue = DispatchQueue(label: "assetfs.import.filehash")
    private let budget = DispatchSemaphore(value: 32)  // chunks queued at most

    func submit(_ work: @escaping @Sendable () -> Void) {
        budget.wait()
        queue.async {
            work()
            self.budget.signal()
        }
    }

    /// Waits until every queued update and finish has run.
    func drain() { queue.sync {} }
}

/// The running hash of one file; touched only on `FileHasher.queue`.
final class FileHashTask: @unchecked Sendable {
    private var state = StreamingHasher()
    private let file: FileBuild
    private let hasher: FileHasher

    init(file: FileBuild, hasher: FileHasher) {
        self.file = file
        self.hasher = hasher
    }

    func update(_ bytes: [UInt8]) { update(bytes[...]) }

    func update(_ bytes: ArraySlice<UInt8>) {
        hasher.submit { bytes.withUnsafeBytes { self.state.update($0) } }
    }

    /// Publishes the file's hash; until then the file's `readyHash` is nil and its catalog row waits.
    func finish() {
        hasher.submit { self.file.streamedHash = self.state.finalize() }
    }
}
