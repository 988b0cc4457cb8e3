import AssetCatalog
import AssetStore
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

extension AssetFileSystem {
    /// Reads smaller than this that do not continue the previous read fetch single 64 KiB blocks, not chunks.
    static let smallRead = 64 << 10

    /// `uid`: the caller's (an O_TRUNC by anyone but root clears setuid and setgid bits, as on ext4).
    /// `caller`: who opens (for lineage; nil from callers that are not the kernel).
    public func open(_ inode: UInt64, flags: Int32, uid: UInt32 = 0, caller: Caller? = nil) throws -> UInt64 {
        guard let node = nodes.node(inode) else { throw VFSError.notFound }
        if case .workspace(let id, let local, let parent, let name) = node {
            if flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0, let lineage, let caller { lineage.wrote(caller, workspace: id) }
            let overlay = try self.overlay(id)
            let handle = try overlay.open(try resolveWorkspace(id, local, parent: parent, name: name), parent: parent, name: name,
                                          flags: flags, uid: uid)
            return handles.add(.workspaceFile(overlay, handle))
        }
        guard flags & O_ACCMODE == O_RDONLY, flags & (O_TRUNC | O_APPEND | O_CREAT) == 0 else { throw VFSError.readOnly }
        let file = try versionFile(node, inode: inode)
        if let lineage, let caller, let source = file.source, let job = lineage.job(caller) {
            file.tap = lineage.opened(job, source)
        }
        return handles.add(.file(file))
    }

    /// Whether version files can be opened by the kernel alone, with no request to this file system: true for
    /// versions-only mounts, whose reads then arrive without a handle (`read(inode:)`). Saves two round trips
    /// (open and release) per file, most of the cost of reading a small file whose pages are cached.
    /// Off with `--lineage-opens`, so that lineage sees every open.
    public var servesOpensInKernel: Bool { kernelOpens }

    /// Up to `count` bytes at `offset` of a version file opened by the kernel alone (no handle).
    public func read(inode: UInt64, offset: UInt64, count: Int, caller: Caller? = nil) throws -> ReadBytes {
        let file = try handlelessFiles.value(inode) {
            guard let node = nodes.node(inode) else { throw VFSError.notFound }
            return try versionFile(node, inode: inode)
        }
        let bytes = try read(file, offset: offset, count: count)
        if let lineage, let caller, let source = file.source { lineage.servedWithoutOpen(caller, source, bytes: bytes.count) }
        return bytes
    }

    private func versionFile(_ node: Node, inode: UInt64) throws -> OpenFile {
        guard case .file(let asset, let version, let path, let entry) = node, let fileID = entry.fileID else {
            throw VFSError.isDirectory
        }
        // Chunk lists are immutable: keep recent ones, so reopening a small file costs no catalog query.
        let chunks = try chunkLists.value(fileID) { try catalog.fileChunks(fileID) }
        VFSMetrics.versionFileOpened(asset: asset, version: version)
        return OpenFile(fileID: fileID, size: entry.size, chunks: chunks,
                        source: LineageSource(inode: inode, version: VersionKey(asset: asset, version: version), path: path))
    }

    public func release(_ handle: UInt64) {
        if case .workspaceFile(let overlay, let id)? = handles.get(handle) {
            overlay.release(id)
            // A file written is closed: what its writers read so far goes to their workspaces now.
            lineage?.flush()
        }
        handles.remove(handle)
    }

    /// Whether the kernel may keep this file's pages across opens (only immutable version files).
    public func keepsCache(_ handle: UInt64) -> Bool {
        if case .file? = handles.get(handle) { return true }
        return false
    }

    /// Up to `count` bytes at `offset`; fewer only at end of file.
    public func read(_ handle: UInt64, offset: UInt64, count: Int) throws -> ReadBytes {
        switch handles.get(handle) {
        case .file(let file)?:
            let bytes = try read(file, offset: offset, count: count)
            if let tap = file.tap { lineage?.served(tap, bytes: bytes.count) }
            return bytes
        case .workspaceFile(let overlay, let id)?: return ReadBytes(try overlay.read(id, offset: offset, count: count))
        default: throw VFSError.badHandle
        }
    }

    /// The bytes as pieces of cached chunks and blocks: no copy is made here; the kernel gathers them.
    func read(_ file: OpenFile, offset: UInt64, count: Int) throws -> ReadBytes {
        guard offset < file.size, count > 0, !file.chunks.isEmpty else { return ReadBytes() }
        let end = min(file.size, offset + UInt64(count))
        let sequential = file.noteRead(offset: offset, end: end)
        // Start fetching what follows before waiting for this read's own chunks, so they load side by side.
        if sequential { prefetch(file, after: file.chunkIndex(at: end - 1)) }
        var out = ReadBytes()
        var position = offset
        var index = file.chunkIndex(at: offset)
        while position < end {
            let chunk = file.chunks[index]
            let chunkEnd = chunk.offset + UInt64(chunk.location.rawLength)
            let from = Int(position - chunk.offset)
            let to = Int(min(end, chunkEnd) - chunk.offset)
            // Blocks only for a small part of a large chunk: a small chunk costs one read and one check whole.
            // A chunk in this host's disk cache is read whole from there: its blocks would come from the store.
            if !sequential && to - from < Self.smallRead && chunk.location.rawLength > Self.smallRead
                && cache.cached(.chunk(chunk.location.id)) == nil && !repo.reader.diskCacheHolds(chunk.location.id) {
                try copyBlocks(of: chunk.location, from: from, to: to, into: &out, file: file)
            } else {
                let bytes = try wholeChunk(chunk.location, file: file, inOrder: sequential)
                out.append(bytes[(bytes.startIndex + from)..<(bytes.startIndex + to)])
                // Read to its end in order: the kernel now holds these pages, this copy is the first to go.
                if sequential && end >= chunkEnd { cache.consumed(.chunk(chunk.location.id)) }
            }
            position = min(end, chunkEnd)
            index += 1
        }
        return out
    }

    private func wholeChunk(_ location: ChunkLocation, file: OpenFile, inOrder: Bool) throws -> ArraySlice<UInt8> {
        let value = try guarded(location, file: file) { at in
            try cache.value(.chunk(location.id)) { .bytes(try repo.reader.readSlice(at, inOrder: inOrder)) }
        }
        guard case .bytes(let bytes) = value else { throw VFSError.io }
        return bytes
    }

    /// Serves a small random read from the 64 KiB blocks it touches, each verified on its own.
    private func copyBlocks(of location: ChunkLocation, from: Int, to: Int, into out: inout ReadBytes, file: OpenFile) throws {
        let first = from / ChunkRecord.blockSize, last = (to - 1) / ChunkRecord.blockSize
        // A read within one block of an all-raw chunk fetches the table and that block together.
        var early: (index: Int, bytes: [UInt8])?
        let tableValue = try guarded(location, file: file) { at in
            try cache.value(.table(location.id)) {
                guard at.codec == .raw, first == last else { return .table(try repo.reader.blockTable(at)) }
                let both = try repo.reader.tableAndRawBlock(at, index: first)
                early = (first, both.block)
                return .table(both.table)
            }
        }
        guard case .table(let blocks) = tableValue else { throw VFSError.io }
        for index in first...last {
            let block = blocks[index]
            let value = try guarded(location, file: file) { at in
                try cache.value(.block(location.id, index)) {
                    if let early, early.index == index { return .bytes(early.bytes[...]) }
                    return .bytes(try repo.reader.readBlock(block, of: at)[...])
                }
            }
            guard case .bytes(let bytes) = value else { throw VFSError.io }
            let lo = max(from, block.rawOffset) - block.rawOffset
            let hi = min(to, block.rawOffset + block.rawLength) - block.rawOffset
            out.append(bytes[(bytes.startIndex + lo)..<(bytes.startIndex + hi)])
        }
    }

    /// Runs a store read at `location`; damage becomes EIO for this file only, logged once with pack, chunk and
    /// file. A pack that is gone is not yet damage: gc may have moved the chunk to a new pack (and deleted the old
    /// one) since this file was opened, so the chunk's current location is looked up and the read tried there.
    private func guarded<T>(_ location: ChunkLocation, file: OpenFile, _ body: (ChunkLocation) throws -> T) throws -> T {
        do {
            do {
                return try body(location)
            } catch let error as StoreError where error.code == .notFound {
                guard let moved = try? catalog.chunkLocation(location.id), moved.pack != location.pack else { throw error }
                logger.debug("chunk moved by gc", metadata: ["chunk": "\(location.id.hex)", "from": "\(location.pack.hex)", "to": "\(moved.pack.hex)"])
                chunkLists.remove(file.fileID)  // Later opens of the file get its current chunk list.
                return try body(moved)
            }
        } catch let error as StoreError {
            // Retries (when the store has them) are over by now: this read is answered EIO.
            readFailureLog.log(logger, .error, "read failed, answering EIO: \(error.message)") {
                ["file": "\(file.path)", "chunk": "\(location.id.hex)",
                 "object": "\(repo.storage.describe(location.pack))", "store": "\(repo.storage.location)"]
            }
            throw VFSError(error)
        }
    }

    /// Fetches the chunks after `index` ahead of a sequential reader, within the cache's read-ahead budget: the
    /// next chunk while the bytes fetched ahead and unread are under half the cache, the ones after it while
    /// they are under `prefetchLimit`, so many readers at once do not evict each other's next chunks.
    private func prefetch(_ file: OpenFile, after index: Int) {
        let upper = min(file.chunks.count, index + 1 + repo.readAhead)
        guard index + 1 < upper else { return }
        for i in (index + 1)..<upper {
            let location = file.chunks[i].location
            if cache.contains(.chunk(location.id)) { continue }
            let limit = i == index + 1 ? cache.capacity / 2 : cache.prefetchLimit
            guard cache.reservePrefetch(location.rawLength, limit: limit) else { return }
            fetchPool.run { [self] in fetchReserved(location) }
        }
    }

    /// Loads a whole chunk into the cache ahead of its reader, on a reservation of its raw length already made
    /// with `cache.reservePrefetch` (read-ahead within a file, and across the files of a directory).
    func fetchReserved(_ location: ChunkLocation) {
        cache.prefetch(.chunk(location.id), reserved: location.rawLength) {
            .bytes(try repo.reader.readSlice(location, inOrder: true))
        }
    }
}
