import Testing
import Foundation
import Vocabulary
import RPC
import EmbedPSWire
@testable import Client

/// A push split over two shards of which one part fails: the client reports exactly which ids were not
/// acknowledged (`ClientError.partialPush`), and `resend` completes the push so every gradient is applied
/// exactly once, whether the failed shard refused its part or applied it while its answer was lost.
@Suite(.serialized) struct PartialPushTests {
    /// SGD, lr 1, zero init: a row equals minus the sum of the gradients applied to it.
    static func setUp(_ cluster: LocalCluster) async throws -> (ids: [UInt64], onShard: [[UInt64]]) {
        let admin = try cluster.client()
        try await admin.admin.createTable(TableSpec(name: "p", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let addressing = RowAddressing(spec: try await admin.fetchSpec("p"))
        let ids = (0..<2000).map { UInt64($0) &* 0x9E37_79B9 }
        let onShard = (0..<2).map { s in ids.filter { admin.slotMap.owner(ofSlot: addressing.slot(ofRowKey: addressing.rowKey($0))) == s } }
        try #require(onShard.allSatisfy { $0.count > 100 })
        return (ids, onShard)
    }

    @Test func aRefusedPartIsNamedAndResentOnce() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let (ids, onShard) = try await Self.setUp(cluster)
        var impatient = ClientOptions(); impatient.retrySeconds = 0.3
        let client = try cluster.client(impatient)
        // Shard 1 frozen: its part is refused (UNAVAILABLE / FROZEN, nothing applied) after the retries.
        _ = try await client.call(shard: 1, ShardRPC.freeze, Wire.CheckpointRequest(name: "hold", freezeSeconds: 60))
        var partial: PartialPush? = nil
        do { try await client.push(table: "p", ids: ids, gradients: [Float](repeating: 1, count: ids.count * 2)) } catch let ClientError.partialPush(p) { partial = p }
        let p = try #require(partial, "a push with one frozen shard reports a partial push")
        #expect(p.idsAcknowledged == onShard[0].count)
        #expect(p.failed.count == 1 && p.failed[0].shard == 1 && p.failed[0].knownNotApplied && p.failed[0].requestID != nil)
        #expect(Set(p.failed[0].ids) == Set(onShard[1]) && p.failed[0].gradients == [Float](repeating: 1, count: onShard[1].count * 2))
        #expect(ClientError.partialPush(p).detail?.reason == .frozen, "the error carries the failed part's reason")
        #expect(try await client.pull(table: "p", ids: onShard[0]) == [Float](repeating: -1, count: onShard[0].count * 2), "shard 0's part applied")
        // Still frozen: resending fails again, and says so with the same part.
        var again: PartialPush? = nil
        do { try await client.resend(p) } catch let ClientError.partialPush(q) { again = q }
        #expect(again?.failed.first?.requestID == p.failed[0].requestID && again?.idsAcknowledged == 0)
        _ = try await client.call(shard: 1, ShardRPC.thaw, Wire.CheckpointRequest(name: "hold"))
        #expect(try await client.resend(again ?? p) == onShard[1].count)
        #expect(try await client.pull(table: "p", ids: ids) == [Float](repeating: -1, count: ids.count * 2), "every gradient applied exactly once")
    }

    @Test func aPartWhoseAnswerWasLostIsAppliedOnceWhenResent() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let (ids, onShard) = try await Self.setUp(cluster)
        // A deadline short enough to give up on a stopped shard, long enough for shard 0's part on a
        // loaded machine (a deadline is not retried).
        var impatient = ClientOptions(); impatient.timeoutMs = 5000; impatient.retrySeconds = 1
        let client = try cluster.client(impatient)
        try await client.push(table: "p", ids: ids, gradients: [Float](repeating: 1, count: ids.count * 2))   // connections up
        // Shard 1 stopped: its part's call times out (outcome unknown); it sits in the shard's socket and is
        // applied when the shard continues.
        cluster.signal(1, SIGSTOP)
        var partial: PartialPush? = nil
        do { try await client.push(table: "p", ids: ids, gradients: [Float](repeating: 2, count: ids.count * 2)) } catch let ClientError.partialPush(p) { partial = p }
        cluster.signal(1, SIGCONT)
        let p = try #require(partial, "a push with one stopped shard reports a partial push")
        #expect(p.idsAcknowledged == onShard[0].count && p.failed.map(\.shard) == [1] && !p.failed[0].knownNotApplied)
        var patient = ClientOptions(); patient.retrySeconds = 30
        let resender = try cluster.client(patient)
        #expect(try await resender.resend(p) == onShard[1].count)
        #expect(try await resender.pull(table: "p", ids: ids) == [Float](repeating: -3, count: ids.count * 2), "applied exactly once on both shards")
    }
}
