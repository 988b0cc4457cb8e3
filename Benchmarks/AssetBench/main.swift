// AssetBench: generates a versioned data set, measures the chunker and hashing, studies chunk sizes, and
// imports every version into assetfs, borg and restic side by side. Markdown report on stdout, progress on
// stderr. See Options.usage for the command line. `AssetBench read` runs the read-path benchmark (ReadBench.swift).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    progress("\(error)")
    exit(2)
}
if options.mode == .read { exit(ReadBench.main(options)) }
if options.mode == .shared { exit(SharedBench.main(options)) }
if options.mode == .upload { exit(UploadBench.main(options)) }
if options.mode == .lineage { exit(LineageCost.main(options)) }

do {
    let work = FileIO.absolute(options.work)
    guard work != "/" else { throw BenchError("refusing to use / as the work directory") }
    let src = work + "/src"
    // Every run starts from nothing: old repositories would turn the first import into an incremental one.
    for sub in ["src", "store", "store-old", "borg", "restic", "cache", "logs", "first"] { try FileIO.removeIfPresent(work + "/" + sub) }
    try FileIO.makeDirectory(work + "/logs")
    try FileIO.makeDirectory(work + "/cache")
    let runner = CommandRunner(logDirectory: work + "/logs", environment: peerEnvironment(work: work))

    var importers: [any Importer] = []
    var tools: [String] = []
    if let binary = FileIO.executable(FileIO.absolute(options.assetfs)) {
        importers.append(AssetfsImporter(binary: binary, repository: work + "/store"))
        tools.append(toolVersion(binary, ["--version"], runner, label: "assetfs-version").map { "assetfs \($0)" }
            ?? "assetfs")
    } else {
        progress("assetfs binary \(options.assetfs) not found: its columns will show n/a")
    }
    if let path = options.baseline {
        guard let binary = FileIO.executable(FileIO.absolute(path)) else { throw BenchError("baseline binary \(path) not found") }
        importers.append(AssetfsImporter(binary: binary, repository: work + "/store-old", name: "assetfs-old"))
        tools.append(toolVersion(binary, ["--version"], runner, label: "assetfs-old-version").map { "assetfs-old \($0)" }
            ?? "assetfs-old")
    }
    if !options.skipPeers {
        guard let borg = FileIO.executable("borg") else { throw BenchError("borg not found in PATH") }
        guard let restic = FileIO.executable("restic") else { throw BenchError("restic not found in PATH") }
        importers.append(BorgImporter(binary: borg, repository: work + "/borg"))
        importers.append(ResticImporter(binary: restic, repository: work + "/restic"))
        tools.append(toolVersion(borg, ["--version"], runner, label: "borg-version") ?? "borg")
        tools.append(toolVersion(restic, ["version"], runner, label: "restic-version")?
            .split(separator: " ").prefix(2).joined(separator: " ") ?? "restic")
    }

    let layout = DataSetLayout(scale: options.scale)
    let generator = DataSetGenerator(root: src, layout: layout)
    let study = ChunkStudy()
    var micro: MicroResult?
    var records: [VersionRecord] = []
    var plainCopies = 0
    var firstImport: FirstImport?

    for version in 1...DataSetLayout.versions {
        let (change, generateSeconds) = try timed {
            if version == 1 {
                try generator.createFirstVersion()
                return "created"
            }
            return try generator.advance()
        }
        let files = try FileIO.regularFiles(under: src)
        let logical = try files.reduce(0) { try $0 + FileIO.signature($1).size }
        plainCopies += logical
        progress("v\(version): \(files.count) files, \(megabytes(logical)) MB, generated in "
            + "\(fixed(generateSeconds, 1)) s: \(change)")

        if version == 1 {
            progress("micro benchmarks...")
            micro = try Micro.run(files: files, root: src, budget: min(256 << 20, logical))
        }
        let (changed, studySeconds) = try timed { try study.add(files: files) }
        progress("v\(version): chunk study over \(changed) new or changed files in \(fixed(studySeconds, 1)) s")

        var record = VersionRecord(version: version, logicalBytes: logical, plainCopiesBytes: plainCopies)
        for importer in importers {
            if version == 1 { try importer.create(runner) }
            let seconds = try importer.importVersion(version, source: src, runner)
            let size = try FileIO.apparentSize(of: importer.repository)
            record.seconds[importer.name] = seconds
            record.repositoryBytes[importer.name] = size
            progress("v\(version): \(importer.name) \(fixed(seconds, 2)) s, repository \(megabytes(size)) MB")
        }
        records.append(record)
        if version == 1 { firstImport = try FirstImport.measure(source: src, work: work + "/first", importers: importers, runner: runner) }
    }

    let report = Report(layout: layout, machine: "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores",
                        tools: tools, micro: micro!, study: study.rows, records: records, firstImport: firstImport)
    print(report.render())
} catch {
    progress("AssetBench failed: \(error)")
    exit(1)
}
