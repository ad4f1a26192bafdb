import Testing
import Foundation
import Vocabulary
import Client

/// Incremental exports (issue: followers and incremental checkpoints, `export --since`): after a full
/// export, an export since its version holds exactly the rows changed since (with the values a pull
/// returns) and the keys evicted since; a row evicted and pushed again is a change, not a removal.
@Suite struct IncrementalExportTests {
    @Test func anExportSinceAVersionHoldsTheChangedRowsAndTheRemovedKeys() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var spec = TableSpec(name: "inc", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.eviction = EvictionConfig()
        spec.eviction?.ttlUpdates = 3
        spec.eviction?.intervalSeconds = 3600
        try await client.admin.createTable(spec)
        func push(_ ids: [UInt64]) async throws { try await client.push(table: "inc", ids: ids, gradients: [Float](repeating: -1, count: ids.count * 4)) }

        try await push((0..<1000).map { UInt64($0) })
        let full = try await client.admin.exportChanges("inc", since: nil)
        #expect(full.keys.count == 1000 && full.removed.isEmpty && full.version.shardSequences.allSatisfy { $0 > 0 })
        let nothing = try await client.admin.exportChanges("inc", since: full.version)
        #expect(nothing.keys.isEmpty && nothing.removed.isEmpty, "an export right after another holds \(nothing.keys.count) rows")

        // Some rows updated, some new: exactly those come back, with the values a pull returns.
        let changed = (0..<100).map { UInt64($0) } + (2000..<2050).map { UInt64($0) }
        try await push(changed)
        let delta = try await client.admin.exportChanges("inc", since: full.version)
        #expect(Set(delta.keys) == Set(changed) && delta.keys.count == changed.count && delta.removed.isEmpty)
        let pulled = try await client.pull(table: "inc", ids: delta.keys)
        #expect(pulled == delta.values)

        // Rows not updated in a shard's last 3 pushes are evicted (3 pushes that reach both shards leave only
        // their own rows); one evicted row is pushed again afterwards.
        let fresh = (9000..<9016).map { UInt64($0) }
        for _ in 0..<3 { try await push(fresh) }
        let (evicted, _) = try await client.admin.evict(table: "inc")
        #expect(evicted == 1050, "evicted \(evicted)")
        try await push([5])
        let afterEviction = try await client.admin.exportChanges("inc", since: delta.version)
        let gone = Set(full.keys).union(changed).subtracting([5])
        #expect(Set(afterEviction.removed) == gone && afterEviction.removed.count == gone.count, "\(afterEviction.removed.count) removed keys, expected \(gone.count)")
        #expect(Set(afterEviction.keys) == Set(fresh + [5]), "\(afterEviction.keys.sorted())")

        // Through the admin tool: version files chain exports.
        let prefix = cluster.root.appendingPathComponent("inc").path
        let (s1, o1) = try cluster.admin(["export", "inc", "--out", prefix + "-a"])
        #expect(s1 == 0, "\(o1)")
        try await push([7, 8])
        let (s2, o2) = try cluster.admin(["export", "inc", "--out", prefix + "-b", "--since", prefix + "-a.version.json", "--json"])
        #expect(s2 == 0 && o2.contains("\"rows\" : 2"), "\(o2)")
        #expect(FileManager.default.fileExists(atPath: prefix + "-b.removed.npy"))
        let (s3, o3) = try cluster.admin(["export", "other", "--out", prefix + "-c", "--since", prefix + "-a.version.json"])
        #expect(s3 != 0 && o3.contains("export in full"), "\(o3)")
    }
}
