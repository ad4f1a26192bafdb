import Testing
import Foundation
import Engine
import Vocabulary
import Client

/// DNIS tables across three real shards: blocks by frequency, alpha updated on the primary and replicated,
/// a global prune with an exact entry count, compact pulls, and the operator's report.
@Suite(.serialized) struct DnisTableTests {
    @Test func blocksAlphaAndGlobalPruneAcrossShards() async throws {
        let cluster = try LocalCluster(shards: 3)
        defer { cluster.stop() }
        let client = try cluster.client()
        var spec = TableSpec(name: "mixed", dim: 8, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1), initializer: .uniform(-1, 1, seed: 7))
        var d = DnisConfig(blocks: 4); d.alphaLearningRate = 0.05
        spec.dnis = d
        try await client.admin.createTable(spec)
        // Id i is pushed (i % 7) + 1 times: frequency differs between ids.
        let ids = (0..<700).map { UInt64($0) * 1_000_003 }
        for round in 0..<7 {
            let batch = ids.enumerated().filter { $0.offset % 7 >= round }.map(\.element)
            try await client.push(table: "mixed", ids: batch, gradients: [Float](repeating: 0.01, count: batch.count * 8))
        }
        let perBlock = try await client.admin.dnisAssignBlocks(table: "mixed")
        #expect(perBlock == [175, 175, 175, 175], "equal splits of 700 rows, exact across shards")
        // Block 0 holds the most pushed ids: those with i % 7 == 6 (100) and 75 of those with i % 7 == 5.
        var summary = try await client.admin.dnisSummary(table: "mixed")
        #expect(summary.blocks.map(\.rows) == [175, 175, 175, 175] && summary.parameters == 700 * 8)

        // Alpha steps from "validation" gradients: primary updates, replicas follow.
        let before = try await client.pull(table: "mixed", ids: ids)
        var version: UInt64 = 0
        for _ in 0..<5 {
            let g = FloatBuffer((0..<(200 * 8)).map { Float(($0 % 8) - 2) * 0.1 })
            version = try await client.dnisPushAlphaGradient(table: "mixed", ids: Array(ids.prefix(200)), gradients: g)
        }
        #expect(version == 5)
        let reports = try await client.admin.dnisReports(table: "mixed")
        #expect(reports.allSatisfy { $0.alphaVersion == 5 && $0.alpha == reports[0].alpha }, "every shard holds alpha version 5")
        #expect(reports[0].alpha.contains { $0 < 1 })
        let scaled = try await client.pull(table: "mixed", ids: ids)
        #expect(scaled != before && zip(scaled, before).allSatisfy { abs($0) <= abs($1) + 1e-6 }, "alpha in [0, 1] only shrinks rows")

        // Global prune of 40%: exactly round(0.4 * 5600) entries go, spread over shards.
        let r = try await client.admin.dnisPrune(table: "mixed", ratio: 0.4)
        #expect(r.entriesBefore == 5600 && r.entriesBefore - r.entriesAfter >= 2240)
        #expect(r.prunedPerShard.filter { $0 > 0 }.count == 3)
        summary = try await client.admin.dnisSummary(table: "mixed")
        #expect(summary.pruned && summary.parameters == r.entriesAfter && summary.storedBytes < summary.denseBytes)
        let pruned = try await client.pull(table: "mixed", ids: ids)
        #expect(UInt64(pruned.filter { $0 != 0 }.count) == r.entriesAfter)
        for (a, b) in zip(pruned, scaled) where a != 0 { #expect(a == b, "alpha folded: pulls return the same values as before the prune") }
        let compact = try await client.pullCompact(table: "mixed", ids: Array(ids.prefix(50)))
        for (n, row) in compact.enumerated() {
            #expect(row.map(\.value) == (0..<8).map { pruned[n * 8 + $0] }.filter { $0 != 0 })
        }
        // Searching is over: alpha updates are refused by name.
        await #expect(throws: (any Error).self) {
            try await client.dnisPushAlphaGradient(table: "mixed", ids: [ids[0]], gradients: FloatBuffer([Float](repeating: 1, count: 8)))
        }

        // Operator report.
        let (code, text) = try cluster.admin(["dnis", "report", "mixed", "--json"])
        #expect(code == 0, "\(text)")
        struct Report: Decodable { var pruned: Bool; var parameters: UInt64; var blocks: [Block] }
        struct Block: Decodable { var rows: UInt64; var meanDimension: Double }
        let decoded = try JSONDecoder().decode(Report.self, from: Data(text.utf8))
        #expect(decoded.pruned && decoded.parameters == r.entriesAfter && decoded.blocks.map(\.rows) == [175, 175, 175, 175])
        let human = try cluster.admin(["dnis", "report", "mixed"])
        #expect(human.0 == 0 && human.1.contains("mean dim") && human.1.contains("pruned"))
    }
}
