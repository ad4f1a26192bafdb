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

    /// Tables with state beside their rows (sparsity schedule, DNIS state, semantic items) in a delta: a
    /// sparsity step and a DNIS prune since the base (rows rewritten without moving their sequences) put the
    /// table in the delta whole; restoring the delta gives back every stored row and the side state bitwise.
    @Test func deltasCoverSparsityDnisAndSemanticTables() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        var dsl = TableSpec(name: "dsl", dim: 16, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 2))
        dsl.sparsity = SparsityConfig(density: 0.25)
        var mixed = TableSpec(name: "mixed", dim: 8, optimizer: opt, initializer: .uniform(-1, 1, seed: 7))
        mixed.dnis = DnisConfig(blocks: 4)
        var sem = TableSpec(name: "sem", dim: 8, optimizer: opt, initializer: .uniform(-0.1, 0.1, seed: 4))
        sem.semantic = SemanticConfig(tokenizer: .prefix(3), levels: 3, codebookSize: 16, budget: 2000)
        for spec in [dsl, mixed, sem] { try await client.admin.createTable(spec) }
        var rng = SplitMix64(seed: 5)
        var nextItem: UInt64 = 0
        var pruned = false
        func changes(prune: Bool) async throws {
            let ids = Array(Set((0..<400).map { _ in rng.next() % 2000 }))
            try await client.push(table: "dsl", ids: ids, gradients: (0..<(ids.count * 16)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
            try await client.push(table: "mixed", ids: ids, gradients: (0..<(ids.count * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
            _ = try await client.admin.sparsityStep(table: "dsl")
            if prune && !pruned { _ = try await client.admin.dnisPrune(table: "mixed", ratio: 0.3); pruned = true } else if !pruned {
                _ = try await client.admin.dnisAssignBlocks(table: "mixed")
                _ = try await client.dnisPushAlphaGradient(table: "mixed", ids: Array(ids.prefix(50)), gradients: FloatBuffer((0..<400).map { Float(($0 % 8) - 2) * 0.1 }))
            }
            let items = (0..<40).map { _ in nextItem += 1; return nextItem }
            try await client.admin.registerItems(table: "sem", items: items, codes: items.map { _ in (0..<3).map { _ in Int(rng.next() % 16) } })
            _ = try await client.pushPooled(table: "sem", items: items, gradients: (0..<(items.count * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
        }
        func snapshot() async throws -> ([String: [UInt64: [UInt8]]], [UInt8], [UInt8]) {
            var rows: [String: [UInt64: [UInt8]]] = [:]
            for t in ["dsl", "mixed", "sem"] { rows[t] = try await ReplicatedOperationsTests.storedRows(cluster.ports[0], t) }
            let side = try await ReplicatedOperationsTests.sideState(cluster.ports[0])
            return (rows, side.dnis, side.items)
        }
        try await changes(prune: false)
        _ = try await client.admin.createCheckpoint(name: "base")
        try await changes(prune: false)
        try await changes(prune: true)
        _ = try await client.admin.createCheckpoint(name: "d1", base: "base")
        let atD1 = try await snapshot()
        try await changes(prune: true)   // everything changes again
        _ = try await client.admin.restoreCheckpoint(name: "d1")
        let restored = try await snapshot()
        for t in ["dsl", "mixed", "sem"] {
            #expect(restored.0[t] == atD1.0[t] && !(atD1.0[t] ?? [:]).isEmpty, "stored rows of '\(t)' differ after restoring the delta")
        }
        #expect(restored.1 == atD1.1, "DNIS state differs after restoring the delta")
        #expect(restored.2 == atD1.2, "item codes differ after restoring the delta")
    }
}
