/// Builds one pack: appends encoded chunk records to a staging file, then seals it under its SHA-256.
///
/// Used by one thread at a time (it may be handed whole to another thread, e.g. to be sealed there: hence
/// `@unchecked Sendable`). After any failed write the writer refuses further use (the staging file is in an
/// unknown state); the caller starts a new one.
public final class PackWriter: @unchecked Sendable {
    public static let magic: [UInt8] = Array("ASFPACK1".utf8)
    public static let footerMagic: [UInt8] = Array("ASFPIDX1".utf8)
    public static let headerSize = 16
    public static let footerEntrySize = 88
    public static let trailerSize = 16
    public static let formatVersion: UInt32 = 1
    static let header: [UInt8] = {
        var h = magic
        h.appendLE(formatVersion)
        h.appendLE(UInt32(0))
        return h
    }()

    private let storage: PackStorage
    /// The pack under construction: a private file in the storage's scratch directory, removed by this writer
    /// once the pack is stored (or abandoned).
    private var staging: ScratchFile?
    /// Opens a new scratch file in a directory (tests replace it to inject failures).
    var openScratch: (String) throws -> ScratchFile = ScratchFile.create
    /// What the footer needs of each record (not its bytes, which are written out as the pack fills).
    private struct Entry {
        let id: ContentHash
        let offset: UInt64
        let length: Int
        let rawLength: Int
        let tableHash: ContentHash
        let codec: ChunkRecord.CodecSummary
    }
    private var entries: [Entry] = []
    /// Bytes not yet written, in a page-aligned buffer: the staging file may be open with O_DIRECT (see
    /// `ScratchFile.create`), which needs aligned memory, offsets and lengths. Only whole pages are
    /// written until the seal, which pads the last page and then cuts the file to its exact size.
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    /// Bytes handed to the staging file so far: always a multiple of `pageSize` before the seal.
    private var fileOffset: UInt64 = 0
    private var failed = false
    /// Full buffers are written in the background while the next one fills (direct I/O waits for the disk; the
    /// caller, the import pipeline, should not). One write in flight at a time: two buffers in all.
    private let background = BackgroundWrite()
    /// Size at which `isFull` turns true: packs stay in the tens of MiB.
    public let targetSize: Int
    static let pageSize = 4096
    static let flushSize = 4 << 20

    public init(storage: PackStorage, targetSize: Int = 32 << 20) {
        self.storage = storage
        self.targetSize = targetSize
        buffer = .allocate(byteCount: Self.flushSize + (1 << 20), alignment: Self.pageSize)
    }

    deinit {
        background.waitIdle()  // A write in flight uses the descriptor until it ends.
        buffer.deallocate()
        staging?.remove()
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var isFull: Bool { Int(fileOffset) + used >= targetSize }
    public var chunkCount: Int { entries.count }

    /// Appends one record; returns its offset in the pack.
    @discardableResult
    public func append(_ chunk: ChunkRecord.Encoded) throws -> UInt64 {
        try checkBackgroundWrite()
        guard !failed else { throw StoreError(.invalidArgument, "pack writer used after a failed write") }
        if staging == nil {
            staging = try openScratch(storage.scratchDirectory)
            try write(Self.header)
        }
        let offset = fileOffset + UInt64(used)
        try write(chunk.bytes)
        entries.append(Entry(id: chunk.id, offset: offset, length: chunk.bytes.count, rawLength: chunk.rawLength,
                             tableHash: chunk.tableHash, codec: chunk.codec))
        return offset
    }

    private func write(_ bytes: [UInt8]) throws {
        if used + bytes.count > buffer.count {
            // A record larger than the room left (records reach 4 MiB plus their table): grow, keeping alignment.
            let capacity = ((used + bytes.count) * 2 + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: Self.pageSize)
            bigger.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
            buffer.deallocate()
            buffer = bigger
        }
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + $0.count)]).copyMemory(from: $0) }
        used += bytes.count
        if used >= Self.flushSize { try flushWholePages() }
    }

    /// Hands the buffer's whole pages to the background write and goes on in the other buffer with the partial
    /// last page.
    private func flushWholePages() throws {
        let whole = used - used % Self.pageSize
        guard whole > 0, let staging else { return }
        let next = background.takeSpare() ?? .allocate(byteCount: Self.flushSize + (1 << 20), alignment: Self.pageSize)
        let rest = used - whole
        if rest > 0 { next.baseAddress!.copyMemory(from: buffer.baseAddress! + whole, byteCount: rest) }
        background.start(buffer, count: whole, to: staging.descriptor, at: fileOffset)
        buffer = next
        used = rest
        fileOffset += UInt64(whole)
        try checkBackgroundWrite()
    }

    /// Writes pages to a staging file that may be in direct I/O mode. A file system that accepted O_DIRECT on
    /// the descriptor but refuses the write itself (EINVAL, as some network and virtual file systems do) gets
    /// it, and every later one, buffered instead.
    static func writePages(_ bytes: UnsafeRawBufferPointer, to descriptor: FileDescriptor, at offset: UInt64) throws {
        do {
            try descriptor.pwrite(bytes, at: offset)
        } catch let error as StoreError where error.cause == .errno(EINVAL) {
            guard descriptor.setDirectIO(false) else { throw error }
            try descriptor.pwrite(bytes, at: offset)
        }
    }

    /// Rethrows the failure of a background write (once); afterwards the writer refuses further use.
    private func checkBackgroundWrite() throws {
        guard let error = background.takeError() else { return }
        failed = true
        throw error
    }

    private func writeOut(_ count: Int) throws {
        guard let staging else { return }
        do {
            try PackWriter.writePages(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), to: staging.descriptor, at: fileOffset)
        } catch {
            failed = true
            throw error
        }
    }

    /// Writes the footer index and stores the pack under its content hash (durably). Returns where each chunk
    /// landed; only after this returns may the catalog refer to them.
    public func seal() throws -> (pack: ContentHash, size: UInt64, chunks: [ChunkLocation]) {
        try checkBackgroundWrite()
        guard !failed else { throw StoreError(.invalidArgument, "pack writer used after a failed write") }
        guard let staging else { throw StoreError(.invalidArgument, "sealing an empty pack") }
        var footer = [UInt8]()
        footer.reserveCapacity(entries.count * Self.footerEntrySize + Self.trailerSize)
        for entry in entries {
            footer.append(contentsOf: entry.id.bytes)
            footer.appendLE(entry.offset)
            footer.appendLE(UInt32(entry.length))
            footer.appendLE(UInt32(entry.rawLength))
            footer.append(contentsOf: entry.tableHash.bytes)
            footer.append(entry.codec.rawValue)
            footer.append(contentsOf: [UInt8](repeating: 0, count: 7))
        }
        footer.appendLE(UInt32(entries.count))
        footer.appendLE(Self.formatVersion)
        footer.append(contentsOf: Self.footerMagic)
        try write(footer)
        background.waitIdle()
        try checkBackgroundWrite()
        // The last page goes out padded with zeros (aligned for O_DIRECT); the file is then cut to its size.
        let size = fileOffset + UInt64(used)
        let padded = (used + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        UnsafeMutableRawBufferPointer(rebasing: buffer[used..<padded]).initializeMemory(as: UInt8.self, repeating: 0)
        try writeOut(padded)
        if ftruncate(staging.descriptor.raw, off_t(size)) != 0 {
            failed = true
            throw StoreError.syscall("truncate", path: staging.path, errno: errno)
        }
        fileOffset = size
        used = 0
        // The name is the SHA-256 of the header and the footer index. The index lists every chunk's id (the
        // SHA-256 of its plain bytes) and table hash (which covers every block's hash), so the name commits
        // to all content without a second pass over the pack's bytes on the import's serial path.
        var hasher = StreamingHasher()
        hasher.update(Self.header)
        hasher.update(footer)
        let id = hasher.finalize()
        // The scratch file goes once the backend has the pack, or has failed to take it (a retry of the put is
        // the backend's or its decorator's business, with the same source, inside this call).
        self.staging = nil
        defer { staging.remove() }
        // Backends read the finished pack with ordinary (unaligned) preads, which a direct-I/O descriptor refuses:
        // switch it to buffered reads once here. The pages were written directly, so the page cache holds none of
        // them and every read sees the disk's bytes.
        staging.descriptor.setDirectIO(false)
        do {
            try storage.put(id, from: PackSource(path: staging.path, descriptor: staging.descriptor, size: size))
        } catch {
            failed = true
            throw error
        }
        let chunks = entries.map { entry in
            ChunkLocation(id: entry.id, pack: id, offset: entry.offset, length: entry.length,
                          rawLength: entry.rawLength, codec: entry.codec, tableHash: entry.tableHash)
        }
        entries.removeAll()
        fileOffset = 0
        return (id, size, chunks)
    }
}

/// A writer's private scratch file.
struct ScratchFile: Sendable {
    let path: String
    let descriptor: FileDescriptor

    /// A new file `pack-XXXXXX` in `directory`, opened for direct I/O where the file system has it: a pack
    /// goes from the writer's buffer to the disk without passing through (and evicting) the page cache, and
    /// the kernel copies nothing. The writer keeps its buffer, offsets and lengths page-aligned. Where O_DIRECT
    /// is refused (tmpfs), writes stay buffered.
    static func create(in directory: String) throws -> ScratchFile {
        var template = Array("\(directory)/pack-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if fd < 0 { throw StoreError.syscall("create", path: path, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // mkostemp is not in Swift's Glibc module.
        let descriptor = FileDescriptor(raw: fd, path: path)
        descriptor.setDirectIO(true)
        return ScratchFile(path: path, descriptor: descriptor)
    }

    func remove() {
        descriptor.close()
        unlink(path)
    }
}

extension PackWriter {
    /// Removes the scratch files that crashed writers left in `directory`; returns how many. Only while no
    /// writer runs: callers hold the store's exclusive maintenance lock.
    public static func removeAbandonedScratch(in directory: String) throws -> Int {
        var removed = 0
        for name in try listDirectory(directory) where unlink("\(directory)/\(name)") == 0 { removed += 1 }
        return removed
    }
}

/// The writer's one background write and what it hands back: the buffer it finished with, and its error.
/// A separate object, not the writer: the write must not keep the writer alive, or the writer's deinit could
/// run on the write's own thread while waiting for it.
private final class BackgroundWrite: @unchecked Sendable {
    private let queue = DispatchQueue(label: "assetfs.pack.write")
    private let slot = DispatchSemaphore(value: 1)
    private let lock = Lock()
    // Protected by `lock`.
    private var error: Error?
    private var spare: UnsafeMutableRawBufferPointer?

    deinit { spare?.deallocate() }

    /// Writes `buffer[0..<count]` at `offset` in the background, after the previous write; the buffer is owned
    /// by the write until it comes back as the spare.
    func start(_ buffer: UnsafeMutableRawBufferPointer, count: Int, to descriptor: FileDescriptor, at offset: UInt64) {
        slot.wait()
        let bytes = UncheckedBuffer(bytes: buffer)
        queue.async {
            do {
                try PackWriter.writePages(UnsafeRawBufferPointer(rebasing: bytes.bytes[0..<count]), to: descriptor, at: offset)
            } catch {
                self.lock.withLock { if self.error == nil { self.error = error } }
            }
            self.lock.withLock {
                self.spare?.deallocate()
                self.spare = bytes.bytes
            }
            self.slot.signal()
        }
    }

    /// The buffer the last write finished with, if it has finished and nobody took it yet.
    func takeSpare() -> UnsafeMutableRawBufferPointer? {
        slot.wait()
        defer { slot.signal() }
        return lock.withLock { defer { spare = nil }; return spare }
    }

    func takeError() -> Error? { lock.withLock { defer { error = nil }; return error } }

    func waitIdle() {
        slot.wait()
        slot.signal()
    }
}

/// A buffer handed to the write's thread (one owner at a time).
private struct UncheckedBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
