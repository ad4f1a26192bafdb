import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Every table kind reaches a follower through the update log (operation records): dynamic-sparsity steps,
/// DNIS block assignments, alpha steps and prunes, semantic item registrations and evictions, made before the
/// follower exists (it copies them), while it runs (it applies the records) and while it is down (it replays
/// its own log, then catches up). Stored rows (weights, optimizer state, masks, sequences), DNIS state and
/// item codes are compared bitwise; a primary killed with -9 recovers the same state from its log.
extension FollowerProcess {
    /// How many times the follower copied a table's stored rows (its log says so each time).
    var copiesMade: Int { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "follower: copied").count - 1 }
}

@Suite(.serialized) struct ReplicatedOperationsTests {
    static let tables = ["dsl", "mixed", "sem", "ttl"]

    /// Every stored row of `table` on the shard at `port` (after a Flush there), keyed by row key.
    static func storedRows(_ port: Int, _ table: String) async throws -> [UInt64: [UInt8]] {
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(port)"))
        defer { channel.close() }
        let flushed = await HardeningTests.send(channel, ShardRPC.flush.path, Wire.FlushRequest(table: table).encoded())
        guard flushed.0 == .ok else { throw ClusterSpecError("Flush of '\(table)' on \(port): \(flushed.0)") }
        var out: [UInt64: [UInt8]] = [:]
        var cursor: (slot: UInt32, key: UInt64)? = nil
        for _ in 0..<1000 {
            var req = Wire.SlotRowsRequest(table: table, slot: cursor?.slot ?? 0, limit: 65536)
            if let c = cursor { req.hasAfter = true; req.after = c.key }
            let (code, _, reply) = await HardeningTests.send(channel, ShardRPC.readStoredRows.path, req.encoded())
            guard let reply else { throw ClusterSpecError("ReadStoredRows of '\(table)' on \(port): \(code)") }
            let page = try reply.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try Wire.SlotRows(decoding: b) }
            for (k, r) in zip(page.keys, page.rows) { out[k] = r }
            if page.done || page.keys.isEmpty { return out }
            let spec = TableSpec(name: table, dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
            cursor = (UInt32(RowAddressing(spec: spec).slot(ofRowKey: page.keys.last!)), page.keys.last!)
        }
        throw ClusterSpecError("ReadStoredRows of '\(table)' did not finish")
    }

    /// What a shard holds beside rows: DNIS state and item codes.
    static func sideState(_ port: Int) async throws -> (dnis: [UInt8], items: [UInt8]) {
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(port)"))
        defer { channel.close() }
        let dnis = await HardeningTests.send(channel, ShardRPC.getDnisState.path, Wire.DnisReportRequest(table: "mixed").encoded())
        let items = await HardeningTests.send(channel, ShardRPC.exportItems.path, Wire.SlotRowsRequest(table: "sem", limit: 100_000).encoded())
        guard let d = dnis.2, let i = items.2 else { throw ClusterSpecError("side state on \(port): \(dnis.0) / \(items.0)") }
        return (d.withUnsafeBytes { Array($0) }, i.withUnsafeBytes { Array($0) })
    }

    /// Waits until the follower holds the primary's last sequence of every table, then compares everything.
    static func expectEqual(_ primary: EmbedPSClient, primaryPort: Int, _ follower: FollowerProcess, _ when: String) async throws {
        let fc = try follower.client()
        for t in tables { _ = try await ReplicationTests.waitCaughtUp(primary, fc, t) }
        for t in tables {
            let a = try await storedRows(primaryPort, t), b = try await storedRows(follower.port, t)
            #expect(!a.isEmpty && a == b, "\(when): stored rows of '\(t)' differ (primary \(a.count), follower \(b.count) rows)")
        }
        let (pa, fa) = (try await sideState(primaryPort), try await sideState(follower.port))
        #expect(pa.dnis == fa.dnis, "\(when): DNIS state differs")
        #expect(pa.items == fa.items && pa.items.count > 100, "\(when): item codes differ")
    }

    @Test func everyTableKindReachesAFollowerAndSurvivesKill9() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let primary = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        var dsl = TableSpec(name: "dsl", dim: 16, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 2))
        var sparsity = SparsityConfig(density: 0.25); sparsity.seed = 9; sparsity.rounds = 8
        dsl.sparsity = sparsity
        var mixed = TableSpec(name: "mixed", dim: 8, optimizer: opt, initializer: .uniform(-1, 1, seed: 7))
        var d = DnisConfig(blocks: 4); d.alphaLearningRate = 0.05
        mixed.dnis = d
        var sem = TableSpec(name: "sem", dim: 8, optimizer: opt, initializer: .uniform(-0.1, 0.1, seed: 4))
        sem.semantic = SemanticConfig(tokenizer: .prefix(3), levels: 3, codebookSize: 16, budget: 2000)
        var ttl = TableSpec(name: "ttl", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        ttl.eviction = EvictionConfig(); ttl.eviction?.ttlUpdates = 5
        for spec in [dsl, mixed, sem, ttl] { try await primary.admin.createTable(spec) }

        var rng = SplitMix64(seed: 11)
        var nextItem: UInt64 = 0
        var pruned = false
        /// One round of everything: pushes to every table, new items, and each table kind's operation.
        func round(alphaSteps: Bool, prune: Bool = false) async throws {
            for _ in 0..<4 {
                let ids = Array(Set((0..<256).map { _ in rng.next() % 3000 }))
                try await primary.push(table: "dsl", ids: ids, gradients: (0..<(ids.count * 16)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
                try await primary.push(table: "mixed", ids: ids, gradients: (0..<(ids.count * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
            }
            _ = try await primary.admin.sparsityStep(table: "dsl")
            if !pruned { _ = try await primary.admin.dnisAssignBlocks(table: "mixed") }
            if alphaSteps {
                let ids = (0..<100).map { UInt64($0) }
                _ = try await primary.dnisPushAlphaGradient(table: "mixed", ids: ids, gradients: FloatBuffer((0..<800).map { Float(($0 % 8) - 2) * 0.1 }))
            }
            if prune { _ = try await primary.admin.dnisPrune(table: "mixed", ratio: 0.3); pruned = true }
            let items = (0..<60).map { _ in nextItem += 1; return nextItem }
            _ = try await primary.admin.registerItems(table: "sem", items: items, codes: items.map { _ in (0..<3).map { _ in Int(rng.next() % 16) } })
            _ = try await primary.pushPooled(table: "sem", items: items, gradients: (0..<(items.count * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 10_000 })
            // Rows pushed once, then left behind by later pushes: the TTL evicts them.
            let base = rng.next() % 1_000_000
            try await primary.push(table: "ttl", ids: (0..<50).map { base + $0 }, gradients: [Float](repeating: -1, count: 200))
            for _ in 0..<6 { try await primary.push(table: "ttl", ids: [7], gradients: [Float](repeating: -1, count: 4)) }
            let (evicted, _) = try await primary.admin.evict(table: "ttl")
            #expect(evicted >= 50, "the TTL pass evicted \(evicted) rows")
        }

        // Before the follower exists: it copies the result (rows, items, DNIS state, sparsity schedule).
        try await round(alphaSteps: true)
        let follower = FollowerProcess(of: cluster)
        defer { follower.stop() }
        try follower.start()
        try await Self.expectEqual(primary, primaryPort: cluster.ports[0], follower, "after the copy")
        // From here on the operations must arrive as log records, not as new copies of the rows.
        let initialCopies = follower.copiesMade

        // While it runs: it applies the operation records.
        try await round(alphaSteps: true)
        try await round(alphaSteps: false)
        try await Self.expectEqual(primary, primaryPort: cluster.ports[0], follower, "after live operations")

        // While it is down: it replays its own log at restart, then reads the primary's from there.
        follower.kill9()
        try await round(alphaSteps: false, prune: true)
        try follower.start()
        try await Self.expectEqual(primary, primaryPort: cluster.ports[0], follower, "after the follower's kill -9")
        #expect(follower.copiesMade == initialCopies, "the follower copied rows again instead of applying the log (\(initialCopies) -> \(follower.copiesMade) copies)")

        // The primary killed with -9 right after operations (no flush since) recovers them from its own log
        // (items, evictions and alpha are replayed; rewrites were checkpointed); the follower still matches.
        try await round(alphaSteps: false)
        let before = try await Self.sideState(cluster.ports[0])
        cluster.kill9(0)
        try cluster.restart(0)
        let recovered = try cluster.client()
        try await recovered.admin.waitUntilHealthy(timeoutSeconds: 30)
        let after = try await Self.sideState(cluster.ports[0])
        #expect(after.items == before.items && after.dnis == before.dnis, "the primary's items or DNIS state changed across kill -9")
        try await Self.expectEqual(recovered, primaryPort: cluster.ports[0], follower, "after the primary's kill -9")
        try await round(alphaSteps: false)
        try await Self.expectEqual(recovered, primaryPort: cluster.ports[0], follower, "after more operations on the restarted primary")
        print("replicated operations: " + follower.logTail.split(separator: "\n").filter { $0.contains("copied") || $0.contains("rewritten") }.joined(separator: "; "))
    }

    /// A follower of a shard that gains and loses slots by resharding gets the migrated rows and the dropped
    /// slots through its log: its stored rows stay bitwise equal to its primary's, with none of the slots the
    /// primary gave away and all of those it received.
    @Test func aFollowerFollowsItsPrimaryThroughAReshard() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = TableSpec(name: "r", dim: 4, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1))
        try await client.admin.createTable(spec)
        let ids = (0..<6000).map { UInt64($0) &* 0x9E37_79B9 }
        try await client.push(table: "r", ids: ids, gradients: [Float](repeating: 0.5, count: ids.count * 4))
        let follower = FollowerProcess(of: cluster)
        defer { follower.stop() }
        try follower.start()
        _ = try await ReplicationTests.waitCaughtUp(try cluster.client(), try follower.client(), "r")
        let copies = follower.copiesMade
        // Shard 0 gives slots 0..<200 to shard 1 and takes 2048..<2300 from it.
        var owners = try SlotMap.evenSplit(shards: 2).owners
        for s in 0..<200 { owners[s] = 1 }
        for s in 2048..<2300 { owners[s] = 0 }
        let summary = try await client.admin.reshard(to: owners, chunkSlots: 64)
        #expect(summary.slotsMoved == 452 && summary.rowsMoved > 0)
        try await client.push(table: "r", ids: ids, gradients: [Float](repeating: -0.25, count: ids.count * 4))
        let shard0 = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: "127.0.0.1:\(cluster.ports[0])")]))
        _ = try await ReplicationTests.waitCaughtUp(shard0, try follower.client(), "r")
        let primaryRows = try await Self.storedRows(cluster.ports[0], "r"), followerRows = try await Self.storedRows(follower.port, "r")
        let addressing = RowAddressing(spec: spec)
        let slots = Set(followerRows.keys.map { Int(addressing.slot(ofRowKey: $0)) })
        #expect(primaryRows == followerRows, "stored rows differ: primary \(primaryRows.count), follower \(followerRows.count)")
        #expect(slots.allSatisfy { owners[$0] == 0 }, "the follower keeps rows of slots its primary gave away")
        #expect(slots.contains { (2048..<2300).contains($0) }, "the follower has no row of the slots its primary received")
        #expect(follower.copiesMade == copies, "the follower copied the rows again instead of applying the migration records")
    }
}
