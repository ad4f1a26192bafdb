import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// One frequency block of a DNIS table across the cluster.
public struct DnisBlockSummary: Sendable, Codable {
    public var block: Int
    public var rows: UInt64
    /// Mean surviving dimensions per row (dim before pruning).
    public var meanDimension: Double
    public var parameters: UInt64
    public var storedBytes: UInt64
    public var denseBytes: UInt64
    /// alpha of the block (dim values; after pruning, the alpha that was folded in).
    public var alphaMean: Double
}

/// A DNIS table across the cluster: per-block dimensions, parameters and bytes, summed over shards.
public struct DnisSummary: Sendable, Codable {
    public var table: String
    public var dim: Int
    public var pruned: Bool
    public var alphaVersion: UInt64
    public var blocks: [DnisBlockSummary]
    public var rows: UInt64
    public var parameters: UInt64
    public var denseParameters: UInt64
    public var storedBytes: UInt64
    public var denseBytes: UInt64
}

/// What a cluster-wide prune did.
public struct DnisPruneSummary: Sendable, Codable {
    public var table: String
    public var ratio: Double
    public var threshold: Float
    public var prunedPerShard: [UInt64]
    public var entriesBefore: UInt64
    public var entriesAfter: UInt64
    public var seconds: Double
}

extension EmbedPSAdmin {
    func dnisSpec(_ table: String) async throws -> TableSpec {
        let spec = try await tableSpec(table)
        guard spec.dnis != nil else { throw ClientError.invalidArgument("table '\(table)' is not a DNIS table") }
        return spec
    }

    /// Every shard's DNIS report (each shard checkpoints the table first), in shard order.
    public func dnisReports(table: String) async throws -> [Wire.DnisReportResponse] {
        try await callAll(ShardRPC.dnisReport, Wire.DnisReportRequest(table: table))
    }

    /// Per-block rows, mean dimension, parameters and bytes (stored vs. dense at full dim), over all shards.
    public func dnisSummary(table: String) async throws -> DnisSummary {
        let spec = try await dnisSpec(table)
        let reports = try await dnisReports(table: table)
        let dim = spec.dim, blocks = spec.dnis?.blocks ?? 1
        let alpha = reports.first?.alpha ?? []
        let perBlock = (0..<blocks).map { b -> DnisBlockSummary in
            let rows = reports.reduce(0) { $0 + ($1.blocks.count > b ? $1.blocks[b].rows : 0) }
            let active = reports.reduce(0) { $0 + ($1.blocks.count > b ? $1.blocks[b].active : 0) }
            let stored = reports.reduce(0) { $0 + ($1.blocks.count > b ? $1.blocks[b].storedBytes : 0) }
            let dense = reports.reduce(0) { $0 + ($1.blocks.count > b ? $1.blocks[b].denseBytes : 0) }
            let a = alpha.count == blocks * dim ? alpha[(b * dim)..<((b + 1) * dim)].reduce(0) { $0 + Double($1) } / Double(dim) : 1
            return DnisBlockSummary(block: b, rows: rows, meanDimension: rows == 0 ? 0 : Double(active) / Double(rows), parameters: active,
                                    storedBytes: stored, denseBytes: dense, alphaMean: a)
        }
        let rows = perBlock.reduce(0) { $0 + $1.rows }
        return DnisSummary(table: table, dim: dim, pruned: reports.contains { $0.pruned }, alphaVersion: reports.first?.alphaVersion ?? 0,
                           blocks: perBlock, rows: rows, parameters: perBlock.reduce(0) { $0 + $1.parameters }, denseParameters: rows * UInt64(dim),
                           storedBytes: perBlock.reduce(0) { $0 + $1.storedBytes }, denseBytes: perBlock.reduce(0) { $0 + $1.denseBytes })
    }

    /// Assigns every stored row to a frequency block (most pushed first; equal splits or the table's block
    /// sizes), coordinated from per-shard push-count histograms. Returns rows per block.
    @discardableResult
    public func dnisAssignBlocks(table: String) async throws -> [UInt64] {
        let spec = try await dnisSpec(table)
        guard let config = spec.dnis else { throw ClientError.invalidArgument("table '\(table)' is not a DNIS table") }
        let reports = try await dnisReports(table: table)
        let total = reports.reduce(0) { $0 + $1.frequencyHistogram.reduce(0, +) }
        let sizes = config.blockRows(total: total)
        let perBlock = MagnitudeHistogram.splitSequential(reports.map(\.frequencyHistogram), sizes: sizes, descending: true)
        let answers = try await callEach(ShardRPC.dnisAssignBlocks) { s in Wire.DnisAssignRequest(table: table, take: perBlock.map { $0[s] }) }
        var sum = [UInt64](repeating: 0, count: config.blocks)
        for m in answers {
            for (b, n) in m.rowsPerBlock.enumerated() where b < sum.count { sum[b] += n }
        }
        return sum
    }

    /// Prunes `ratio` of all entries of a DNIS table across the cluster: the global percentile of
    /// |alpha[block] * v| from per-shard histograms becomes exact per-shard counts; every shard zeroes its
    /// smallest entries, folds alpha into its rows and stores them as mask + values.
    public func dnisPrune(table: String, ratio: Double) async throws -> DnisPruneSummary {
        guard ratio >= 0, ratio < 1 else { throw ClientError.invalidArgument("prune ratio \(ratio) must be in [0, 1)") }
        let started = Date()
        let (version, alpha, pruned) = try await client.dnisAlpha(table: table)
        guard !pruned else { throw ClientError.invalidArgument("table '\(table)' is already pruned") }
        try await client.replicateAlpha(table: table, version: version, alpha: alpha)
        let reports = try await dnisReports(table: table)
        let histograms = reports.map(\.magnitudeHistogram)
        let entries = histograms.reduce(0) { $0 + $1.reduce(0, +) }
        let k = UInt64((ratio * Double(entries)).rounded())
        let perShard = MagnitudeHistogram.split(histograms, count: k)
        // Threshold for rows created later: the upper edge of the bin where the k-th entry falls.
        var cumulative: UInt64 = 0, threshold: Float = 0
        if k > 0 {
            for b in 0..<MagnitudeHistogram.bins {
                cumulative += histograms.reduce(0) { $0 + $1[b] }
                if cumulative >= k { threshold = MagnitudeHistogram.upperEdge(b); break }
            }
        }
        let answers = try await callEach(ShardRPC.dnisPrune) { s in Wire.DnisPruneRequest(table: table, prune: perShard[s], threshold: threshold) }
        return DnisPruneSummary(table: table, ratio: ratio, threshold: threshold, prunedPerShard: answers.map(\.pruned), entriesBefore: entries,
                                entriesAfter: answers.reduce(0) { $0 + $1.active }, seconds: Date().timeIntervalSince(started))
    }
}

/// The DNIS calls of the training loop: alpha, its gradient, compact pulls.
extension EmbedPSClient {
    /// alpha of a DNIS table as the primary (shard 0) holds it: (version, blocks x dim values, pruned).
    public func dnisAlpha(table: String) async throws -> (version: UInt64, alpha: [Float], pruned: Bool) {
        let r = try await call(shard: 0, ShardRPC.dnisAlpha, Wire.DnisAlphaRequest(table: table))
        return (r.version, r.alpha, r.pruned)
    }

    /// Copies the primary's alpha to every other shard (each keeps it only when newer than its own).
    func replicateAlpha(table: String, version: UInt64, alpha: [Float]) async throws {
        guard shardCount > 1 else { return }
        let request = Wire.DnisAlphaRequest(table: table, setVersion: version, setAlpha: alpha)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in 1..<shardCount { group.addTask { _ = try await self.call(shard: s, ShardRPC.dnisAlpha, request) } }
            try await group.waitForAll()
        }
    }

    /// One alpha step from a validation batch: `gradients` holds dL/de for each id (the gradient of the loss
    /// with respect to the pulled, alpha-scaled row). Every owner shard returns its part of dL/dalpha; the sum
    /// goes to the alpha primary (shard 0), which applies the DNIS update, and the new alpha is copied to the
    /// other shards. Returns the new alpha version.
    @discardableResult
    public func dnisPushAlphaGradient(table: String, ids: [UInt64], gradients: FloatBuffer) async throws -> UInt64 {
        let answers = try await sendGradientRows(table: table, ids: ids, gradients: gradients, method: ShardRPC.dnisAlphaGradient)
        var total: [Float] = []
        for (shard, m) in answers {
            let partial = try Self.decode(Wire.DnisAlphaGradientResponse.self, m, shard: shard).partial
            if total.isEmpty { total = partial } else {
                guard partial.count == total.count else { throw ClientError.inconsistentCluster("alpha gradient sizes differ between shards for '\(table)'") }
                for i in total.indices { total[i] += partial[i] }
            }
        }
        guard !total.isEmpty else { return try await dnisAlpha(table: table).version }
        let r = try await call(shard: 0, ShardRPC.dnisAlpha, Wire.DnisAlphaRequest(table: table, gradient: total))
        try await replicateAlpha(table: table, version: r.version, alpha: r.alpha)
        return r.version
    }

    /// Rows in compact form: per id, its active entries' (column, value) pairs (as a pull would return them).
    public func pullCompact(table: String, ids: [UInt64]) async throws -> [[(column: Int, value: Float)]] {
        let route = try await route(table)
        let plan = ids.withUnsafeBufferPointer { BatchPlan(ids: $0, route: route, slotMap: slotMap) }
        let words = (route.dim + 31) / 32
        var unique = [[(column: Int, value: Float)]](repeating: [], count: plan.unique.count)
        var requests: [(Int, OutgoingMessage)] = []
        for (shard, members) in plan.byShard.enumerated() where !members.isEmpty {
            let size = RowMessageEncoder.pullRequestSize(table: table, count: members.count)
            requests.append((shard, OutgoingMessage(length: size) { buf in
                RowMessageEncoder.writePullRequest(into: buf, table: table, count: members.count) { plan.unique[Int(members[$0])] }
            }))
        }
        for (shard, result) in await fanOutAll(requests, ShardRPC.pullCompact) {
            let message = try result.get()
            let members = plan.byShard[shard]
            let r = try Self.decode(Wire.CompactRowsResponse.self, message, shard: shard)
            guard r.masks.count == members.count * words else { throw ClientError.inconsistentCluster("shard \(shard) sent \(r.masks.count) mask words for \(members.count) rows") }
            var v = 0
            for (n, u) in members.enumerated() {
                var row: [(column: Int, value: Float)] = []
                for k in 0..<route.dim where r.masks[n * words + k / 32] & (1 << UInt32(k % 32)) != 0 {
                    guard v < r.values.count else { throw ClientError.inconsistentCluster("shard \(shard) sent too few compact values") }
                    row.append((k, r.values[v])); v += 1
                }
                unique[Int(u)] = row
            }
        }
        return plan.uniqueIndex.map { unique[Int($0)] }
    }
}
