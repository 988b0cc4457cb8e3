import AssetStore

struct MicroResult {
    let sampleBytes: Int
    let chunkerMBps: Double
    let sha256MBps: Double
    /// Chunk then hash each chunk: the single-core upper bound of an importer's CPU work.
    let pipelineMBps: Double
}

/// Single-thread throughput of the two CPU costs of an import, on generated data held in memory (no I/O).
enum Micro {
    static func run(files: [String], root: String, budget: Int) throws -> MicroResult {
        let sample = try sampleBytes(files: files, root: root, budget: budget)
        let mb = Double(sample.count) / 1e6
        let chunker = Chunker(parameters: .default)
        var sink = 0  // results feed a value that is reported, so the optimiser cannot drop the work

        let chunkSeconds = bestOf(3) {
            sample.withUnsafeBytes { sink &+= chunker.chunkLengths($0).count }
        }
        let shaSeconds = bestOf(3) {
            sample.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let end = min(offset + (1 << 20), buffer.count)
                    let hash = ContentHash.of(UnsafeRawBufferPointer(rebasing: buffer[offset..<end]))
                    sink &+= Int(truncatingIfNeeded: hash.w0)
                    offset = end
                }
            }
        }
        let pipelineSeconds = bestOf(2) {
            sample.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = chunker.cutPoint(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
                    let hash = ContentHash.of(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n]))
                    sink &+= Int(truncatingIfNeeded: hash.w0)
                    offset += n
                }
            }
        }
        progress("micro: \(fixed(mb, 1)) MB sample, checksum \(sink & 0xFFFF)")
        return MicroResult(sampleBytes: sample.count, chunkerMBps: mb / chunkSeconds,
                           sha256MBps: mb / shaSeconds, pipelineMBps: mb / pipelineSeconds)
    }

    /// Up to `budget` bytes taken round-robin from the top-level folders, so text, arrays, JSON and model
    /// weights are all represented rather than whichever folder sorts first.
    private static func sampleBytes(files: [String], root: String, budget: Int) throws -> [UInt8] {
        var groups: [String: [String]] = [:]
        for path in files {
            let top = path.dropFirst(root.count + 1).split(separator: "/").first.map(String.init) ?? ""
            groups[top, default: []].append(path)
        }
        var queues = groups.keys.sorted().map { groups[$0]! }
        var sample = [UInt8]()
        sample.reserveCapacity(budget)
        while sample.count < budget, queues.contains(where: { !$0.isEmpty }) {
            for q in queues.indices where !queues[q].isEmpty && sample.count < budget {
                let bytes = try FileIO.readWhole(queues[q].removeFirst())
                sample.append(contentsOf: bytes.prefix(budget - sample.count))
            }
        }
        return sample
    }

    private static func bestOf(_ runs: Int, _ body: () -> Void) -> Double {
        (0..<runs).map { _ in timed(body).1 }.min()!
    }
}
