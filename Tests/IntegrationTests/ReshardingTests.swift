import Testing
import Foundation
import Engine
import Vocabulary
import RPC
import EmbedPSWire
@testable import Client

/// Live resharding from 2 to 3 real shards while a trainer-like client keeps pushing: every acknowledged
/// gradient is applied exactly once (SGD, lr 1, zero init: each row must equal minus the sum of the
/// gradients pushed to it), clients holding the old map follow the new one, and the map survives restarts.
@Suite(.serialized) struct ReshardingTests {
    @Test func twoToThreeShardsUnderPushLoadLosesNoUpdate() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let trainer = try cluster.client()   // keeps the 2-shard spec it started with
        try await trainer.admin.createTable(TableSpec(name: "r", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        var sparse = TableSpec(name: "s", dim: 8, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1))
        sparse.sparsity = SparsityConfig(density: 0.5)
        try await trainer.admin.createTable(sparse)
        let ids = (0..<4000).map { UInt64($0) &* 0x9E37_79B9 }
        var expected = [UInt64: Float]()
        try await trainer.push(table: "r", ids: ids, gradients: [Float](repeating: 1, count: ids.count * 4))
        for id in ids { expected[id] = 1 }
        try await trainer.push(table: "s", ids: Array(ids.prefix(1000)), gradients: [Float](repeating: 0.5, count: 8000))
        let sparseBefore = try await trainer.pull(table: "s", ids: Array(ids.prefix(1000)))
        // A semantic-ID table (item codes on every shard) and a pruned DNIS table (alpha and mode per shard).
        var sem = TableSpec(name: "sem", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), initializer: .uniform(-1, 1, seed: 2))
        sem.semantic = SemanticConfig(tokenizer: .prefix(2), levels: 2, codebookSize: 8, budget: 500)
        try await trainer.admin.createTable(sem)
        let items = (0..<300).map { UInt64($0) * 17 }
        try await trainer.admin.registerItems(table: "sem", items: items, codes: items.map { [Int($0 % 8), Int($0 / 8 % 8)] })
        try await trainer.pushPooled(table: "sem", items: Array(items.prefix(100)), gradients: [Float](repeating: 0.5, count: 400))
        let pooledBefore = try await trainer.pullPooled(table: "sem", items: items)
        var dn = TableSpec(name: "dn", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), initializer: .uniform(-1, 1, seed: 4))
        dn.dnis = DnisConfig(blocks: 2)
        try await trainer.admin.createTable(dn)
        try await trainer.push(table: "dn", ids: Array(ids.prefix(800)), gradients: [Float](repeating: 0.1, count: 3200))
        try await trainer.admin.dnisAssignBlocks(table: "dn")
        try await trainer.dnisPushAlphaGradient(table: "dn", ids: Array(ids.prefix(200)), gradients: FloatBuffer((0..<800).map { Float($0 % 4) - 1 }))
        _ = try await trainer.admin.dnisPrune(table: "dn", ratio: 0.3)
        let dnisBefore = try await trainer.pull(table: "dn", ids: Array(ids.prefix(800)) + [99_999_999])

        // A third shard joins owning nothing; its spec lists the cluster's real addresses.
        let joining = cluster.root.appendingPathComponent("joining.json").path
        var spec = cluster.clientSpec
        spec.shards.append(.init(address: "127.0.0.1:0"))
        spec.slotRanges = ClusterSpec(addresses: spec.shards.map(\.address), map: try SlotMap(version: 1, shardCount: 3, owners: try SlotMap.evenSplit(shards: 2).owners)).slotRanges
        try spec.encoded().write(to: URL(fileURLWithPath: joining))
        let newIndex = try cluster.addShard(specPath: joining)
        #expect(newIndex == 2)
        var coordinatorSpec = spec
        coordinatorSpec.shards[2].address = "127.0.0.1:\(cluster.ports[2])"
        let coordinator = try EmbedPSClient(spec: coordinatorSpec)   // what `reshard prepare` writes, with the real port

        // Pushes keep going during the move; each acknowledged one is recorded.
        let stop = LockedFlag()
        let pusher = Task { () -> [UInt64: Float] in
            var sums = [UInt64: Float]()
            var rng = SplitMix64(seed: 3)
            var pushes = 0
            while !stop.value || pushes < 20 {
                let batch = Array(Set((0..<256).map { _ in ids[Int(rng.next() % UInt64(ids.count))] }))
                let g = batch.map { _ in Float(1 + rng.next() % 3) }
                try await trainer.push(table: "r", ids: batch, gradients: g.flatMap { [Float](repeating: $0, count: 4) })
                for (id, v) in zip(batch, g) { sums[id, default: 0] += v }
                pushes += 1
            }
            return sums
        }
        let target = EmbedPSAdmin.balancedOwners(current: try SlotMap.evenSplit(shards: 2).owners, over: [0, 1, 2])
        let summary = try await coordinator.admin.reshard(to: target, chunkSlots: 128)
        stop.set()
        let pushed = try await pusher.value
        print(String(format: "resharding under push load: %d slots, %llu rows moved in %.2f s", summary.slotsMoved, summary.rowsMoved, summary.seconds))
        #expect(summary.slotsMoved == 1365 && summary.rowsMoved > 0 && summary.toVersion > summary.fromVersion, "only the new shard's share moves")

        // Every row equals minus everything pushed to it, read through the old-spec client (it followed).
        for (id, v) in pushed { expected[id, default: 0] += v }
        let rows = try await trainer.pull(table: "r", ids: ids)
        var wrong = 0
        for (n, id) in ids.enumerated() where rows[n * 4] != -(expected[id] ?? 0) { wrong += 1 }
        #expect(wrong == 0, "\(wrong) rows differ from the sum of acknowledged gradients")
        #expect(trainer.slotMap.version == summary.toVersion && trainer.shardCount == 3)
        // Rows moved, not copied: 4000 stored in all, a third on the new shard.
        let perShard = try await coordinator.admin.describeTable("r").map(\.rows)
        #expect(perShard.reduce(0, +) == 4000 && perShard[2] > 1000)
        // The sparse table moved with its masks: same values, budget intact.
        #expect(try await coordinator.pull(table: "s", ids: Array(ids.prefix(1000))) == sparseBefore)
        #expect(try await coordinator.admin.sparsitySummary(table: "s").activeMatchesBudget)
        // The semantic table pools the same sums (its pieces moved, its item codes reached the new shard).
        #expect(try await coordinator.pullPooled(table: "sem", items: items) == pooledBefore)
        #expect(try await coordinator.admin.describeTable("sem").map { $0.semantic?.items ?? 0 } == [300, 300, 300])
        // The DNIS table: same rows, the new shard holds the pruned mode and alpha (a new row is cut the same way).
        #expect(try await coordinator.pull(table: "dn", ids: Array(ids.prefix(800)) + [99_999_999]) == dnisBefore)
        let dnReports = try await coordinator.admin.dnisReports(table: "dn")
        #expect(dnReports.allSatisfy { $0.pruned && $0.alpha == dnReports[0].alpha && $0.alphaVersion == dnReports[0].alphaVersion })
        // A client started from the original 2-shard spec finds its way; a restarted shard keeps the new map.
        let late = try EmbedPSClient(spec: ClusterSpec(shards: cluster.clientSpec.shards.prefix(2).map { $0 }))
        #expect(try await late.pull(table: "r", ids: Array(ids.prefix(500))) == Array(rows.prefix(2000)))
        cluster.terminate(0)
        try cluster.restart(0)
        try await coordinator.waitUntilHealthy(timeoutSeconds: 20)
        #expect(try await coordinator.refreshShardMap() == summary.toVersion)
        #expect(try await coordinator.pull(table: "r", ids: ids) == rows)
    }
}

/// A flag set by one task and read by another.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}

/// A coordinator that died after giving slots to their new owner but before telling the old one: the next
/// resharding run finishes the move, and nothing is lost.
@Suite(.serialized) struct InterruptedReshardingTests {
    /// Table `table` (dim 2, SGD lr 1) with ids 0..<3000 pushed once (rows = -1), then shard 1 begins moving
    /// slots 4000...4095 away, as a coordinator would. Returns the client, the ids, those slots and the ids
    /// in them (at least one).
    static func beginMovingSlots4000To4095(_ cluster: LocalCluster, table: String) async throws
        -> (client: EmbedPSClient, ids: [UInt64], slots: [UInt32], inSlots: [UInt64]) {
        let client = try cluster.client(ClientOptions())
        try await client.admin.createTable(TableSpec(name: table, dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let addressing = RowAddressing(spec: try await client.fetchSpec(table))
        let ids = (0..<3000).map { UInt64($0) }
        try await client.push(table: table, ids: ids, gradients: [Float](repeating: 1, count: 6000))
        let slots = (4000..<4096).map { UInt32($0) }
        let inSlots = ids.filter { addressing.slot(ofRowKey: $0) >= 4000 }
        try #require(!inSlots.isEmpty)
        _ = try await client.call(shard: 1, ShardRPC.beginMigration, Wire.SlotsRequest(slots: slots))
        return (client, ids, slots, inSlots)
    }

    @Test func rerunFinishesAMoveInterruptedAfterTheTargetSwitched() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        // Move slots 4000...4095 from shard 1 to shard 0 by hand and stop after the target's switch.
        let (client, _, slots, moved) = try await Self.beginMovingSlots4000To4095(cluster, table: "r")
        for slot in slots {
            let page = try await client.call(shard: 1, ShardRPC.exportSlotRows, Wire.SlotRowsRequest(table: "r", slot: slot, limit: 4096))
            if !page.keys.isEmpty { _ = try await client.call(shard: 0, ShardRPC.importSlotRows, page) }
        }
        var owners = client.slotMap.owners
        for s in slots { owners[Int(s)] = 0 }
        let v2 = ClusterSpec(addresses: client.spec.shards.map(\.address), map: try SlotMap(version: 2, shardCount: 2, owners: owners))
        _ = try await client.call(shard: 0, ShardRPC.setShardMap, Wire.ShardMapRequest(specJson: String(decoding: try v2.encoded(), as: UTF8.self)))
        // -- coordinator gone. Shard 1 still refuses writes to the moved slots.
        // Re-run: the target already owns them, so nothing moves, but shard 1 is brought up to date.
        let rerun = try await client.admin.reshard(to: owners)
        #expect(rerun.slotsMoved == 0)
        let oldClient = try EmbedPSClient(spec: cluster.clientSpec)   // 2 shards, version-1 map
        try await oldClient.push(table: "r", ids: moved, gradients: [Float](repeating: 1, count: moved.count * 2))
        #expect(try await oldClient.pull(table: "r", ids: moved) == [Float](repeating: -2, count: moved.count * 2))
        #expect(try await client.admin.describeTable("r").map(\.rows).reduce(0, +) == 3000, "moved rows deleted from the old owner")
    }

    /// A coordinator that stopped after the source began refusing writes but before any map switched: a
    /// resharding whose target keeps those slots where they are cancels the move, so writes are accepted
    /// again at once (they were refused until some later resharding moved the slots away), and the rows stay.
    @Test func rerunCancelsAMoveThatNeverSwitchedWhenTheTargetKeepsTheSlots() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let (client, _, _, stuck) = try await Self.beginMovingSlots4000To4095(cluster, table: "c")
        // -- coordinator gone before copying. Writes to the slots are refused (UNAVAILABLE / SLOT_MOVING).
        var impatient = ClientOptions(); impatient.retrySeconds = 0.2
        let probe = try EmbedPSClient(spec: cluster.clientSpec, options: impatient)
        await #expect(throws: (any Error).self) {
            try await probe.push(table: "c", ids: stuck, gradients: [Float](repeating: 1, count: stuck.count * 2))
        }
        // A resharding to the current owners moves nothing and cancels the move.
        let rerun = try await client.admin.reshard(to: client.slotMap.owners)
        #expect(rerun.slotsMoved == 0)
        try await probe.push(table: "c", ids: stuck, gradients: [Float](repeating: 1, count: stuck.count * 2))
        #expect(try await client.pull(table: "c", ids: stuck) == [Float](repeating: -2, count: stuck.count * 2))
        #expect(try await client.admin.describeTable("c").map(\.rows).reduce(0, +) == 3000, "no row deleted by the cancel")
    }

    /// ExportSlotRows over a chunk of slots (SlotRowsRequest.slots): pages run across runs of consecutive
    /// slots and resume inside a slot; exactly the rows of those slots come back once each; a list out of
    /// order, a start outside it, or a slot not migrating is refused and nothing changes.
    @Test func chunkExportPagesAcrossSlotRunsAndRefusesBadLists() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client(ClientOptions())
        try await client.admin.createTable(TableSpec(name: "x", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let addressing = RowAddressing(spec: try await client.fetchSpec("x"))
        let ids = (0..<20_000).map { UInt64($0) }
        try await client.push(table: "x", ids: ids, gradients: [Float](repeating: 1, count: ids.count * 2))
        // Two runs of consecutive slots with a gap between them; the gap's rows must not come back.
        let chunk = Array(100..<140).map { UInt32($0) } + Array(600..<610).map { UInt32($0) }
        let wanted = Set(ids.filter { chunk.contains(UInt32(addressing.slot(ofRowKey: $0))) })
        try #require(wanted.count > 100)
        let channel = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { channel.close() }
        func page(_ req: Wire.SlotRowsRequest) async throws -> (StatusCode, Wire.ErrorDetail?, Wire.SlotRows?) {
            try await HardeningTests.slotRows(channel, ShardRPC.exportSlotRows, req)
        }
        var notMoving = Wire.SlotRowsRequest(table: "x", slot: 100, limit: 10); notMoving.slots = chunk
        #expect(try await page(notMoving).1?.reason == .wrongState, "slots not migrating are refused")
        _ = try await client.call(shard: 0, ShardRPC.beginMigration, Wire.SlotsRequest(slots: chunk))
        var unordered = notMoving; unordered.slots = chunk.reversed()
        var outside = notMoving; outside.slot = 99
        var partlyMoving = notMoving; partlyMoving.slots = chunk + [700]
        #expect(try await page(unordered).1?.reason == .malformed)
        #expect(try await page(outside).1?.reason == .malformed)
        #expect(try await page(partlyMoving).1?.reason == .wrongState)
        var seen: [UInt64] = [], pages = 0
        var req = Wire.SlotRowsRequest(table: "x", slot: chunk[0], limit: 37); req.slots = chunk
        while pages < 1000 {
            let (code, _, reply) = try await page(req)
            let rows = try #require(reply, "ExportSlotRows failed: \(code)")
            pages += 1
            seen += rows.keys
            guard let last = rows.keys.last, !rows.done else { break }
            req.slot = UInt32(addressing.slot(ofRowKey: last)); req.hasAfter = true; req.after = last
        }
        #expect(seen.count == wanted.count && Set(seen) == wanted, "\(seen.count) rows exported, \(wanted.count) stored in the chunk")
        #expect(pages == (wanted.count + 36) / 37 || pages == (wanted.count + 36) / 37 + 1)
        _ = try await client.call(shard: 0, ShardRPC.endMigration, Wire.SlotsRequest(slots: chunk))
        #expect(try await client.admin.describeTable("x").map(\.rows) == [20_000], "the shard still owns the slots: the move was cancelled, rows kept")
    }
}

extension EmbedPSClient {
    func fetchSpec(_ table: String) async throws -> TableSpec { try await tableSpec(table) }
}
