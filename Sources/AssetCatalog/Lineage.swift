import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a version was made from: its inputs (observed by a mount, or declared with `--input`) and the jobs
/// that read them. Stored as one JSON document per version (Documentation/Lineage.md).
public struct LineageRecord: Codable, Sendable, Equatable {
    public var inputs: [LineageInput]
    public var jobs: [LineageJob]

    public init(inputs: [LineageInput] = [], jobs: [LineageJob] = []) {
        self.inputs = inputs
        self.jobs = jobs
    }

    public var isEmpty: Bool { inputs.isEmpty && jobs.isEmpty }

    /// Distinct (asset, version, kind) triples, for the `version_inputs` index.
    public var inputKeys: [(asset: String, version: Int, kind: String)] {
        var seen = Set<String>()
        var out: [(String, Int, String)] = []
        for i in inputs where seen.insert("\(i.asset)\u{0}\(i.version)\u{0}\(i.kind.rawValue)").inserted {
            out.append((i.asset, i.version, i.kind.rawValue))
        }
        return out
    }

    public func encoded() -> String { CompactJSON.string(self) }

    public static func decode(_ text: String) throws -> LineageRecord {
        do { return try JSONDecoder().decode(LineageRecord.self, from: Data(text.utf8)) } catch {
            throw CatalogError(.corrupt, "a lineage record does not parse: \(error)")
        }
    }

    /// Adds `other`'s inputs and jobs; inputs of the same asset@version, kind and store are merged.
    public mutating func merge(_ other: LineageRecord, fileLimit: Int = LineageLimits.filesPerInput) {
        for job in other.jobs where !jobs.contains(where: { $0.id == job.id }) { jobs.append(job) }
        for input in other.inputs {
            if let i = inputs.firstIndex(where: { $0.sameVersion(as: input) }) {
                inputs[i].merge(input, fileLimit: fileLimit)
            } else {
                var copy = LineageInput(asset: input.asset, version: input.version, kind: input.kind, store: input.store)
                copy.merge(input, fileLimit: fileLimit)
                inputs.append(copy)
            }
        }
        inputs.sort { ($0.asset, $0.version, $0.kind.rawValue) < ($1.asset, $1.version, $1.kind.rawValue) }
    }
}

public enum LineageLimits {
    /// Files listed per input of a version (and per job in a daemon); past it, opens and bytes are counted only.
    public static let filesPerInput = 20_000
    /// Bytes of one recorded argument, and of the whole command line.
    public static let argumentBytes = 256
    public static let commandBytes = 4096
}

public struct LineageInput: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case observed, declared }

    public var asset: String
    public var version: Int
    public var kind: Kind
    /// The location of the store the version was read from, when it is not the version's own store.
    public var store: String?
    public var files: [LineageFile]
    /// Distinct files listed plus opens past the bound (`filesOmitted`).
    public var fileCount: Int
    public var filesOmitted: Int
    public var bytes: UInt64
    public var opens: UInt64
    /// Ids of the jobs (in the record's `jobs`) that read it.
    public var jobs: [String]

    public init(asset: String, version: Int, kind: Kind, store: String? = nil, files: [LineageFile] = [],
                filesOmitted: Int = 0, bytes: UInt64 = 0, opens: UInt64 = 0, jobs: [String] = []) {
        self.asset = asset
        self.version = version
        self.kind = kind
        self.store = store
        self.files = files
        self.fileCount = files.count + filesOmitted
        self.filesOmitted = filesOmitted
        self.bytes = bytes
        self.opens = opens
        self.jobs = jobs
    }

    public var ref: String { "\(asset)@v\(version)" }

    func sameVersion(as other: LineageInput) -> Bool {
        asset == other.asset && version == other.version && kind == other.kind && store == other.store
    }

    /// Sums bytes and opens per path; files past `fileLimit` are counted in `filesOmitted`.
    mutating func merge(_ other: LineageInput, fileLimit: Int) {
        var index = Dictionary(uniqueKeysWithValues: files.enumerated().map { ($1.path, $0) })
        for f in other.files {
            if let i = index[f.path] {
                files[i].bytes += f.bytes
                files[i].opens += f.opens
            } else if files.count < fileLimit {
                index[f.path] = files.count
                files.append(f)
            } else {
                filesOmitted += 1
            }
        }
        filesOmitted += other.filesOmitted
        bytes += other.bytes
        opens += other.opens
        for j in other.jobs where !jobs.contains(j) { jobs.append(j) }
        files.sort { $0.path < $1.path }
        fileCount = files.count + filesOmitted
    }
}

public struct LineageFile: Codable, Sendable, Equatable {
    public var path: String
    public var bytes: UInt64
    public var opens: UInt64

    public init(path: String, bytes: UInt64, opens: UInt64) {
        self.path = path
        self.bytes = bytes
        self.opens = opens
    }
}

/// A job: the processes one attribution rule groups together (Documentation/Lineage.md).
public struct LineageJob: Codable, Sendable, Equatable {
    public var id: String
    /// `run`, `cgroup`, `process-group`, or `declared` for a job named by hand.
    public var attribution: String
    public var name: String?
    public var pid: Int32
    public var command: [String]
    public var commandTruncated: Bool
    public var uid: UInt32
    public var user: String
    public var host: String
    /// ISO 8601, UTC.
    public var started: String
    public var ended: String
    public var cgroup: String?
    public var container: String?
    /// The command's exit status, where `assetfs run` saw it end.
    public var exitStatus: Int32?

    public init(id: String, attribution: String, name: String? = nil, pid: Int32, command: [String],
                commandTruncated: Bool, uid: UInt32, user: String, host: String, started: String, ended: String,
                cgroup: String? = nil, container: String? = nil, exitStatus: Int32? = nil) {
        self.id = id
        self.attribution = attribution
        self.name = name
        self.pid = pid
        self.command = command
        self.commandTruncated = commandTruncated
        self.uid = uid
        self.user = user
        self.host = host
        self.started = started
        self.ended = ended
        self.cgroup = cgroup
        self.container = container
        self.exitStatus = exitStatus
    }

    /// Cuts each argument to `LineageLimits.argumentBytes` and the list to `commandBytes`.
    public static func truncate(_ arguments: [String]) -> (command: [String], truncated: Bool) {
        var out: [String] = []
        var total = 0
        var truncated = false
        for a in arguments {
            var bytes = Array(a.utf8)
            if bytes.count > LineageLimits.argumentBytes {
                bytes = Array(bytes.prefix(LineageLimits.argumentBytes))
                truncated = true
            }
            if total + bytes.count > LineageLimits.commandBytes {
                truncated = true
                break
            }
            total += bytes.count
            out.append(String(decoding: bytes, as: UTF8.self))
        }
        return (out, truncated)
    }

    /// ISO 8601 in UTC with milliseconds ("2026-12-07T10:00:00.123Z"). By hand with gmtime_r: the mount
    /// names jobs while it answers requests, and Foundation's formatters load ICU's data on first use (tens of
    /// milliseconds after the page cache was dropped, measured by `AssetBench lineage`).
    public static func iso(_ ns: Int64) -> String {
        var seconds = time_t(ns / 1_000_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ n: Int32, _ width: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let millis = Int32((ns % 1_000_000_000) / 1_000_000)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(millis, 3))Z"
    }
}

/// A version that names another as its input (for `lineage --downstream`).
public struct LineageConsumer: Sendable, Equatable, Hashable {
    public var asset: String
    public var version: Int
    public var kind: String

    public init(asset: String, version: Int, kind: String) {
        self.asset = asset
        self.version = version
        self.kind = kind
    }
}

/// One input in short: what `show` prints and the xattr `user.assetfs.inputs` holds.
public struct LineageInputSummary: Codable, Sendable, Equatable {
    public var asset: String
    public var version: Int
    public var kind: String
    public var files: Int
    public var bytes: UInt64
    public var store: String?
}

extension LineageRecord {
    public var summary: [LineageInputSummary] {
        inputs.map { LineageInputSummary(asset: $0.asset, version: $0.version, kind: $0.kind.rawValue, files: $0.fileCount,
                                         bytes: $0.bytes, store: $0.store) }
    }

    /// The summary as compact JSON, keys sorted.
    public var summaryJSON: String { CompactJSON.string(summary) }
}

/// One line of JSON, keys sorted, slashes as they are: records, xattrs and OpenLineage events, so that the same
/// value always gives the same bytes.
public enum CompactJSON {
    /// For values made of strings, integers, booleans and finite numbers (MetaValue admits no other), whose
    /// encoding cannot fail.
    public static func string<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Safe: see above; JSONEncoder fails only on non-finite numbers.
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }
}
