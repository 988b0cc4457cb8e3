import ArgumentParser
import AssetCatalog
import AssetRepository
import AssetSharedStore
import AssetFUSE
import AssetStore
import AssetTelemetry
import Foundation

struct Prefetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill this host's disk cache with a version, or a path in it, before a job reads it (shared stores).",
        discussion: """
            Chunks already cached are not fetched again; every fetched chunk is verified before it is cached. A mount
            reading the same version meanwhile shares the cache.

            Example: assetfs prefetch data@prod --store s3://team-assets/store
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag
    @Argument(help: "The version (data, data@v12, data@prod) or a path in it (data@v12:shards).") var ref: String
    @Option(help: "Fetches in flight.") var jobs = 16

    func validate() throws {
        guard (1...256).contains(jobs) else { throw ValidationError("invalid --jobs \(jobs): give 1 to 256") }
    }

    func run() throws {
        let target = try parseRef(ref)
        var prefetcher = Prefetcher(repo: try store.open())
        prefetcher.workers = jobs
        let show = store.showProgress
        let started = Date()
        let r = try prefetcher.run(target) { done, total in
            if show { ProgressBar.render(done: done, total: total, elapsed: Date().timeIntervalSince(started), label: "prefetching") }
        }
        if show { ProgressBar.finish() }
        if output.json {
            try printJSON(r)
        } else if !store.quiet {
            print("prefetched \(r.ref): \(r.files) files, \(r.chunks) chunks; fetched \(Format.bytes(r.bytesFetched)), "
                  + "\(Format.bytes(r.bytesCached)) already cached; "
                  + String(format: "%.0f MB/s in %.1f s", r.bytesPerSecond / 1e6, r.seconds))
        }
    }
}

struct Cache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show or clear this host's disk cache of chunks (shared stores).",
        discussion: "Example: assetfs cache; assetfs cache clear --store s3://team-assets/store; assetfs cache clear --all",
        subcommands: [CacheShow.self, CacheClear.self],
        defaultSubcommand: CacheShow.self)
}

/// The disk cache the options and the environment name (no store needs to be opened).
private func diskCache(_ store: StoreOptions) throws -> (cache: DiskChunkCache, limit: UInt64) {
    let settings = try store.sharedSettings()
    let limit = settings.diskCacheBytes ?? SharedStoreSettings.defaultDiskCacheBytes
    return (try DiskChunkCache(directory: settings.diskCacheDirectory(), capacity: limit), limit)
}

struct CacheShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Where the disk cache is and what it holds.",
                                                    discussion: "Example: assetfs cache --json")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: JSONFlag

    struct CacheJSON: Encodable {
        let directory: String
        let chunks: Int
        let bytes: UInt64
        let limitBytes: UInt64
        /// The cached chunks of each store named (--store, $ASSETFS_STORE) or mounted on this host.
        let stores: [DiskCacheShare]
        /// The shared-store mounts of this host and their disk-cache lookups since each started.
        let mounts: [MountJSON]
    }

    struct MountJSON: Encodable {
        let mountpoint: String
        let store: String
        let hits: Double
        let misses: Double
        let hitRatio: Double?
    }

    func run() throws {
        let (cache, limit) = try diskCache(store)
        let usage = cache.usage()
        // Each running mount of a shared store says how its lookups went (from its metrics socket); a mount
        // that does not answer (another user's, metrics off) is left out.
        let mounts: [MountJSON] = MountTable.assetfsMounts().filter { $0.store.hasPrefix("s3://") }.compactMap { m in
            guard let text = try? MetricsScrape.fetch(unixSocket: MountSocket.path(forMountpoint: m.mountpoint), timeout: 2),
                  let disk = MountFigures(PrometheusText.parse(text)).diskCache else { return nil }
            return MountJSON(mountpoint: m.mountpoint, store: m.store, hits: disk.hits, misses: disk.misses, hitRatio: disk.hitRatio)
        }
        let shares = try storeShares(cache, mounted: mounts.map(\.store))
        if output.json {
            try printJSON(CacheJSON(directory: cache.directory, chunks: usage.entries, bytes: usage.bytes, limitBytes: limit,
                                    stores: shares, mounts: mounts))
            return
        }
        print("""
            disk cache:  \(cache.directory)
            chunks:      \(usage.entries)
            size:        \(Format.bytes(usage.bytes)) of \(Format.bytes(limit)) (--disk-cache-size)
            """)
        for share in shares {
            print("store:       \(share.store): \(share.chunks) chunks, \(Format.bytes(share.bytes))")
        }
        for m in mounts {
            let ratio = m.hitRatio.map { String(format: "%.1f%% hit ratio", $0 * 100) } ?? "no lookups yet"
            print("mount:       \(m.mountpoint) (\(m.store)): \(Int64(m.hits)) hits, \(Int64(m.misses)) misses since it started, \(ratio)")
        }
    }

    /// Each store's part of the cache: the store named by --store or $ASSETFS_STORE when it is a shared one (an
    /// error reading it fails the command), then the stores mounted on this host (one that cannot be read is
    /// left out, with a warning).
    private func storeShares(_ cache: DiskChunkCache, mounted: [String]) throws -> [DiskCacheShare] {
        var out: [DiskCacheShare] = []
        if case .s3 = try store.location() {
            out.append(try DiskCacheShare.of(try store.open(), in: cache).share)
        }
        for url in mounted where !out.contains(where: { $0.store == url }) {
            do {
                out.append(try DiskCacheShare.of(try Stores.open(try StoreLocation(parsing: url), settings: try store.sharedSettings()), in: cache).share)
            } catch {
                let why = (error as? RepositoryError)?.message ?? (error as? StoreError)?.message ?? (error as? CatalogError)?.message ?? "\(error)"
                printError("assetfs: warning: mounted store \(url) is left out: \(why)")
            }
        }
        return out
    }
}

struct CacheClear: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear", abstract: "Delete the chunks of the store (--store, $ASSETFS_STORE) from the disk cache, or every chunk (safe while mounts run: they fetch again).",
        discussion: """
            With a shared store named (--store or $ASSETFS_STORE) only the chunks its catalog knows are deleted (a
            chunk another store holds too goes as well: the cache keeps each chunk once); with --all, or when the
            store is a local one (which has no chunks in the cache), every chunk is.

            Example: assetfs cache clear --store s3://team-assets/store; assetfs cache clear --all
            """)
    @OptionGroup var store: StoreOptions
    @Flag(help: "Delete every chunk, whichever store it came from.") var all = false

    func run() throws {
        let (cache, _) = try diskCache(store)
        guard !all, case .s3 = try store.location() else {
            let removed = cache.clear()
            if !store.quiet { print("cleared \(removed.entries) chunks (\(Format.bytes(removed.bytes))) from \(cache.directory)") }
            return
        }
        let (_, ids) = try DiskCacheShare.of(try store.open(), in: cache)
        let removed = cache.remove(ids)
        if !store.quiet {
            print("cleared \(removed.entries) chunks (\(Format.bytes(removed.bytes))) of \(try store.argument) from \(cache.directory); other stores' chunks are kept (--all clears every chunk)")
        }
    }
}
