// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Outpost",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "outpost", targets: ["outpost"]),
        .executable(name: "outpost-sample-origin", targets: ["OutpostSampleOrigin"]),
        .executable(name: "outpost-purge-bench", targets: ["OutpostPurgeBench"]),
        // For the fuzz targets in fuzz/ (a package of their own, built with libFuzzer).
        .library(
            name: "OutpostModules",
            targets: [
                "HTTPCaching", "CacheStore", "ContentCoding", "OutpostConfig", "EdgeTelemetry", "CacheTransaction",
                "EdgeAdmin", "EdgeProxy",
            ]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-http-structured-headers.git", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        .systemLibrary(
            name: "CBrotli",
            pkgConfig: "libbrotlienc",
            providers: [.apt(["libbrotli-dev"])]
        ),
        .target(
            name: "HTTPCaching",
            dependencies: [.product(name: "RawStructuredFieldValues", package: "swift-http-structured-headers")]
        ),
        .target(
            name: "CacheStore",
            dependencies: ["CLMDB", "CXXHash", "HTTPCaching", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "ContentCoding",
            dependencies: [
                "CBrotli",
                "HTTPCaching",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The configuration: its types, defaults and the TOML loader (the only TOMLKit user).
        .target(
            name: "OutpostConfig",
            dependencies: [
                "HTTPCaching", "CacheStore", "ContentCoding", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // The node's counters, for /stats and /metrics.
        .target(
            name: "EdgeTelemetry",
            dependencies: [
                "HTTPCaching", "CacheStore", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // A request's way through the cache: the transaction and its steps, the pipeline that
        // performs them, the Origin protocol. No HTTP server or client: NIOCore for ByteBuffer.
        .target(
            name: "CacheTransaction",
            dependencies: [
                "HTTPCaching", "CacheStore", "ContentCoding", "OutpostConfig", "EdgeTelemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The admin API's routes and work (purge, stats, metrics, health); its listener is the
        // front end's.
        .target(
            name: "EdgeAdmin",
            dependencies: [
                "HTTPCaching", "CacheStore", "OutpostConfig", "EdgeTelemetry", "CacheTransaction", "PurgeJournal",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The purge journal on PostgreSQL (docs/fleet.md): the only postgres-nio user.
        .target(
            name: "PurgeJournal",
            dependencies: [
                "CacheStore", "OutpostConfig", "EdgeTelemetry",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The front end: listeners (HTTP/1.1; TLS and HTTP/2 to clients), connections, timeouts,
        // request validation, the hit path, and the HTTP/1.1 client to the origins.
        .target(
            name: "EdgeProxy",
            dependencies: [
                "HTTPCaching",
                "CacheStore",
                "ContentCoding",
                "OutpostConfig",
                "EdgeTelemetry",
                "CacheTransaction",
                "EdgeAdmin",
                "PurgeJournal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "outpost",
            dependencies: [
                "EdgeProxy",
                "CacheTransaction",
                "OutpostConfig",
                "EdgeAdmin",
                "CacheStore",
                "HTTPCaching",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "OutpostSampleOrigin",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "tools/sample-origin"
        ),
        .executableTarget(
            name: "OutpostPurgeBench",
            dependencies: [
                "CacheStore", "HTTPCaching", "OutpostTestSupport", .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "tools/purge-bench"
        ),
        .testTarget(name: "HTTPCachingTests", dependencies: ["HTTPCaching"]),
        .testTarget(
            name: "CacheStoreTests",
            dependencies: [
                "CacheStore", "HTTPCaching", "OutpostTestSupport", .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Helpers shared by the test targets (running the system's gzip and brotli, test bytes).
        .target(name: "OutpostTestSupport", path: "Tests/OutpostTestSupport"),
        .testTarget(
            name: "ContentCodingTests",
            dependencies: [
                "ContentCoding", "HTTPCaching", "OutpostTestSupport", .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The transaction's pure parts, by tables: no store, origin or socket.
        .testTarget(
            name: "CacheTransactionTests",
            dependencies: [
                "CacheTransaction", "CacheStore", "HTTPCaching", "OutpostConfig", "EdgeTelemetry",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "EdgeProxyTests",
            dependencies: [
                "EdgeProxy",
                "OutpostConfig",
                "EdgeTelemetry",
                "CacheTransaction",
                "EdgeAdmin",
                "PurgeJournal",
                "OutpostTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
