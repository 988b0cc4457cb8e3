import CZstd

/// How one block of a chunk is stored (Documentation/Format.md, "Block codecs").
public enum BlockCodec: UInt8, Sendable {
    case raw = 0
    case zstd = 1
}

/// Thin wrapper over libzstd's one-shot API. A compression context is reused per call site because creating
/// one per 64 KiB block costs more than compressing it.
public final class ZstdCompressor {
    private let context: OpaquePointer
    private let level: Int32

    public init(level: Int32 = 1) {
        context = ZSTD_createCCtx()
        self.level = level
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `input` into `output` (sized with `bound`); nil when zstd fails or the result would not fit.
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        let n = ZSTD_compressCCtx(context, output.baseAddress, output.count, input.baseAddress, input.count, level)
        return ZSTD_isError(n) != 0 ? nil : n
    }

    public static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }
}

public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() { context = ZSTD_createDCtx() }
    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses a whole frame whose plain size is known; false if the frame is damaged or of another size.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        let n = ZSTD_decompressDCtx(context, output.baseAddress, output.count, input.baseAddress, input.count)
        return ZSTD_isError(n) == 0 && n == output.count
    }
}

/// Reuses compression contexts across chunks and threads: a context holds about a megabyte of tables that
/// would otherwise be allocated and zeroed for every chunk.
public final class CompressorPool: @unchecked Sendable {
    private let lock = Lock()
    // Protected by `lock`.
    private var idle: [ZstdCompressor] = []

    public init() {}

    public func withCompressor<T>(_ body: (ZstdCompressor) throws -> T) rethrows -> T {
        let compressor = lock.withLock { idle.popLast() } ?? ZstdCompressor()
        defer { lock.withLock { idle.append(compressor) } }
        return try body(compressor)
    }
}

/// Reuses decompression contexts across reads and threads (one per concurrent reader at most).
public final class DecompressorPool: @unchecked Sendable {
    private let lock = Lock()
    // Protected by `lock`.
    private var idle: [ZstdDecompressor] = []

    public init() {}

    public func withDecompressor<T>(_ body: (ZstdDecompressor) throws -> T) rethrows -> T {
        let d = lock.withLock { idle.popLast() } ?? ZstdDecompressor()
        defer { lock.withLock { idle.append(d) } }
        return try body(d)
    }
}

/// A byte array whose contents the caller overwrites entirely: skips zero-filling large buffers.
public func uninitializedBytes(_ count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Int) rethrows -> [UInt8] {
    try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        initialized = try fill(UnsafeMutableRawBufferPointer(buffer))
    }
}
