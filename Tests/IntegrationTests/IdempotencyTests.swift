import Testing
import Foundation
import Engine
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Push request ids on a real shard: a retry with the same id (what the client sends after a lost
/// acknowledgement) is answered and not applied again.
@Suite(.serialized) struct IdempotencyTests {
    @Test func aPushRetriedWithItsRequestIdIsAppliedOnce() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let channel = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { channel.close() }
        let size = RowMessageEncoder.pushRequestSize(table: "t", count: 1, dim: 2)
        let request = OutgoingMessage(length: size) {
            RowMessageEncoder.writePushRequest(into: $0, table: "t", count: 1, dim: 2, ids: { _ in 5 }, row: { _, dst in dst.update(repeating: 1, count: 2) })
        }
        let id = [(key: ShardMetadata.requestID, value: RequestID(high: 9, low: 9).description)]
        for _ in 0..<3 { _ = try await channel.unary(ShardRPC.push.path, request, metadata: id) }
        #expect(try await client.pull(table: "t", ids: [5]) == [-1, -1])
        do {
            _ = try await channel.unary(ShardRPC.push.path, request, metadata: [(key: ShardMetadata.requestID, value: "not-hex")])
            Issue.record("a malformed request id was accepted")
        } catch let s as RPCStatus { #expect(s.code == .invalidArgument) }
        #expect(try await client.pull(table: "t", ids: [5]) == [-1, -1])
        // The client attaches a fresh id to every push: two pushes, two updates.
        try await client.push(table: "t", ids: [5], gradients: [1, 1])
        try await client.push(table: "t", ids: [5], gradients: [1, 1])
        #expect(try await client.pull(table: "t", ids: [5]) == [-3, -3])
    }
}
