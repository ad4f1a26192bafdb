import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// A dynamic-sparsity table across the cluster: exact counts summed over shards.
/// Invariant checked by `activeMatchesBudget`: active entries == rows * activePerNewRow.
public struct SparsitySummary: Sendable, Codable {
    public var table: String
    public var shards: Int
    public var dim: Int
    public var density: Double
    public var rows: UInt64
    public var active: UInt64
    /// rows * round(density * dim): what active must equal.
    public var budget: UInt64
    public var fired: UInt64
    public var firedFraction: Double
    public var round: UInt32
    public var pushesSinceStep: UInt64
    public var storedBytes: UInt64
    public var denseBytes: UInt64
    public var bytesPerRow: Double
    public var denseBytesPerRow: Double
    public var activeMatchesBudget: Bool { active == budget }
}

/// What one cluster-wide prune-and-regrow step did.
public struct SparsityStepSummary: Sendable, Codable {
    public var table: String
    public var round: UInt32
    public var fraction: Double
    public var moved: UInt64
    public var prunedPerShard: [UInt64]
    public var grownPerShard: [UInt64]
    public var activeBefore: UInt64
    public var activeAfter: UInt64
    public var budgetAfter: UInt64
    public var seconds: Double
}

extension EmbedPSAdmin {
    /// Every shard's report of a sparse table (each shard checkpoints the table first), in shard order.
    public func sparsityReports(table: String) async throws -> [Wire.SparsityReportResponse] {
        try await callAll(ShardRPC.sparsityReport, Wire.SparsityReportRequest(table: table))
    }

    func sparsityConfig(_ table: String) async throws -> (SparsityConfig, Int) {
        let spec = try await tableSpec(table)
        guard let s = spec.sparsity else { throw ClientError.invalidArgument("table '\(table)' is not a dynamic-sparsity table") }
        return (s, spec.dim)
    }

    /// Density, fired share, rounds and bytes of a sparse table, summed over shards.
    public func sparsitySummary(table: String) async throws -> SparsitySummary {
        let (config, dim) = try await sparsityConfig(table)
        let reports = try await sparsityReports(table: table)
        return Self.summarize(table: table, config: config, dim: dim, reports)
    }

    static func summarize(table: String, config: SparsityConfig, dim: Int, _ reports: [Wire.SparsityReportResponse]) -> SparsitySummary {
        let rows = reports.reduce(0) { $0 + $1.rows }, active = reports.reduce(0) { $0 + $1.active }
        let fired = reports.reduce(0) { $0 + $1.fired }
        let stored = reports.reduce(0) { $0 + $1.storedBytes }, dense = reports.reduce(0) { $0 + $1.denseBytes }
        let entries = Double(max(1, rows) * UInt64(dim))
        return SparsitySummary(table: table, shards: reports.count, dim: dim, density: Double(active) / entries, rows: rows, active: active,
                               budget: rows * UInt64(config.activePerRow(dim: dim)), fired: fired, firedFraction: Double(fired) / entries,
                               round: reports.map(\.round).max() ?? 0, pushesSinceStep: reports.map(\.pushesSinceStep).max() ?? 0,
                               storedBytes: stored, denseBytes: dense, bytesPerRow: Double(stored) / Double(max(1, rows)),
                               denseBytesPerRow: Double(dense) / Double(max(1, rows)))
    }

    /// One prune-and-regrow step across the cluster, coordinated here: every shard reports magnitude
    /// histograms; k = ceil(fraction * active entries) with the table's cosine-decayed fraction for the next
    /// round (or `fraction`); the k globally smallest |w| are pruned and the k globally largest accumulated
    /// |gradient| grown, split into exact per-shard counts from the histograms; every shard applies its counts
    /// atomically. The total of active entries is unchanged (checked; a mismatch throws).
    public func sparsityStep(table: String, fraction: Double? = nil) async throws -> SparsityStepSummary {
        let started = Date()
        let (config, dim) = try await sparsityConfig(table)
        let reports = try await sparsityReports(table: table)
        let round = (reports.map(\.round).max() ?? 0)
        let share = fraction ?? config.updateFraction(round: Int(round))
        guard share > 0, share <= 1 else { throw ClientError.invalidArgument("update fraction \(share) must be in (0, 1]") }
        let activeBefore = reports.reduce(0) { $0 + $1.active }, inactive = reports.reduce(0) { $0 + $1.inactive }
        let k = min(UInt64((share * Double(activeBefore)).rounded(.up)), activeBefore, inactive)
        let prune = MagnitudeHistogram.split(reports.map(\.weightHistogram), count: k)
        let grow = MagnitudeHistogram.split(reports.map(\.growthHistogram), count: k, descending: true)
        let answers = try await callEach(ShardRPC.sparsityStep) { s in
            Wire.SparsityStepRequest(table: table, prune: prune[s], grow: grow[s], round: round + 1)
        }
        let activeAfter = answers.reduce(0) { $0 + $1.active }
        let budget = answers.reduce(0) { $0 + $1.rows } * UInt64(config.activePerRow(dim: dim))
        guard activeAfter == budget else {
            throw ClientError.inconsistentCluster("table '\(table)': \(activeAfter) active entries after round \(round + 1), budget \(budget)")
        }
        return SparsityStepSummary(table: table, round: round + 1, fraction: share, moved: k, prunedPerShard: answers.map(\.pruned),
                                   grownPerShard: answers.map(\.grown), activeBefore: activeBefore, activeAfter: activeAfter,
                                   budgetAfter: budget, seconds: Date().timeIntervalSince(started))
    }
}
