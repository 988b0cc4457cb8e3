/// Sizes and counts of the synthetic data set. `scale` multiplies file counts and the per-version JSON churn;
/// per-file sizes stay realistic (6 MB shards, 16 MiB arrays, 2 MiB tensors) so chunking behaves as on real
/// data at any scale. Minimum counts keep small scales meaningful (30% of 10 tensors, not of 1).
struct DataSetLayout {
    static let versions = 6
    let scale: Double
    let shardCount: Int
    let shardBytes = 6_000_000
    let arrayCount: Int
    let arrayRows = 4096, arrayColumns = 1024  // 16 MiB of float32
    let metaCount: Int
    let tensorCount: Int
    let tensorBytes = 2 << 20
    // Per-version churn.
    let changedShards = 2
    let addedArrays = 1
    let changedMeta: Int
    let addedMeta: Int
    var changedTensors: Int { Int((Double(tensorCount) * 0.3).rounded()) }

    init(scale: Double) {
        func scaled(_ n: Int, min lower: Int) -> Int { max(lower, Int((Double(n) * scale).rounded())) }
        self.scale = scale
        shardCount = scaled(24, min: 3)
        arrayCount = scaled(8, min: 2)
        metaCount = scaled(3000, min: 100)
        tensorCount = scaled(64, min: 10)
        changedMeta = scaled(50, min: 5)
        addedMeta = scaled(50, min: 5)
    }

    var summary: String {
        "\(shardCount) CSV shards of ~6 MB, \(arrayCount) float32 .npy arrays of 16 MiB, \(metaCount) JSON files "
            + "of 200-2000 B, a \(tensorCount * tensorBytes >> 20) MiB model blob of \(tensorCount) tensors of 2 MiB; "
            + "each later version rewrites \(changedTensors) tensors in place, edits \(changedShards) shards, "
            + "adds \(addedArrays) array, edits \(changedMeta) and adds \(addedMeta) JSON files"
    }
}

/// Writes version 1 of the data set, then mutates it in place version by version. Only the files a version
/// changes are opened for writing, so metadata-based change detection (size, mtime, inode) sees exactly them.
final class DataSetGenerator {
    static let splits = ["train", "validation", "test", "labels"]

    let root: String
    let layout: DataSetLayout
    private(set) var version = 0
    private var arrayTotal = 0
    private var metaTotal = 0

    init(root: String, layout: DataSetLayout) {
        self.root = root
        self.layout = layout
    }

    var modelPath: String { root + "/model/model.bin" }
    private func shardPath(_ i: Int) -> String { root + "/shards/" + padded(i, 4) + ".csv" }
    private func arrayPath(_ i: Int) -> String { root + "/arrays/" + padded(i, 4) + ".npy" }
    private func metaPath(_ i: Int) -> String {
        root + "/meta/" + Self.splits[i % Self.splits.count] + "/" + padded(i, 5) + ".json"
    }

    func createFirstVersion() throws {
        precondition(version == 0, "version 1 is created once")
        version = 1
        for dir in ["shards", "arrays", "model"] + Self.splits.map({ "meta/" + $0 }) {
            try FileIO.makeDirectory(root + "/" + dir)
        }
        for i in 0..<layout.shardCount { try writeShard(i) }
        for _ in 0..<layout.arrayCount { try addArray() }
        for _ in 0..<layout.metaCount { try addMeta() }
        try FileIO.writeWhole(modelPath, [])
        for t in 0..<layout.tensorCount { try writeTensor(t) }
    }

    /// Applies the next version's edits in place and describes them in one line.
    func advance() throws -> String {
        precondition(version >= 1, "create version 1 first")
        version += 1
        var plan = SplitMix64(.plan, version: version, index: 0)
        let tensors = plan.sample(layout.changedTensors, from: layout.tensorCount)
        for t in tensors { try writeTensor(t) }
        var shardEdits: [String] = []
        for s in plan.sample(layout.changedShards, from: layout.shardCount) {
            shardEdits.append(plan.below(2) == 0 ? try appendRows(s) : try editRows(s))
        }
        for _ in 0..<layout.addedArrays { try addArray() }
        let edited = plan.sample(layout.changedMeta, from: metaTotal)
        for m in edited { try writeMeta(m) }
        for _ in 0..<layout.addedMeta { try addMeta() }
        return "tensors \(tensors.map(String.init).joined(separator: ",")) rewritten; "
            + shardEdits.joined(separator: "; ")
            + "; +\(layout.addedArrays) array; \(edited.count) JSON edited, +\(layout.addedMeta) JSON"
    }

    // MARK: model blob

    /// Tensor `t` with fresh weights; pwrite keeps the file's size and inode, as an in-place checkpoint update.
    private func writeTensor(_ t: Int) throws {
        var rng = SplitMix64(.tensor, version: version, index: t)
        var floats = [Float](repeating: 0, count: layout.tensorBytes / 4)
        floats.withUnsafeMutableBufferPointer { rng.fill($0, amplitude: 0.05) }
        try floats.withUnsafeBytes { try FileIO.overwriteRegion(modelPath, at: t * layout.tensorBytes, $0) }
    }

    // MARK: arrays

    private func addArray() throws {
        let i = arrayTotal
        arrayTotal += 1
        var rng = SplitMix64(.array, version: version, index: i)
        var floats = [Float](repeating: 0, count: layout.arrayRows * layout.arrayColumns)
        floats.withUnsafeMutableBufferPointer { rng.fill($0, amplitude: 1) }
        var bytes = Self.npyHeader(rows: layout.arrayRows, columns: layout.arrayColumns)
        floats.withUnsafeBytes { bytes.append(contentsOf: $0) }
        try FileIO.writeWhole(arrayPath(i), bytes)
    }

    /// NPY format 1.0: magic, version, little-endian header length, then a Python dict literal padded with
    /// spaces and ended by a newline so the data starts on a 64-byte boundary.
    static func npyHeader(rows: Int, columns: Int) -> [UInt8] {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (unpadded + 63) / 64 * 64 - unpadded) + "\n"
        let length = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8)
    }

    // MARK: CSV shards

    private static let csvHeader = "id,count,delta,x,y,category,token\n"

    private func writeShard(_ i: Int) throws {
        var rng = SplitMix64(.shard, version: version, index: i)
        var text = TextBuilder(capacity: layout.shardBytes + 128)
        text.append(Self.csvHeader)
        var id = 0
        while text.bytes.count < layout.shardBytes {
            Self.appendRow(&text, id: id, &rng)
            id += 1
        }
        try FileIO.writeWhole(shardPath(i), text.bytes)
    }

    private static func appendRow(_ text: inout TextBuilder, id: Int, _ rng: inout SplitMix64) {
        text.int(id); text.byte(0x2C)
        text.int(rng.below(100_000)); text.byte(0x2C)
        text.int(rng.inRange(-500...500)); text.byte(0x2C)
        text.fixed4(rng.inRange(-10_000_000...10_000_000)); text.byte(0x2C)
        text.fixed4(rng.below(10_000)); text.byte(0x2C)
        text.word(&rng); text.byte(0x2C)
        text.word(&rng); text.byte(0x0A)
    }

    /// Appends 1-3% new rows at the end (a growing log-like shard).
    private func appendRows(_ s: Int) throws -> String {
        var rng = SplitMix64(.shardEdit, version: version, index: s)
        let target = layout.shardBytes * rng.inRange(1...3) / 100
        var text = TextBuilder(capacity: target + 128)
        var rows = 0
        while text.bytes.count < target {
            Self.appendRow(&text, id: version * 1_000_000 + rows, &rng)
            rows += 1
        }
        try FileIO.appendBytes(shardPath(s), text.bytes)
        return "shard \(s) +\(rows) rows"
    }

    /// Replaces 3-8 rows in the middle half with new values (row lengths change, so later bytes shift).
    private func editRows(_ s: Int) throws -> String {
        var rng = SplitMix64(.shardEdit, version: version, index: s)
        let old = try FileIO.readWhole(shardPath(s))
        var lineStarts = [0]
        for (i, b) in old.enumerated() where b == 0x0A && i + 1 < old.count { lineStarts.append(i + 1) }
        let lines = lineStarts.count
        let chosen = rng.sample(rng.inRange(3...8), from: lines / 2).map { $0 + lines / 4 }
        var text = TextBuilder(capacity: old.count + 1024)
        var copied = 0
        for line in chosen {
            text.bytes.append(contentsOf: old[copied..<lineStarts[line]])
            Self.appendRow(&text, id: line - 1, &rng)
            copied = line + 1 < lines ? lineStarts[line + 1] : old.count
        }
        text.bytes.append(contentsOf: old[copied...])
        try FileIO.writeWhole(shardPath(s), text.bytes)
        return "shard \(s) \(chosen.count) rows edited"
    }

    // MARK: JSON metadata

    private func addMeta() throws {
        metaTotal += 1
        try writeMeta(metaTotal - 1)
    }

    private func writeMeta(_ i: Int) throws {
        var rng = SplitMix64(.meta, version: version, index: i)
        let target = rng.inRange(200...2000)
        var t = TextBuilder(capacity: target + 64)
        t.append("{\n  \"id\": "); t.int(i)
        t.append(",\n  \"split\": \""); t.append(Self.splits[i % Self.splits.count])
        t.append("\",\n  \"revision\": "); t.int(version)
        t.append(",\n  \"label\": \""); t.word(&rng)
        t.append("\",\n  \"score\": "); t.fixed4(rng.below(10_000))
        t.append(",\n  \"bbox\": [")
        for k in 0..<4 { if k > 0 { t.append(", ") }; t.int(rng.below(1024)) }
        t.append("],\n  \"tags\": [")
        for k in 0..<3 { if k > 0 { t.append(", ") }; t.byte(0x22); t.word(&rng); t.byte(0x22) }
        t.append("],\n  \"caption\": \"")
        var first = true
        while t.bytes.count < target - 4 {
            if !first { t.byte(0x20) }
            first = false
            t.word(&rng)
        }
        t.append("\"\n}\n")
        try FileIO.writeWhole(metaPath(i), t.bytes)
    }
}

/// Byte-level text formatting: String interpolation per field would dominate generation time for 150 MB of CSV.
struct TextBuilder {
    var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func byte(_ b: UInt8) { bytes.append(b) }
    mutating func append(_ s: String) { bytes.append(contentsOf: s.utf8) }

    mutating func int(_ value: Int) {
        if value < 0 { bytes.append(0x2D) }
        var v = value.magnitude
        let start = bytes.count
        repeat {
            bytes.append(0x30 + UInt8(v % 10))
            v /= 10
        } while v > 0
        bytes[start...].reverse()
    }

    /// A decimal with four fraction digits, given in ten-thousandths.
    mutating func fixed4(_ tenThousandths: Int) {
        if tenThousandths < 0 { bytes.append(0x2D) }
        let m = Int(tenThousandths.magnitude)
        int(m / 10_000)
        bytes.append(0x2E)
        var frac = m % 10_000
        var digits: [UInt8] = [0, 0, 0, 0]
        for k in stride(from: 3, through: 0, by: -1) {
            digits[k] = 0x30 + UInt8(frac % 10)
            frac /= 10
        }
        bytes.append(contentsOf: digits)
    }

    mutating func word(_ rng: inout SplitMix64) { bytes.append(contentsOf: Words.list[rng.below(Words.list.count)]) }
}

enum Words {
    static let list: [[UInt8]] = [
        "amber", "basalt", "cobalt", "delta", "ember", "fjord", "glacier", "harbor", "island", "juniper",
        "kelp", "lagoon", "meadow", "nebula", "orchid", "prairie", "quartz", "river", "savanna", "tundra",
        "umber", "valley", "willow", "xenon", "yarrow", "zephyr", "cat", "dog", "car", "truck", "person",
        "bicycle", "tree", "house", "bridge", "cloud", "lamp", "chair", "table", "window", "bottle", "cup",
        "train", "boat", "plane", "horse", "sheep", "bird", "apple", "orange", "banana", "carrot", "pizza",
    ].map { Array($0.utf8) }
}

func padded(_ n: Int, _ width: Int) -> String {
    let s = String(n)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}
