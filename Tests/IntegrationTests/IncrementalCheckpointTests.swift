import Testing
import Foundation
import Vocabulary
import Client

/// Incremental checkpoints (issue: followers and incremental checkpoints): a checkpoint taken against a
/// base stores only what changed since it, and restoring it (base + delta, or base + two deltas) gives
/// back every row bitwise, optimizer state included, with tables created and dropped since the base.
@Suite struct IncrementalCheckpointTests {
    @Test func baseAndDeltasRestoreEveryRowAndTheOptimizerState() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        let spec = TableSpec(name: "t", dim: 4, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 3))
        try await client.admin.createTable(spec)
        try await client.admin.createTable(TableSpec(name: "gone", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        var rng = SplitMix64(seed: 9)
        func push(_ table: String, _ ids: [UInt64], dim: Int = 4) async throws {
            try await client.push(table: table, ids: ids, gradients: (0..<(ids.count * dim)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 })
        }
        let all = (0..<20_000).map { UInt64($0) }
        try await push("t", all)
        try await push("gone", [1, 2], dim: 2)
        let base = try await client.admin.createCheckpoint(name: "base")

        // Changes after the base: some rows, a new table, a dropped table.
        try await push("t", Array(all.prefix(300)))
        try await client.admin.createTable(TableSpec(name: "late", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await push("late", [5, 6], dim: 2)
        _ = try await client.admin.dropTable("gone")
        let d1 = try await client.admin.createCheckpoint(name: "d1", base: "base")
        #expect(d1.allSatisfy { $0.base == "base" })
        let baseBytes = base.reduce(0) { $0 + $1.bytes }, deltaBytes = d1.reduce(0) { $0 + $1.bytes }
        #expect(deltaBytes * 10 < baseBytes, "delta \(deltaBytes) bytes, base \(baseBytes)")
        let atD1 = try await client.pull(table: "t", ids: all), lateAtD1 = try await client.pull(table: "late", ids: [5, 6])

        try await push("t", Array(all.suffix(100)))
        let d2 = try await client.admin.createCheckpoint(name: "d2", base: "d1")
        #expect(d2.allSatisfy { $0.base == "d1" })
        let atD2 = try await client.pull(table: "t", ids: all)
        // The next push from d2's state: restored optimizer state must give the same result.
        let probe = Array(all.prefix(8)), probeGrad = (0..<32).map { Float($0) / 10 - 1.5 }
        try await client.push(table: "t", ids: probe, gradients: probeGrad)
        let afterProbe = try await client.pull(table: "t", ids: probe)
        try await push("t", all)   // everything changes again

        _ = try await client.admin.restoreCheckpoint(name: "d1")
        #expect(try await client.pull(table: "t", ids: all).map(\.bitPattern) == atD1.map(\.bitPattern))
        #expect(try await client.pull(table: "late", ids: [5, 6]) == lateAtD1)
        #expect(!(try await client.admin.listTables()).contains("gone"))

        _ = try await client.admin.restoreCheckpoint(name: "d2")
        #expect(try await client.pull(table: "t", ids: all).map(\.bitPattern) == atD2.map(\.bitPattern))
        try await client.push(table: "t", ids: probe, gradients: probeGrad)
        #expect(try await client.pull(table: "t", ids: probe).map(\.bitPattern) == afterProbe.map(\.bitPattern), "optimizer state after restoring d2 differs")
        // Restored shards keep working across a restart (sequences continue after the delta's cut).
        try await push("t", Array(all.prefix(50)))
        let beforeRestart = try await client.pull(table: "t", ids: all)
        cluster.kill9(0); try cluster.restart(0)
        #expect(try await client.pull(table: "t", ids: all).map(\.bitPattern) == beforeRestart.map(\.bitPattern))

        let list = try await client.admin.listCheckpoints()
        #expect(list.first { $0.name == "d2" }?.base == "d1" && list.first { $0.name == "base" }?.base == nil)
        // A delta needs an existing base.
        await #expect(throws: (any Error).self) { _ = try await client.admin.createCheckpoint(name: "d3", base: "nope") }
    }
}
