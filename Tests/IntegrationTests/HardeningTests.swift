import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// What an independent client can send, checked at a real shard's door: names, freezes, strict parsing,
/// machine-readable errors. Every refusal changes nothing.
@Suite struct HardeningTests {
    /// Sends raw bytes to `path`; returns the status (ok when it succeeded) and the answer.
    static func send(_ channel: Channel, _ path: String, _ bytes: [UInt8], metadata: Metadata = []) async -> (StatusCode, Wire.ErrorDetail?, ReceivedMessage?) {
        do {
            let m = try await channel.unary(path, OutgoingMessage(bytes: bytes), metadata: metadata, timeoutMs: 10_000)
            return (.ok, nil, m)
        } catch let s as RPCStatus {
            return (s.code, s.errorDetail, nil)
        } catch {
            return (.unknown, nil, nil)
        }
    }
    /// Sends a SlotRowsRequest to `method` (ExportSlotRows or ReadStoredRows); the status and the decoded page.
    static func slotRows(_ channel: Channel, _ method: RPCMethod<Wire.SlotRowsRequest, Wire.SlotRows>, _ req: Wire.SlotRowsRequest) async throws -> (StatusCode, Wire.ErrorDetail?, Wire.SlotRows?) {
        let (code, detail, reply) = await send(channel, method.path, req.encoded())
        return (code, detail, try reply.map { m in try m.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try Wire.SlotRows(decoding: b) } })
    }
    static func pushBytes(_ table: String, _ ids: [UInt64], dim: Int, value: Float) -> [UInt8] {
        Wire.PushRequest(table: table, ids: ids, gradients: [Float](repeating: value, count: ids.count * dim).withUnsafeBytes { Array($0) }).encoded()
    }

    @Test func namesWithNULsAndOtherBytesAreRefusedBeforeAnyLookup() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await client.push(table: "t", ids: [1, 2], gradients: [1, 1, 1, 1])
        let before = try await client.pull(table: "t", ids: [1, 2])
        let ch = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { ch.close() }

        for bad in ["t\0junk", "t\0", "\0t", "a/b", "../escape", ".", "..", "", String(repeating: "x", count: 129), "tä", "t "] {
            let push = await Self.send(ch, ShardRPC.push.path, Self.pushBytes(bad, [1], dim: 2, value: 5))
            #expect(push.0 == .invalidArgument && push.1?.reason == .invalidName, "push to \(bad.debugDescription): \(push.0)")
            let pull = await Self.send(ch, ShardRPC.pull.path, Wire.PullRequest(table: bad, ids: [1]).encoded())
            #expect(pull.0 == .invalidArgument && pull.1?.reason == .invalidName, "pull from \(bad.debugDescription)")
            var spec = TableSpec(name: "x", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)).wire
            spec.name = bad
            let create = await Self.send(ch, ShardRPC.createTable.path, Wire.CreateTableRequest(spec: spec).encoded())
            #expect(create.0 == .invalidArgument && create.1?.reason == .invalidName, "create \(bad.debugDescription)")
            let drop = await Self.send(ch, ShardRPC.dropTable.path, Wire.DropTableRequest(table: bad).encoded())
            #expect(drop.0 == .invalidArgument, "drop \(bad.debugDescription)")
            for path in [ShardRPC.freeze.path, ShardRPC.thaw.path, ShardRPC.createCheckpoint.path, ShardRPC.restoreCheckpoint.path] {
                let r = await Self.send(ch, path, Wire.CheckpointRequest(name: bad).encoded())
                #expect(r.0 == .invalidArgument && r.1?.reason == .invalidName, "\(path) \(bad.debugDescription)")
            }
        }
        // A NaN or Inf in a batch for one shard is sent (the client checks only batches split over shards)
        // and refused whole by the shard.
        for value in [Float.nan, .infinity] {
            do {
                try await client.push(table: "t", ids: [1, 2], gradients: [1, 1, 1, value])
                Issue.record("push of \(value) succeeded")
            } catch let e as ClientError {
                #expect(e.status?.code == .invalidArgument && "\(e)".contains("id 2 column 1") && "\(e)".contains("nothing was applied"), "got \(e)")
            }
        }
        // Nothing changed: one table, same rows, and the shard was never frozen.
        #expect(try await client.admin.listTables() == ["t"])
        #expect(try await client.pull(table: "t", ids: [1, 2]) == before)
        try await client.push(table: "t", ids: [1], gradients: [1, 1])
    }

    @Test func aFrozenShardServesReadsAndRefusesUpdatesWithTheFreezeName() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ch = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { ch.close() }
        let freeze = await Self.send(ch, ShardRPC.freeze.path, Wire.CheckpointRequest(name: "nightly", freezeSeconds: 60).encoded())
        #expect(freeze.0 == .ok)
        // Reads keep serving.
        #expect(await Self.send(ch, ShardRPC.pull.path, Wire.PullRequest(table: "t", ids: [1, 2]).encoded()).0 == .ok)
        #expect(await Self.send(ch, ShardRPC.describeTable.path, Wire.DescribeTableRequest(table: "t").encoded()).0 == .ok)
        #expect(await Self.send(ch, ShardRPC.shardStatus.path, []).0 == .ok)
        // Updates are refused with UNAVAILABLE / FROZEN naming the freeze; nothing applied.
        let push = await Self.send(ch, ShardRPC.push.path, Self.pushBytes("t", [1], dim: 2, value: 1))
        #expect(push.0 == .unavailable && push.1?.reason == .frozen && push.1?.frozenBy == "nightly")
        let create = await Self.send(ch, ShardRPC.createTable.path, Wire.CreateTableRequest(spec: TableSpec(name: "u", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)).wire).encoded())
        #expect(create.0 == .unavailable && create.1?.reason == .frozen)
        // Another freeze name: ABORTED / BUSY naming the holder.
        let other = await Self.send(ch, ShardRPC.freeze.path, Wire.CheckpointRequest(name: "other").encoded())
        #expect(other.0 == .aborted && other.1?.reason == .busy && other.1?.frozenBy == "nightly")
        #expect(await Self.send(ch, ShardRPC.thaw.path, Wire.CheckpointRequest(name: "nightly").encoded()).0 == .ok)
        #expect(await Self.send(ch, ShardRPC.push.path, Self.pushBytes("t", [1], dim: 2, value: 1)).0 == .ok)
        #expect(try await client.pull(table: "t", ids: [1]) == [-1, -1])
    }

    @Test func everyRequestParsesStrictlyAndEveryRefusalCarriesAReason() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let ch = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { ch.close() }
        for method in ShardRPC.all {
            let r = await Self.send(ch, method.path, [0x0f, 0xff, 0xff])
            #expect(r.0 == .invalidArgument && r.1?.reason == .malformed, "\(method.path) answered \(r.0) to garbage")
        }
        let unknown = await Self.send(ch, "/embedps.v1.Shard/NoSuchMethod", [])
        #expect(unknown.0 == .unimplemented && unknown.1?.reason == .notServed)
        let missing = await Self.send(ch, ShardRPC.describeTable.path, Wire.DescribeTableRequest(table: "nope").encoded())
        #expect(missing.0 == .notFound && missing.1 == Wire.ErrorDetail(reason: .unknownTable, table: "nope"))
        let badID = await Self.send(ch, ShardRPC.push.path, Self.pushBytes("nope", [1], dim: 1, value: 1), metadata: [(key: ShardMetadata.requestID, value: "xyz")])
        #expect(badID.0 == .invalidArgument && badID.1?.reason == .malformed)
        let health = await Self.send(ch, HealthRPC.check.path, Wire.HealthCheckRequest(service: "other").encoded())
        #expect(health.0 == .notFound && health.1?.reason == .unknownService)
    }
}
