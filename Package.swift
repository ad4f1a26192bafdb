// swift-tools-version: 6.0
import PackageDescription

// Dependency direction (one way):
//   EmbedPSWire (generated messages)  RPC (gRPC bridge)  CLI  HTTP
//   Vocabulary (specs, names, slot map, addressing, request ids) -> EmbedPSWire
//   SemanticTokenizers (n-gram / SentencePiece pieces) -> Vocabulary
//   Storage (RocksDB, codec, row store, log) -> Engine (tables, shard) -> Server
//   Client -> Vocabulary, EmbedPSWire, RPC          (no storage: checked by Cluster/test.sh)
//   Lookup, Training -> Client; tools on top.

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
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .target(name: "CSentencePiece", path: "Sources/CSentencePiece",
                linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]),
        // The optimizers' per-row arithmetic, in C so it is vectorised (Swift left sqrt and division scalar).
        .target(name: "COptimizerKernels", path: "Sources/COptimizerKernels",
                cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]),
        // Wire contract and transport.
        .target(name: "EmbedPSWire"),
        .target(name: "Vocabulary", dependencies: ["EmbedPSWire", "CXXHash"], swiftSettings: hotPath),
        .target(name: "SemanticTokenizers", dependencies: ["Vocabulary", "CSentencePiece", "CXXHash"]),
        .target(name: "RPC", dependencies: ["CGRPC"]),
        // Storage and engine.
        .target(name: "Storage", dependencies: ["Vocabulary", "CRocksDB", "CXXHash", "CLinux"], swiftSettings: hotPath),
        .target(name: "Engine", dependencies: ["Vocabulary", "SemanticTokenizers", "Storage", "EmbedPSWire", "CXXHash", "COptimizerKernels"], swiftSettings: hotPath),
        // Services.
        .target(name: "CLI"),
        .target(name: "HTTP", dependencies: ["CMicroHTTPD"]),
        .target(name: "ServiceSupport", dependencies: ["RPC", "EmbedPSWire", "Vocabulary"]),
        // etcd leases for automatic failover (its JSON gateway over plain sockets).
        .target(name: "Coordination"),
        .target(name: "Server", dependencies: ["Engine", "Vocabulary", "ServiceSupport", "RPC", "EmbedPSWire", "HTTP", "Coordination"]),
        .target(name: "Client", dependencies: ["Vocabulary", "RPC", "EmbedPSWire"], swiftSettings: hotPath),
        .target(name: "Lookup", dependencies: ["Client", "Vocabulary", "ServiceSupport", "RPC", "HTTP", "EmbedPSWire"]),
        // A cluster checkpoint opened read-only in process (embedps-lookup --checkpoint): the one reader that links storage.
        .target(name: "CheckpointReader", dependencies: ["Lookup", "Engine", "Server", "Vocabulary"]),
        .target(name: "Training", dependencies: ["Client", "Vocabulary", "SemanticTokenizers", "CLI", "SemanticID", "COpenBLAS", "CZlib", "HTTP"]),
        .target(name: "SemanticID", dependencies: ["Vocabulary", "SemanticTokenizers", "COpenBLAS"]),
        // Tools.
        .executableTarget(name: "embedps-server", dependencies: ["Server", "ServiceSupport", "Engine", "Vocabulary", "RPC", "CLI", "HTTP"], path: "Sources/Tools/embedps-server"),
        .executableTarget(name: "embedps-train", dependencies: ["Training", "Vocabulary", "CLI", "HTTP"], path: "Sources/Tools/embedps-train"),
        .executableTarget(name: "embedps-bench", dependencies: ["Client", "Engine", "Storage", "Vocabulary", "CLI", "RPC", "EmbedPSWire"], path: "Sources/Tools/embedps-bench"),
        .executableTarget(name: "embedps-admin", dependencies: ["Client", "Vocabulary", "SemanticTokenizers", "EmbedPSWire", "CLI", "SemanticID"], path: "Sources/Tools/embedps-admin"),
        .executableTarget(name: "embedps-lookup", dependencies: ["Lookup", "CheckpointReader", "CLI", "Vocabulary"], path: "Sources/Tools/embedps-lookup"),
        // Tests.
        .testTarget(name: "WireTests", dependencies: ["EmbedPSWire"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Storage", "Vocabulary", "SemanticTokenizers", "EmbedPSWire"]),
        .testTarget(name: "RPCTests", dependencies: ["RPC"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Vocabulary", "Client"]),
        .testTarget(name: "SemanticIDTests", dependencies: ["SemanticID", "Engine", "Vocabulary", "SemanticTokenizers"]),
        .testTarget(name: "IntegrationTests", dependencies: ["Client", "Engine", "Vocabulary", "SemanticTokenizers", "RPC", "EmbedPSWire", "CLI", "embedps-server", "embedps-train", "embedps-admin", "embedps-lookup", "SemanticID", "Coordination", "Training"], exclude: ["python"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
