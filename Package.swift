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
    ],
    targets: [
        // Thin system-library targets: one per C library, each a modulemap plus a shim header.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CFUSE3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        // Bytes: chunker, hashing, codec, pack files, the PackStorage protocol and its local backend.
        .target(name: "AssetStore", dependencies: [
            "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Packs on S3-compatible object storage: a second PackStorage, signed requests through libcurl.
        .target(name: "AssetObjectStore", dependencies: ["CCurl", "AssetStore"]),
        // The catalog of shared stores on PostgreSQL through libpq: a second Catalog.
        .target(name: "AssetPostgres", dependencies: ["CPostgres", "AssetStore", "AssetCatalog"]),
        // Assets, versions, trees, tags, audit: the Catalog protocol and its SQLite implementation.
        .target(name: "AssetCatalog", dependencies: ["CSQLite", "AssetStore"]),
        // Operations over store + catalog: import, export, verify, diff, gc.
        .target(name: "AssetRepository", dependencies: [
            "AssetStore", "AssetCatalog",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Stores of every kind by location: local directories, and shared stores (S3 packs, PostgreSQL catalog).
        .target(name: "AssetSharedStore", dependencies: ["AssetRepository", "AssetObjectStore", "AssetPostgres"]),
        // POSIX semantics without the kernel; speaks errno, never imports CFUSE3.
        .target(name: "AssetVFS", dependencies: [
            "AssetRepository",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The only importer of CFUSE3: translation of kernel requests into VFS calls.
        .target(name: "AssetFUSE", dependencies: [
            "CFUSE3", "AssetVFS",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "assetfs", dependencies: [
            "AssetStore", "AssetCatalog", "AssetRepository", "AssetSharedStore", "AssetVFS", "AssetFUSE",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "AssetBench", dependencies: [
            "AssetStore",
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "Benchmarks/AssetBench"),

        // Helpers shared by the test targets below (temporary stores, deterministic bytes, byte flips).
        .target(name: "AssetTestSupport", path: "Tests/AssetTestSupport"),
        .testTarget(name: "AssetStoreTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "AssetCatalogTests", dependencies: ["AssetCatalog", "AssetTestSupport"]),
        .testTarget(name: "AssetObjectStoreTests", dependencies: ["AssetObjectStore", "AssetStore", "AssetTestSupport"]),
        .testTarget(name: "AssetPostgresTests", dependencies: ["AssetPostgres", "AssetCatalog", "AssetTestSupport"]),
        .testTarget(name: "AssetVFSTests", dependencies: ["AssetVFS"]),
        .testTarget(name: "AssetRepositoryTests", dependencies: ["AssetRepository", "AssetTestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "MountTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "WorkspaceTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "ExamplesTests", dependencies: ["AssetStore", "AssetTestSupport"]),
        .testTarget(name: "ReliabilityTests", dependencies: ["AssetStore", "AssetCatalog", "AssetTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
