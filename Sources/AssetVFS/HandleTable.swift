import AssetCatalog
import AssetStore

/// An open file of a version: its chunk list, loaded once at open, and its read pattern.
final class OpenFile: @unchecked Sendable {
    let fileID: Int64
    let size: UInt64
    let chunks: [FileChunk]
    /// A version file's place (nil for the stored files under workspaces).
    let source: LineageSource?
    private let label: String?
    /// For messages: ASSET/vN/PATH, or what the creator named it. Made when asked, not at every open.
    var path: String {
        if let source { return "\(source.version.asset)/v\(source.version.version)/\(String(decoding: source.path, as: UTF8.self))" }
        return label ?? "file \(fileID)"
    }
    /// Where the bytes served to this open are counted for lineage; set before the handle is published.
    var tap: LineageTap?
    private let lock = Lock()
    // Protected by `lock`: where the last read ended, to detect sequential reading.
    private var lastEnd: UInt64 = 0

    init(fileID: Int64, size: UInt64, chunks: [FileChunk], path: String? = nil, source: LineageSource? = nil) {
        self.fileID = fileID
        self.size = size
        self.chunks = chunks
        self.label = path
        self.source = source
    }

    /// Records a read and says whether it continues the previous one.
    func noteRead(offset: UInt64, end: UInt64) -> Bool {
        lock.withLock {
            // Exactly where the last read ended (or a large read from the start): a small jump is random access.
            let sequential = (offset == lastEnd && offset > 0) || (offset == 0 && end >= 128 << 10)
            lastEnd = end
            return sequential
        }
    }

    /// Index of the chunk holding byte `offset` (binary search over the chunk offsets).
    func chunkIndex(at offset: UInt64) -> Int {
        var low = 0, high = chunks.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if chunks[mid].offset <= offset { low = mid } else { high = mid - 1 }
        }
        return low
    }
}

enum Handle {
    case directory([(name: [UInt8], node: Node)])
    case file(OpenFile)
    /// A workspace file: the overlay and its own handle number.
    case workspaceFile(WorkspaceOverlay, UInt64)
}

/// Open handles by number. Numbers start at 1 and are never reused within a mount.
final class HandleTable: @unchecked Sendable {
    private let lock = Lock()
    // Protected by `lock`.
    private var next: UInt64 = 1
    private var handles: [UInt64: Handle] = [:]

    func add(_ handle: Handle) -> UInt64 {
        lock.withLock {
            let id = next
            next += 1
            handles[id] = handle
            return id
        }
    }

    func get(_ id: UInt64) -> Handle? { lock.withLock { handles[id] } }
    func remove(_ id: UInt64) { lock.withLock { _ = handles.removeValue(forKey: id) } }
    var count: Int { lock.withLock { handles.count } }
}
