import AssetCatalog
import Foundation

/// The versions upstream (inputs, their inputs, ...) or downstream (every version made from it) of one
/// version, with the inputs as edges, for `assetfs lineage` (Documentation/Lineage.md).
public struct LineageGraph: Encodable, Sendable {
    public enum Direction: String, Encodable, Sendable { case upstream, downstream }

    public struct Node: Encodable, Sendable {
        public var ref: String
        public var asset: String
        public var version: Int
        /// False for a version named by a record that has since been deleted.
        public var exists: Bool
        public var created: String?
        public var root: String?
        /// Set for an input read from another store (not followed).
        public var store: String?
        /// Distance from the version asked about.
        public var depth: Int
        /// The jobs that made it (from its own record).
        public var jobs: [LineageJob]
    }

    public struct Edge: Encodable, Sendable {
        /// The input version.
        public var from: String
        /// The version made from it.
        public var to: String
        public var kind: String
        public var fileCount: Int
        public var filesOmitted: Int
        public var bytes: UInt64
        public var opens: UInt64
        public var jobs: [String]
        public var files: [LineageFile]
    }

    public var ref: String
    public var direction: Direction
    public var depth: Int?
    public var nodes: [Node]
    public var edges: [Edge]

    /// Walks from `start` breadth first, at most `maxDepth` steps (nil: all).
    public static func build(catalog: Catalog, start: VersionInfo, direction: Direction, maxDepth: Int?) throws -> LineageGraph {
        var graph = LineageGraph(ref: refName(start.asset, start.number), direction: direction, depth: maxDepth, nodes: [], edges: [])
        var seen: [String: Int] = [:]  // ref -> node index
        var queue: [(asset: String, version: Int, store: String?, depth: Int)] = [(start.asset, start.number, nil, 0)]
        var records: [String: LineageRecord?] = [:]

        func record(_ info: VersionInfo?) throws -> LineageRecord? {
            guard let info else { return nil }
            let ref = refName(info.asset, info.number)
            if let cached = records[ref] { return cached }
            let loaded = try catalog.lineage(versionID: info.id)
            records[ref] = loaded
            return loaded
        }

        while !queue.isEmpty {
            let (asset, number, store, depth) = queue.removeFirst()
            let ref = refName(asset, number)
            if seen[ref] != nil { continue }
            let info = store == nil ? try catalog.version(of: asset, number: number) : nil
            let own = try record(info)
            seen[ref] = graph.nodes.count
            graph.nodes.append(Node(ref: ref, asset: asset, version: number, exists: info != nil,
                                    created: info.map { LineageJob.iso($0.createdNs) }, root: info?.rootHash.hex, store: store,
                                    depth: depth, jobs: own?.jobs ?? []))
            guard store == nil, info != nil, maxDepth.map({ depth < $0 }) ?? true else { continue }
            switch direction {
            case .upstream:
                for input in own?.inputs ?? [] {
                    graph.edges.append(Edge(input, to: ref))
                    queue.append((input.asset, input.version, input.store, depth + 1))
                }
            case .downstream:
                for consumer in Set(try catalog.consumers(asset: asset, version: number)).sorted(by: { ($0.asset, $0.version, $0.kind) < ($1.asset, $1.version, $1.kind) }) {
                    let made = try catalog.version(of: consumer.asset, number: consumer.version)
                    for input in try record(made)?.inputs ?? []
                    where input.asset == asset && input.version == number && input.kind.rawValue == consumer.kind && input.store == nil {
                        graph.edges.append(Edge(input, to: refName(consumer.asset, consumer.version)))
                    }
                    queue.append((consumer.asset, consumer.version, nil, depth + 1))
                }
            }
        }
        return graph
    }

    static func refName(_ asset: String, _ version: Int) -> String { "\(asset)@v\(version)" }

    /// The jobs of every node's record, once each.
    public var jobs: [LineageJob] {
        var seen = Set<String>()
        return nodes.flatMap(\.jobs).filter { seen.insert($0.id).inserted }
    }
}

extension LineageGraph.Edge {
    init(_ input: LineageInput, to: String) {
        self.init(from: LineageGraph.refName(input.asset, input.version), to: to, kind: input.kind.rawValue,
                  fileCount: input.fileCount, filesOmitted: input.filesOmitted, bytes: input.bytes, opens: input.opens,
                  jobs: input.jobs, files: input.files)
    }
}

// MARK: Formats

extension LineageGraph {
    /// Graphviz: versions are nodes (an input of another store dashed, a deleted one grey), each input an edge
    /// labelled with the job that read it and what it read (`dot -Tsvg`).
    /// `formatBytes`: how the labels write byte counts (the CLI's own format).
    public func dot(formatBytes: (UInt64) -> String) -> String {
        var lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, style=rounded, fontname=\"Helvetica\"];",
                     "  edge [fontname=\"Helvetica\", fontsize=10];"]
        let jobsByID = Dictionary(jobs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for node in nodes {
            var attributes = ["label=\(Self.quoted(node.ref + (node.exists ? "" : node.store == nil ? "\n(deleted)" : "\n(other store)")))"]
            if node.ref == ref { attributes.append("penwidth=2") }
            if !node.exists { attributes.append(node.store == nil ? "color=grey, fontcolor=grey" : "style=\"rounded,dashed\"") }
            lines.append("  \(Self.quoted(node.ref)) [\(attributes.joined(separator: ", "))];")
        }
        for edge in edges {
            var label = edge.kind == "declared" ? "declared" : "\(edge.fileCount) file\(edge.fileCount == 1 ? "" : "s"), \(formatBytes(edge.bytes))"
            if let job = edge.jobs.first.flatMap({ jobsByID[$0] }) { label = Self.jobTitle(job) + "\n" + label }
            let style = edge.kind == "declared" ? ", style=dashed" : ""
            lines.append("  \(Self.quoted(edge.from)) -> \(Self.quoted(edge.to)) [label=\(Self.quoted(label))\(style)];")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// OpenLineage run events, one JSON object per line: a START and a COMPLETE per job that made a version in
    /// the graph, its inputs as input datasets and the versions it made as output datasets. Ids and times come
    /// from the records, so the same graph always gives the same events.
    public func openLineage(namespace: String) -> String {
        struct Dataset: Encodable { let namespace: String; let name: String }
        struct RunInfo: Encodable { let runId: String }
        struct JobInfo: Encodable { let namespace: String; let name: String }
        struct Event: Encodable {
            let eventType: String
            let eventTime: String
            let producer: String
            let schemaURL: String
            let run: RunInfo
            let job: JobInfo
            let inputs: [Dataset]
            let outputs: [Dataset]
        }
        var inputs: [String: [String]] = [:]
        var outputs: [String: [String]] = [:]
        var order: [LineageJob] = []
        var known = Set<String>()
        for node in nodes {
            for job in node.jobs {
                if known.insert(job.id).inserted { order.append(job) }
                outputs[job.id, default: []].append(node.ref)
            }
        }
        for edge in edges {
            for job in edge.jobs where !(inputs[job]?.contains(edge.from) ?? false) { inputs[job, default: []].append(edge.from) }
        }
        let storeOf = Dictionary(nodes.map { ($0.ref, $0.store) }, uniquingKeysWith: { first, _ in first })
        func dataset(_ ref: String) -> Dataset { Dataset(namespace: storeOf[ref].flatMap { $0.map { "assetfs:" + $0 } } ?? namespace, name: ref) }
        var lines: [String] = []
        for job in order.sorted(by: { ($0.started, $0.id) < ($1.started, $1.id) }) {
            for (type, time) in [("START", job.started), ("COMPLETE", job.ended)] {
                let event = Event(eventType: type, eventTime: time, producer: "https://github.com/assetfs/assetfs",
                                  schemaURL: "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                                  run: RunInfo(runId: job.id.lowercased()),
                                  job: JobInfo(namespace: namespace, name: Self.jobTitle(job)),
                                  inputs: (inputs[job.id] ?? []).sorted().map(dataset),
                                  outputs: (outputs[job.id] ?? []).sorted().map(dataset))
                lines.append(CompactJSON.string(event))
            }
        }
        return lines.map { $0 + "\n" }.joined()
    }

    /// A job's short name: its run name, else its command line cut to 60 characters.
    public static func jobTitle(_ job: LineageJob) -> String {
        if let name = job.name { return name }
        let line = job.command.joined(separator: " ")
        if line.isEmpty { return "pid \(job.pid)" }
        return line.count > 60 ? String(line.prefix(57)) + "..." : line
    }

    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n") + "\""
    }
}
