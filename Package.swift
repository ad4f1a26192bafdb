// swift-tools-version: 6.0
import PackageDescription

// Dependency direction: C shims -> EmbedPSWire / RPC -> Storage -> Engine -> Server / Client -> Training -> tools.

/// Hot-path modules turn off dynamic exclusivity checks: their per-row loops touch class-stored buffers
/// whose access is already serialised by the owning table's lock (documented on each type). Measured with
/// embedps-bench: pull 1.5M -> 2.5M rows/s, push 0.35M -> 0.5M rows/s on one shard.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"])]

let package = Package(
    name: "EmbedPS",
    products: [
        .executable(name: "embedps-server", targets: ["embedps-server"]),
        .executable(name: "embedps-train", targets: ["embedps-train"]),
        .executable(name: "embedps-bench", targets: ["embedps-bench"]),
        .executable(name: "embedps-admin", targets: ["embedps-admin"]),
        .executable(name: "embedps-lookup", targets: ["embedps-lookup"]),
        .library(name: "EmbedPSClient", targets: ["Client"]),
    ],
    targets: [
        // C bridges: module maps and static inline wrappers only.
        .systemLibrary(name: "CGRPC", path: "Sources/CGRPC"),
        .systemLibrary(name: "CRocksDB", path: "Sources/CRocksDB"),
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CMicroHTTPD", path: "Sources/CMicroHTTPD"),
        .target(name: "CSentencePiece", path: "Sources/CSentencePiece",
                linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]),
        .target(name: "EmbedPSWireC", path: "Sources/EmbedPSWireC",
                linkerSettings: [.linkedLibrary("protobuf-c")]),
        // Wire contract and transport.
        .target(name: "EmbedPSWire", dependencies: ["EmbedPSWireC"]),
        .target(name: "RPC", dependencies: ["CGRPC"]),
        // Storage and engine.
        .target(name: "Storage", dependencies: ["CRocksDB", "CXXHash"], swiftSettings: hotPath),
        .target(name: "Engine", dependencies: ["Storage", "EmbedPSWire", "CXXHash", "CSentencePiece"], swiftSettings: hotPath),
        // Services.
        .target(name: "CLI"),
        .target(name: "HTTP", dependencies: ["CMicroHTTPD"]),
        .target(name: "Server", dependencies: ["Engine", "RPC", "EmbedPSWire", "HTTP"]),
        .target(name: "Client", dependencies: ["Engine", "Storage", "RPC", "EmbedPSWire"], swiftSettings: hotPath),
        .target(name: "Lookup", dependencies: ["Client", "Engine", "RPC", "HTTP", "EmbedPSWire"]),
        .target(name: "Training", dependencies: ["Client", "CLI", "SemanticID", "COpenBLAS", "CZlib", "HTTP"]),
        .target(name: "SemanticID", dependencies: ["Engine", "COpenBLAS"]),
        // Tools.
        .executableTarget(name: "embedps-server", dependencies: ["Server", "CLI", "HTTP"], path: "Sources/Tools/embedps-server"),
        .executableTarget(name: "embedps-train", dependencies: ["Training", "CLI", "HTTP"], path: "Sources/Tools/embedps-train"),
        .executableTarget(name: "embedps-bench", dependencies: ["Client", "CLI", "RPC", "EmbedPSWire"], path: "Sources/Tools/embedps-bench"),
        .executableTarget(name: "embedps-admin", dependencies: ["Client", "CLI", "SemanticID"], path: "Sources/Tools/embedps-admin"),
        .executableTarget(name: "embedps-lookup", dependencies: ["Lookup", "CLI"], path: "Sources/Tools/embedps-lookup"),
        // Tests.
        .testTarget(name: "WireTests", dependencies: ["EmbedPSWire", "EmbedPSWireC"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Storage"]),
        .testTarget(name: "RPCTests", dependencies: ["RPC"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training"]),
        .testTarget(name: "SemanticIDTests", dependencies: ["SemanticID", "Engine"]),
        .testTarget(name: "IntegrationTests", dependencies: ["Client", "Engine", "RPC", "EmbedPSWire", "CLI", "embedps-server", "embedps-train", "embedps-admin", "embedps-lookup", "SemanticID"], exclude: ["python"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
