import Testing
import Foundation
import Vocabulary
import Client
import EmbedPSWire
import RPC

/// Admission and eviction on real shards: the admin tool's flags and commands, the counters in describe,
/// and kill -9 in the middle of an eviction pass.
@Suite(.serialized) struct RowLifecycleClusterTests {
    @Test func admissionAndEvictionThroughTheAdminToolSurviveAKillDuringEviction() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var (code, text) = try cluster.admin(["table", "create", "life", "--dim", "4", "--optimizer", "sgd", "--lr", "1", "--init", "zeros",
                                              "--admit-min-count", "2", "--evict-ttl-updates", "3", "--json"])
        #expect(code == 0, "\(text)")
        let spec = try await client.tableSpec("life")
        #expect(spec.admission?.minCount == 2 && spec.eviction?.ttlUpdates == 3)

        // Admission: the first push of an id is counted only; the second creates the row.
        let ids = (0..<20_000).map { UInt64($0) &* 0x9E37_79B9 }
        let g = [Float](repeating: 1, count: ids.count * 4)
        #expect(try await client.push(table: "life", ids: ids, gradients: g) == 0)
        #expect(try await client.pull(table: "life", ids: [ids[0]]) == [0, 0, 0, 0])
        #expect(try await client.push(table: "life", ids: ids, gradients: g) == ids.count)
        #expect(try await client.pull(table: "life", ids: [ids[0]]) == [-1, -1, -1, -1])
        var stats = try await client.admin.describeTable("life")
        #expect(stats.reduce(0) { $0 + $1.rowsAdmitted } == UInt64(ids.count))
        #expect(stats.reduce(0) { $0 + $1.pushesRefused } == UInt64(ids.count))
        #expect(stats.allSatisfy { $0.admissionSketchBytes == 8 << 20 })

        // Four pushes of other rows age the first ones past their time to live (3 updates per shard).
        let fresh = (0..<500).map { UInt64(1 << 40) + UInt64($0) }
        for _ in 0..<5 { _ = try await client.push(table: "life", ids: fresh, gradients: [Float](repeating: 1, count: fresh.count * 4)) }
        // kill -9 one shard while it evicts; the other finishes. After the restart no row is half-evicted or
        // back from the log: every old row reads as evicted (initial) or as it was (-1).
        let evictor = Task { try cluster.admin(["evict", "life", "--json"]) }
        try await Task.sleep(nanoseconds: 250_000_000)
        cluster.kill9(1)
        try cluster.restart(1)
        _ = try? await evictor.value
        try await client.waitUntilHealthy(timeoutSeconds: 30)
        let rows = try await client.pull(table: "life", ids: ids)
        for i in ids.indices { #expect(rows[4 * i] == 0 || rows[4 * i] == -1, "row \(ids[i]): \(rows[4 * i])") }
        // A second pass on both shards evicts whatever is left of the old rows.
        (code, text) = try cluster.admin(["evict", "life", "--json"])
        #expect(code == 0, "\(text)")
        #expect(try await client.pull(table: "life", ids: ids).allSatisfy { $0 == 0 })
        // Fresh rows: first push counted only, then four applied.
        #expect(try await client.pull(table: "life", ids: [fresh[0]]) == [-4, -4, -4, -4])
        stats = try await client.admin.describeTable("life")
        #expect(stats.reduce(0) { $0 + $1.rows } == UInt64(fresh.count))
        (code, text) = try cluster.admin(["table", "describe", "life"])
        #expect(code == 0 && text.contains("rows evicted"), "\(text)")
        // Evicting a table without a policy is refused with the reason.
        try await client.admin.createTable(TableSpec(name: "plain", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        await #expect(throws: ClientError.self) { try await client.admin.evict(table: "plain") }
    }

    /// The policies with the rest of the system: resharding moves admitted rows and the moved rows keep being
    /// evicted on their new shard; export / import carries rows into a table with the same policies (imported
    /// rows exist, so pushes apply at once); the lookup service stops serving an evicted row once its cache
    /// entry expires.
    @Test func policiesHoldAcrossReshardingExportImportAndTheLookupService() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var spec = TableSpec(name: "pol", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.admission = AdmissionConfig(minCount: 2)
        spec.eviction = EvictionConfig(); spec.eviction?.ttlUpdates = 2; spec.eviction?.intervalSeconds = 3600
        try await client.admin.createTable(spec)
        let old = (0..<4000).map { UInt64($0) &* 0x9E37_79B9 }
        let g = [Float](repeating: 1, count: old.count * 2)
        _ = try await client.push(table: "pol", ids: old, gradients: g)
        #expect(try await client.push(table: "pol", ids: old, gradients: g) == old.count)

        // Export, then import into a table with the same policies: the rows exist there, so the next push
        // applies to every one of them without waiting for admission.
        let prefix = cluster.root.appendingPathComponent("pol").path
        var (code, text) = try cluster.admin(["export", "pol", "--out", prefix, "--json"])
        #expect(code == 0, "\(text)")
        var copySpec = spec; copySpec.name = "pol_copy"
        try await client.admin.createTable(copySpec)
        (code, text) = try cluster.admin(["import", "pol_copy", "--in", prefix])
        #expect(code == 0, "\(text)")
        #expect(try await client.pull(table: "pol_copy", ids: old) == (try await client.pull(table: "pol", ids: old)))
        #expect(try await client.push(table: "pol_copy", ids: Array(old.prefix(10)), gradients: [Float](repeating: 1, count: 20)) == 10)

        // Move half of shard 1's slots to shard 0: the admitted rows move with their values.
        var owners = client.slotMap.owners
        for s in 3072..<4096 { owners[s] = 0 }
        _ = try await client.admin.reshard(to: owners)
        #expect(try await client.pull(table: "pol", ids: old) == [Float](repeating: -1, count: old.count * 2))

        // A lookup service with a short cache TTL serves the rows...
        let (lookup, grpcPort, _) = try cluster.startLookup(extraArgs: ["--cache-ttl-ms", "100"])
        defer { lookup.terminate(); lookup.waitUntilExit() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(grpcPort)"))
        defer { channel.close() }
        #expect(try await LookupServiceTests.grpcLookup(channel, "pol", [old[0]]).1 == [-1, -1])
        // ...then other rows age the old ones past their time to live on both shards (moved rows included),
        // an eviction pass deletes them, and the lookup answers the initial value once its entry expired.
        let fresh = (0..<64).map { UInt64(1 << 41) + UInt64($0) }
        for _ in 0..<4 { _ = try await client.push(table: "pol", ids: fresh, gradients: [Float](repeating: 1, count: fresh.count * 2)) }
        let (evicted, _) = try await client.admin.evict(table: "pol")
        #expect(evicted == UInt64(old.count))
        #expect(try await client.pull(table: "pol", ids: old).allSatisfy { $0 == 0 })
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(try await LookupServiceTests.grpcLookup(channel, "pol", [old[0]]).1 == [0, 0])
        // An evicted id starts over from its initial value (once admitted again: the sketch may still hold
        // its earlier pushes, or start afresh on the shard its slot moved to).
        let applied = try await client.push(table: "pol", ids: [old[1]], gradients: [1, 1])
        #expect(try await client.pull(table: "pol", ids: [old[1]]) == (applied == 1 ? [-1, -1] : [0, 0]))
    }
}
