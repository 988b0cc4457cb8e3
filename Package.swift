// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "assetfs",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "assetfs", targets: ["assetfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // Thin system-library targets: one per C library, each a modulemap plus a shim header.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CFUSE3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        // Bytes: chunker, hashing, codec, pack files, the PackStorage protocol and its local backend.
        // Metrics are counted through swift-metrics (a facade, as swift-log is for logs): no-ops unless a
        // process bootstraps a backend (the mount's AssetTelemetry does).
        .target(name: "AssetStore", dependencies: [
            "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // Packs on S3-compatible object storage: a second PackStorage, signed requests through libcurl.
        .target(name: "AssetObjectStore", dependencies: [
            "CCurl", "AssetStore", .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The catalog of shared stores on PostgreSQL through libpq: a second Catalog.
        .target(name: "AssetPostgres", dependencies: [
            "CPostgres", "AssetStore", "AssetCatalog", .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // Assets, versions, trees, tags, audit: the Catalog protocol and its SQLite implementation.
        .target(name: "AssetCatalog", dependencies: ["CSQLite", "AssetStore"]),
        // Operations over store + catalog: import, export, verify, diff, gc. Yams reads YAML metadata files.
        .target(name: "AssetRepository", dependencies: [
            "AssetStore", "AssetCatalog",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Stores of every kind by location: local directories, and shared stores (S3 packs, PostgreSQL catalog).
        .target(name: "AssetSharedStore", dependencies: ["AssetRepository", "AssetObjectStore", "AssetPostgres"]),
        // POSIX semantics without the kernel; speaks errno, never imports CFUSE3.
        .target(name: "AssetVFS", dependencies: [
            "AssetRepository",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The only importer of CFUSE3: translation of kernel requests into VFS calls.
        .target(name: "AssetFUSE", dependencies: [
            "CFUSE3", "AssetVFS", "AssetStore", "AssetCatalog",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // A mount's metrics in the Prometheus text format (swift-prometheus), served over HTTP (FlyingFox) on a
        // UNIX socket for `assetfs stats --mount`, and on a TCP address when asked (--metrics).
        .target(name: "AssetTelemetry", dependencies: [
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "FlyingFox", package: "FlyingFox"),
        ]),
        .executableTarget(name: "assetfs", dependencies: [
            "AssetStore", "AssetCatalog", "AssetRepository", "AssetSharedStore", "AssetVFS", "AssetFUSE", "AssetTelemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "AssetBench", dependencies: [
            "AssetStore",
            "AssetObjectStore",
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "Benchmarks/AssetBench"),

        // Helpers shared by the test targets below (temporary stores, deterministic bytes, byte flips).
        .target(name: "AssetTestSupport", path: "Tests/AssetTestSupport"),
        .testTarget(name: "AssetStoreTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "AssetCatalogTests", dependencies: ["AssetCatalog", "AssetTestSupport"]),
        .testTarget(name: "AssetObjectStoreTests", dependencies: ["AssetObjectStore", "AssetStore", "AssetTestSupport"]),
        .testTarget(name: "AssetPostgresTests", dependencies: ["AssetPostgres", "AssetCatalog", "AssetTestSupport"]),
        .testTarget(name: "AssetVFSTests", dependencies: ["AssetVFS"]),
        .testTarget(name: "AssetTelemetryTests", dependencies: [
            "AssetTelemetry", .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .testTarget(name: "AssetRepositoryTests", dependencies: ["AssetRepository", "AssetTestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "MountTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "WorkspaceTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "ExamplesTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "ReliabilityTests", dependencies: ["AssetStore", "AssetCatalog", "AssetTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
