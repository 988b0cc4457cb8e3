import AssetCatalog
import AssetStore
#if canImport(Glibc)
import Glibc
#endif

extension Importer {
    /// Imports one regular file, or reuses the parent's copy when size, mtime, ctime and inode are unchanged.
    func importFile(_ dirFD: Int32, name: [UInt8], path: [UInt8], stat st: stat,
                    previous: [[UInt8]: (entry: StatCacheEntry, hash: ContentHash)]) throws -> FileBuild {
        let size = UInt64(st.st_size)
        let mtime = nanoseconds(st.st_mtim)
        let ctime = nanoseconds(st.st_ctim)
        let statEntry = StatCacheEntry(size: size, mtimeNs: mtime, ctimeNs: ctime, inode: UInt64(st.st_ino), fileID: 0)
        fileCount += 1
        logicalBytes += size
        if !options.rehash, let (cached, hash) = previous[name],
            cached.size == size, cached.mtimeNs == mtime, cached.ctimeNs == ctime, cached.inode == UInt64(st.st_ino)
        {
            let file = FileBuild(size: size)
            file.streamedHash = hash
            file.id = cached.fileID
            pipeline.noteKnownFile(hash, id: cached.fileID)
            statRows.append((path, StatCacheEntry(size: size, mtimeNs: mtime, ctimeNs: ctime, inode: UInt64(st.st_ino), fileID: cached.fileID), nil))
            filesReused += 1
            bytesRead += size
            reportProgress()
            return file
        }
        let file = try readFile(dirFD, name: name, path: path, expected: st)
        statRows.append((path, statEntry, file))
        filesRead += 1
        return file
    }

    /// Streams a file through the chunker. Memory stays at one read buffer plus the batches in flight.
    func readFile(_ dirFD: Int32, name: [UInt8], path: [UInt8], expected: stat) throws -> FileBuild {
        let fd = openat(dirFD, cString(name), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | oNoAtime)
        let raw = fd >= 0 ? fd : openat(dirFD, cString(name), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if raw < 0 {
            if errno == ENOENT { throw vanished(path) }
            throw RepositoryError(.failure, "cannot open \(display(path)): \(String(cString: strerror(errno)))")
        }
        let handle = FileDescriptor(raw: raw, path: display(path))
        defer { handle.close() }
        let before = try handle.stat()
        guard before.st_ino == expected.st_ino, before.st_mode & S_IFMT == S_IFREG else { throw changed(path) }

        let (file, length) = try streamChunks(size: UInt64(before.st_size)) { try handle.read(into: $0) }
        let after = try handle.stat()
        guard length == UInt64(before.st_size), after.st_size == before.st_size,
            after.st_mtim.tv_sec == before.st_mtim.tv_sec, after.st_mtim.tv_nsec == before.st_mtim.tv_nsec
        else { throw changed(path) }
        return file
    }

    /// Cuts a byte stream into chunks and feeds them to the pipeline; `read` fills a buffer and returns 0 at the
    /// end. Returns the file (queued for the catalog) and how many bytes the stream held.
    func streamChunks(size: UInt64, read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (FileBuild, UInt64) {
        let file = FileBuild(size: size, chunkIDIsFileHash: repo.reader.identity == .plainBytes)
        var hasher: FileHashTask?
        var firstChunk: [UInt8]? = nil
        var filled = 0
        var eof = false
        var offset: UInt64 = 0
        let maxChunk = chunker.parameters.maxSize
        while true {
            while !eof && filled < buffer.count {
                let n = try read(UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
                if n == 0 { eof = true } else { filled += n }
            }
            var start = 0
            while filled - start >= maxChunk || (eof && start < filled) {
                let view = UnsafeRawBufferPointer(rebasing: buffer[start..<filled])
                let length = chunker.cutPoint(view)
                let bytes = Array(UnsafeRawBufferPointer(rebasing: view[0..<length]))
                // In a format-1 store a single-chunk file's hash is its chunk id: hash the stream only from chunk two.
                if file.chunkCount == 0 {
                    firstChunk = bytes
                } else {
                    if let first = firstChunk {
                        hasher = FileHashTask(file: file, hasher: fileHasher)
                        hasher!.update(first)
                        firstChunk = nil
                    }
                    hasher!.update(bytes)
                }
                let index = file.appendChunk(offset: offset, hash: nil)
                addJob(ChunkJob(file: file, index: index, bytes: bytes))
                offset += UInt64(length)
                start += length
                bytesRead += UInt64(length)
                if batchBytes >= batchLimit { try flushBatch() }
                reportProgress()
            }
            if start > 0 {
                let rest = filled - start
                if rest > 0 { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: rest) }
                filled = rest
            }
            if eof && filled == 0 { break }
        }
        if let first = firstChunk, !file.chunkIDIsFileHash {
            hasher = FileHashTask(file: file, hasher: fileHasher)
            hasher!.update(first)
        }
        hasher?.finish()
        pipeline.enqueue(.file(file))
        return (file, offset)
    }

    func changed(_ path: [UInt8]) -> RepositoryError {
        RepositoryError(.failure, "\(display(path)) changed while being imported; nothing was stored, re-run the import when the file is no longer being written")
    }

    func addJob(_ job: ChunkJob) {
        batch.append(job)
        batchBytes += job.bytes.count
    }

    func flushBatch() throws {
        guard !batch.isEmpty else { return }
        let jobs = batch
        batch = []
        batchBytes = 0
        try pipeline.submit(jobs)
    }

    func readDirectoryNames(_ fd: Int32, path: [UInt8]) throws -> [[UInt8]] {
        do {
            return try directoryNames(fd, display: path.isEmpty ? options.source : display(path))
        } catch let error as StoreError {
            throw RepositoryError(.failure, error.message)
        }
    }

    /// Regular files and their bytes under the directory open as `fd`, for the progress bar's ETA and for the
    /// check that the import found as many files as the count did. Unreadable parts count as empty: only the ETA
    /// and that warning depend on this.
    func measure(_ fd: Int32, path: [UInt8]) -> (files: Int, bytes: UInt64) {
        var total: (files: Int, bytes: UInt64) = (0, 0)
        for name in (try? readDirectoryNames(fd, path: path)) ?? [] {
            var st = stat()
            guard fstatat(fd, cString(name), &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFREG {
                total.files += 1
                total.bytes += UInt64(st.st_size)
            }
            if st.st_mode & S_IFMT == S_IFDIR {
                let child = openat(fd, cString(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    defer { Glibc.close(child) }
                    let sub = measure(child, path: path.isEmpty ? name : path + [UInt8(ascii: "/")] + name)
                    total.files += sub.files
                    total.bytes += sub.bytes
                }
            }
        }
        return total
    }
}

/// O_NOATIME (Linux): reading a source must not touch its atime; only allowed for the file's owner or root.
let oNoAtime: Int32 = 0o1000000
