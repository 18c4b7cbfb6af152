// swift-tools-version:6.0
// libFuzzer targets for Outpost's parsers and its store (docs/testing.md, "Fuzzing"). A
// package of its own: its executables have no `main` (libFuzzer supplies it), so they are
// built only with `-sanitize=fuzzer`, by fuzz/run, never by the main package's build.
import PackageDescription

let fuzzing: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "OutpostFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "Outpost", path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "FuzzRequestHead",
            dependencies: ["FuzzDriver", .product(name: "OutpostModules", package: "Outpost")],
            swiftSettings: fuzzing),
        .executableTarget(
            name: "FuzzCacheControl",
            dependencies: ["FuzzDriver", .product(name: "OutpostModules", package: "Outpost")],
            swiftSettings: fuzzing),
        .executableTarget(
            name: "FuzzRange", dependencies: ["FuzzDriver", .product(name: "OutpostModules", package: "Outpost")],
            swiftSettings: fuzzing),
        .executableTarget(
            name: "FuzzAcceptEncoding",
            dependencies: ["FuzzDriver", .product(name: "OutpostModules", package: "Outpost")],
            swiftSettings: fuzzing),
        .executableTarget(
            name: "FuzzStore", dependencies: ["FuzzDriver", .product(name: "OutpostModules", package: "Outpost")],
            swiftSettings: fuzzing),
    ],
    swiftLanguageModes: [.v6]
)
