import Testing
import Foundation
import Engine
import Vocabulary
import Client

/// Dynamic-sparsity tables across three real shards: prune-and-regrow steps coordinated by the client keep the
/// global budget exact, move entries between shards, and leave inactive entries reading as zero.
@Suite(.serialized) struct SparseTableTests {
    @Test func coordinatedStepsKeepTheGlobalBudgetExactWhilePushesContinue() async throws {
        let cluster = try LocalCluster(shards: 3)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        var spec = TableSpec(name: "dsl", dim: 16, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 2))
        var sparsity = SparsityConfig(density: 0.25); sparsity.seed = 9; sparsity.rounds = 4
        spec.sparsity = sparsity
        try await client.admin.createTable(spec)
        let ids = (0..<3000).map { UInt64($0) &* 0x9E37_79B9 }
        var rng = SplitMix64(seed: 1)
        func pushRound() async throws {
            let batch = (0..<512).map { _ in ids[Int(rng.next() % UInt64(ids.count))] }
            let unique = Array(Set(batch))
            let g = (0..<(unique.count * 16)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 }
            try await client.push(table: "dsl", ids: unique, gradients: g)
        }
        for _ in 0..<20 { try await pushRound() }
        var summary = try await client.admin.sparsitySummary(table: "dsl")
        #expect(summary.rows > 0 && summary.active == summary.rows * 4 && summary.activeMatchesBudget)
        #expect(summary.bytesPerRow < summary.denseBytesPerRow * 0.6)

        // Steps while another task keeps pushing (new rows appear between report and step).
        let pusher = Task { for _ in 0..<30 { try await pushRound() } }
        var moved: UInt64 = 0
        for _ in 0..<4 {
            let r = try await client.admin.sparsityStep(table: "dsl")
            #expect(r.activeAfter == r.budgetAfter)
            #expect(r.prunedPerShard.reduce(0, +) == r.moved && r.grownPerShard.reduce(0, +) == r.moved)
            moved += r.moved
        }
        try await pusher.value
        #expect(moved > 0)
        summary = try await client.admin.sparsitySummary(table: "dsl")
        #expect(summary.activeMatchesBudget && summary.round == 4)
        #expect(summary.firedFraction > summary.density, "regrowth activated entries that were inactive at creation")

        // Inactive entries read as zero: non-zero pulled values never exceed the active entries (stored rows'
        // plus the 4 of each never-pushed row).
        let rows = try await client.pull(table: "dsl", ids: ids)
        let nonZero = UInt64(rows.filter { $0 != 0 }.count)
        #expect(nonZero <= summary.active + 4 * (UInt64(ids.count) - summary.rows) && nonZero > summary.active / 2)

        // A step on a dense table is refused by name.
        try await client.admin.createTable(TableSpec(name: "dense", dim: 4, optimizer: opt))
        await #expect(throws: (any Error).self) { try await client.admin.sparsityStep(table: "dense") }
    }
}
