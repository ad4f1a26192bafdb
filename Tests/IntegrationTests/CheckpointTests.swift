import Testing
import Foundation
import Engine
import Vocabulary
import Client
import RPC

/// Cluster checkpoints on three real shards: a cut taken while a pusher keeps going, restored in place and
/// onto a fresh cluster, served by the lookup service.
@Suite(.serialized) struct CheckpointTests {
    @Test func checkpointMorePushesRestoreGivesTheCheckpointedRowsOnEveryShard() async throws {
        let cluster = try LocalCluster(shards: 3)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        try await client.admin.createTable(TableSpec(name: "users", dim: 8, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 1)))
        var sparse = TableSpec(name: "sparse", dim: 16, optimizer: opt); sparse.sparsity = SparsityConfig(density: 0.25)
        try await client.admin.createTable(sparse)
        let ids = (0..<2000).map { UInt64($0) &* 2_654_435_761 }
        try await client.push(table: "users", ids: ids, gradients: (0..<(2000 * 8)).map { Float($0 % 13) / 13 - 0.5 })
        try await client.push(table: "sparse", ids: Array(ids.prefix(500)), gradients: [Float](repeating: 0.2, count: 500 * 16))

        let before = try await client.pull(table: "users", ids: ids)
        // A pusher runs through the checkpoint: its pushes are refused while frozen and retried by the client.
        let pusher = Task {
            for k in 0..<40 { try await client.push(table: "users", ids: [ids[k]], gradients: [Float](repeating: 0.01, count: 8)) }
        }
        let parts = try await client.admin.createCheckpoint(name: "c1")
        try await pusher.value
        #expect(parts.map(\.shardIndex) == [0, 1, 2] && parts.allSatisfy { $0.tables == ["sparse", "users"] })
        // Restore right away: the rows come back as they were at the cut, without the pushes after it.
        let listed = try await client.admin.listCheckpoints()
        #expect(listed.map(\.name) == ["c1"] && listed[0].complete)
        _ = try await client.admin.restoreCheckpoint(name: "c1")
        let atCut = try await client.pull(table: "users", ids: ids)
        let sparseAtCut = try await client.pull(table: "sparse", ids: Array(ids.prefix(500)))
        // The cut is a moment of the pusher's sequence: rows 0..<k carry their push, rows k..<40 do not, the
        // rest are as before.
        #expect(Array(atCut[(40 * 8)...]) == Array(before[(40 * 8)...]))
        let pushedAtCut = (0..<40).map { k in Array(atCut[(k * 8)..<((k + 1) * 8)]) != Array(before[(k * 8)..<((k + 1) * 8)]) }
        let k = pushedAtCut.firstIndex(of: false) ?? 40
        #expect(pushedAtCut.allSatisfy { $0 } || pushedAtCut[k...].allSatisfy { !$0 }, "pushes in the cut form a prefix: \(pushedAtCut)")

        // More pushes, a new table, a dropped table: all undone by the restore.
        try await client.push(table: "users", ids: ids, gradients: [Float](repeating: 1, count: 2000 * 8))
        try await client.admin.createTable(TableSpec(name: "later", dim: 2, optimizer: opt))
        try await client.admin.dropTable("sparse")
        #expect(try await client.pull(table: "users", ids: ids) != atCut)
        let restored = try await client.admin.restoreCheckpoint(name: "c1")
        #expect(restored.count == 3)
        #expect(try await client.admin.listTables() == ["sparse", "users"])
        #expect(try await client.pull(table: "users", ids: ids) == atCut)
        #expect(try await client.pull(table: "sparse", ids: Array(ids.prefix(500))) == sparseAtCut)
        #expect(try await client.admin.sparsitySummary(table: "sparse").activeMatchesBudget)
        // Every shard holds rows again (the cut covers all of them).
        #expect(try await client.admin.describeTable("users").allSatisfy { $0.rows > 0 })

        // The lookup service serves the restored checkpoint.
        let (lookup, grpcPort, _) = try cluster.startLookup(extraArgs: ["--cache-rows", "0"])
        defer { lookup.terminate(); lookup.waitUntilExit() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(grpcPort)"))
        defer { channel.close() }
        #expect(try await LookupServiceTests.grpcLookup(channel, "users", Array(ids.prefix(300))).1 == Array(atCut.prefix(300 * 8)))

        // A fresh cluster started from copies of the parts holds the same rows.
        let copies = FileManager.default.temporaryDirectory.appendingPathComponent("copies-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copies) }
        for i in 0..<3 {
            try FileManager.default.createDirectory(at: copies, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: ShardEngine.checkpointPath(dataDirectory: cluster.dataDir(i), name: "c1"),
                                             toPath: copies.appendingPathComponent("part-\(i)").path)
        }
        let copyRoot = copies.path
        // The lookup service serves the copied checkpoint read-only, without any shard.
        let partDirs = (0..<3).map { copyRoot + "/part-\($0)" }
        func listing() throws -> [String] { try partDirs.flatMap { d in try FileManager.default.contentsOfDirectory(atPath: d + "/db").sorted() } }
        let filesBefore = try listing()
        let (offline, offlinePort, offlineHTTP) = try cluster.startLookup(extraArgs: ["--checkpoint", partDirs.joined(separator: ",")])
        defer { offline.terminate(); offline.waitUntilExit() }
        let offlineChannel = Channel(ChannelConfiguration(target: "127.0.0.1:\(offlinePort)"))
        defer { offlineChannel.close() }
        #expect(try await LookupServiceTests.grpcLookup(offlineChannel, "users", ids).1 == atCut)
        #expect(try httpGet(port: offlineHTTP, path: "/v1/lookup?table=sparse&ids=\(ids[0])").1.contains("\"dim\":16"))
        #expect(try listing() == filesBefore, "the checkpoint parts are not modified")
        let fresh = try LocalCluster(shards: 3, shardArgs: { ["--restore-checkpoint", copyRoot + "/part-\($0)"] })
        defer { fresh.stop() }
        let freshClient = try fresh.client()
        #expect(try await freshClient.pull(table: "users", ids: ids) == atCut)

        // Refused: a checkpoint without a freeze, a restore of a missing name.
        await #expect(throws: (any Error).self) { _ = try await client.admin.restoreCheckpoint(name: "nope") }
        let (code, text) = try cluster.admin(["checkpoint", "list", "--json"])
        #expect(code == 0 && text.contains("\"c1\""), "\(text)")
    }
}
