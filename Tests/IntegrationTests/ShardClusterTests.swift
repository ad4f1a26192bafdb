import Testing
import Foundation
import Engine
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Reference model of a table kept by the test: what every row must be after the pushes so far.
struct ReferenceTable {
    let spec: TableSpec
    var rows: [UInt64: [Float]] = [:]
    var steps: [UInt64: UInt32] = [:]
    init(_ spec: TableSpec) { self.spec = spec }

    mutating func row(_ id: UInt64) -> [Float] {
        if let r = rows[id] { return r }
        var r = [Float](repeating: 0, count: spec.rowFloats)
        r.withUnsafeMutableBufferPointer { b in
            RowInitializer(config: spec.initializer, dim: spec.dim).fill(b.baseAddress!, rowKey: id)
            SparseOptimizer(config: spec.optimizer, dim: spec.dim).initializeState(b.baseAddress!)
        }
        return r
    }
    mutating func push(_ ids: [UInt64], _ grads: [Float]) {
        var sums: [UInt64: [Float]] = [:]
        var order: [UInt64] = []
        for (i, id) in ids.enumerated() {
            let g = Array(grads[i * spec.dim ..< (i + 1) * spec.dim])
            if let s = sums[id] { sums[id] = zip(s, g).map { $0 + $1 } } else { sums[id] = g; order.append(id) }
        }
        for id in order {
            var r = row(id)
            var step = steps[id] ?? 0
            let g = sums[id]!
            r.withUnsafeMutableBufferPointer { b in
                g.withUnsafeBufferPointer { gb in
                    SparseOptimizer(config: spec.optimizer, dim: spec.dim).apply(b.baseAddress!, gradient: gb.baseAddress!, step: &step)
                }
            }
            rows[id] = r; steps[id] = step
        }
    }
    mutating func weights(_ ids: [UInt64]) -> [Float] { ids.flatMap { Array(row($0)[0..<spec.dim]) } }
}

func gradients(_ n: Int, _ dim: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<n * dim).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000
    }
}

func expectStatus(_ code: StatusCode, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        try await body()
        Issue.record("expected \(code), call succeeded", sourceLocation: sourceLocation)
    } catch let e as ClientError {
        #expect(e.status?.code == code, "got \(e)", sourceLocation: sourceLocation)
    } catch let e as RPCStatus {
        #expect(e.code == code, "got \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct ShardClusterTests {
    static func adagradSpec(_ name: String = "emb", dim: Int = 8) -> TableSpec {
        var o = OptimizerConfig(kind: .adagrad, learningRate: 0.1); o.initialAccumulator = 0.1
        return TableSpec(name: name, dim: dim, optimizer: o, initializer: .uniform(-0.05, 0.05, seed: 42))
    }

    @Test func pullAndPushRoundTripAcrossTwoShardsMatchTheReference() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = Self.adagradSpec()
        try await client.admin.createTable(spec)
        var ref = ReferenceTable(spec)
        let ids = (0..<2000).map { UInt64($0) * 7919 + 3 }
        // Unseen rows: their deterministic initial value, and nothing stored.
        #expect(try await client.pull(table: "emb", ids: ids) == ref.weights(ids))
        #expect(try await client.admin.describeTable("emb").map(\.rows) == [0, 0])
        for round in 0..<3 {
            let batch = Array(ids[(round * 300)..<(round * 300 + 1000)])
            let g = gradients(batch.count, 8, seed: UInt64(round))
            let updated = try await client.push(table: "emb", ids: batch, gradients: g)
            #expect(updated == batch.count)
            ref.push(batch, g)
        }
        let pulled = try await client.pull(table: "emb", ids: ids)
        let expected = ref.weights(ids)
        #expect(pulled.count == expected.count)
        #expect(zip(pulled, expected).allSatisfy { abs($0 - $1) <= 1e-6 })
        let stats = try await client.admin.describeTable("emb")
        #expect(stats.allSatisfy { $0.rows > 0 }, "both shards hold rows")
        #expect(stats.reduce(0) { $0 + $1.rows } == UInt64(ref.rows.count))
    }

    /// Each optimizer through real shards, against values computed by hand (Python, double precision) from
    /// the update rules in Protos/embedps.proto: zero-initialised rows, lr 0.1, two pushes.
    @Test func optimizerUpdatesThroughRealShardsEqualHandComputedValues() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var ftrl = OptimizerConfig(kind: .ftrl, learningRate: 0.1); ftrl.l1 = 0.01; ftrl.l2 = 0.1
        var adagrad = OptimizerConfig(kind: .adagrad, learningRate: 0.1); adagrad.initialAccumulator = 0.1
        let cases: [(OptimizerConfig, [Float], [Double])] = [
            (OptimizerConfig(kind: .sgd, learningRate: 0.1), [0.2, -0.1], [-0.02, -0.01]),
            (adagrad, [0.2, -0.1], [-0.053452248368199166, -0.027632359400149718]),
            (OptimizerConfig(kind: .adam, learningRate: 0.1), [0.2, -0.3], [-0.09999999500000034, -0.07522981435805724]),
            (ftrl, [0.2, -0.1], [-0.01570247933884298, -0.007596168626029649]),
        ]
        // Ids spread over both shards; every id gets the same two gradients.
        let ids = (0..<40).map { UInt64($0) * 1_000_003 }
        for (config, grads, expected) in cases {
            let name = "hand_\(config.kind)"
            try await client.admin.createTable(TableSpec(name: name, dim: 1, optimizer: config))
            for (step, g) in grads.enumerated() {
                try await client.push(table: name, ids: ids, gradients: [Float](repeating: g, count: ids.count))
                let rows = try await client.pull(table: name, ids: ids)
                #expect(rows.allSatisfy { abs(Double($0) - expected[step]) < 1e-6 }, "\(config.kind) step \(step + 1): \(rows[0]) vs \(expected[step])")
            }
        }
        #expect(try await client.admin.describeTable("hand_adam").allSatisfy { $0.rows > 0 }, "both shards hold rows")
    }

    @Test func duplicateIdsInOnePushAreSummedAndPullsExpandDuplicates() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = TableSpec(name: "sgd", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.5))
        try await client.admin.createTable(spec)
        try await client.push(table: "sgd", ids: [5, 9, 5, 5], gradients: [1, 1, 1, 1, 2, 2, 2, 2, 1, 0, 0, 0, 0, 1, 0, 0])
        // id 5: zeros - 0.5 * (1+1+0, 1+0+1, 1+0+0, 1+0+0); id 9: -0.5 * 2
        let rows = try await client.pull(table: "sgd", ids: [9, 5, 9])
        #expect(rows == [-1, -1, -1, -1, -1, -1, -0.5, -0.5, -1, -1, -1, -1])
    }

    @Test func fixedBudgetTableSharesRowsBetweenCollidingIds() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var spec = TableSpec(name: "hashed", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.hashMode = .fixedBudget; spec.rowBudget = 16; spec.hashSeed = 7
        try await client.admin.createTable(spec)
        let addressing = RowAddressing(spec: spec)
        // Find two ids that collide in the 16-row budget.
        var seen: [UInt64: UInt64] = [:]
        var pair: (UInt64, UInt64)? = nil
        for id in UInt64(1)...1000 {
            let k = addressing.rowKey(id)
            if let other = seen[k] { pair = (other, id); break }
            seen[k] = id
        }
        let (a, b) = try #require(pair)
        try await client.push(table: "hashed", ids: [a], gradients: [1, 2])
        #expect(try await client.pull(table: "hashed", ids: [b]) == [-1, -2])
        let pushed = try await client.admin.describeTable("hashed").reduce(0) { $0 + $1.rows }
        #expect(pushed == 1)
    }

    @Test func syncModeLosesNoAcknowledgedUpdateAcrossKillNine() async throws {
        let cluster = try LocalCluster(shards: 2, durability: "sync")
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = Self.adagradSpec("durable", dim: 16)
        try await client.admin.createTable(spec)
        var ref = ReferenceTable(spec)
        let ids = (0..<500).map { UInt64($0) }
        for round in 0..<5 {
            let g = gradients(ids.count, 16, seed: 100 + UInt64(round))
            try await client.push(table: "durable", ids: ids, gradients: g)
            ref.push(ids, g)
        }
        cluster.kill9(0); cluster.kill9(1)
        try cluster.restart(0); try cluster.restart(1)
        let fresh = try cluster.client()
        try await fresh.waitUntilHealthy(timeoutSeconds: 20)
        let pulled = try await fresh.pull(table: "durable", ids: ids)
        #expect(pulled == ref.weights(ids), "every acknowledged push survived kill -9")
        // Optimizer state survived too: one more push matches the reference.
        let g = gradients(ids.count, 16, seed: 999)
        try await fresh.push(table: "durable", ids: ids, gradients: g)
        ref.push(ids, g)
        #expect(try await fresh.pull(table: "durable", ids: ids) == ref.weights(ids))
    }

    @Test func badInputIsRejectedWithAClearStatusAndChangesNothing() async throws {
        let cluster = try LocalCluster(shards: 2, extraArgs: ["--max-message-mb", "1"])
        defer { cluster.stop() }
        var options = ClientOptions(); options.maxMessageBytes = 8 << 20
        let client = try cluster.client(options)
        try await client.admin.createTable(Self.adagradSpec())
        let ids: [UInt64] = Array(0..<64)
        try await client.push(table: "emb", ids: ids, gradients: gradients(64, 8, seed: 1))
        let before = try await client.pull(table: "emb", ids: ids)
        let statsBefore = try await client.admin.describeTable("emb")

        await expectStatus(.notFound) { _ = try await client.pull(table: "nope", ids: [1]) }
        // NaN in one row of a batch: the whole batch is rejected.
        var g = gradients(64, 8, seed: 2); g[77] = .nan
        await expectStatus(.invalidArgument) { try await client.push(table: "emb", ids: ids, gradients: g) }
        g[77] = .infinity
        await expectStatus(.invalidArgument) { try await client.push(table: "emb", ids: ids, gradients: g) }

        let shard0 = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { shard0.close() }
        // Wrong dimension (raw request: 64 ids with 4 floats each).
        let wrongDim = OutgoingMessage(length: RowMessageEncoder.pushRequestSize(table: "emb", count: 64, dim: 4)) { buf in
            RowMessageEncoder.writePushRequest(into: buf, table: "emb", count: 64, dim: 4, ids: { UInt64($0) }, row: { _, d in d.update(repeating: 1, count: 4) })
        }
        await expectStatus(.invalidArgument) { _ = try await shard0.unary(ShardRPC.push.path, wrongDim) }
        // Malformed bytes.
        await expectStatus(.invalidArgument) { _ = try await shard0.unary(ShardRPC.push.path, OutgoingMessage(bytes: [0x0a, 0xff, 0xff, 0x01])) }
        await expectStatus(.invalidArgument) { _ = try await shard0.unary(ShardRPC.createTable.path, OutgoingMessage(bytes: [0x12, 0x05, 1])) }
        // Oversized (server limit 1 MiB).
        let big = (0..<100_000).map { UInt64($0) }
        await expectStatus(.resourceExhausted) { try await client.push(table: "emb", ids: big, gradients: [Float](repeating: 0.1, count: big.count * 8)) }
        // Wrong slot owner: send every id to shard 0; some belong to shard 1.
        let wrongOwner = OutgoingMessage(length: RowMessageEncoder.pullRequestSize(table: "emb", count: 64)) { buf in
            RowMessageEncoder.writePullRequest(into: buf, table: "emb", count: 64) { UInt64($0) }
        }
        do {
            _ = try await shard0.unary(ShardRPC.pull.path, wrongOwner)
            Issue.record("expected FAILED_PRECONDITION")
        } catch let s as RPCStatus {
            #expect(s.code == .failedPrecondition)
            let detail = try #require(s.errorDetail)
            #expect(detail.reason == .wrongShard && detail.shardMapVersion == 1 && detail.ownerShard == 1 && detail.table == "emb")
        }
        // Invalid spec.
        var bad = Self.adagradSpec("bad"); bad.optimizer.learningRate = -1
        await expectStatus(.invalidArgument) {
            _ = try await shard0.unary(ShardRPC.createTable.path, OutgoingMessage(bytes: Wire.CreateTableRequest(spec: bad.wire).encoded()))
        }
        // Same name, different spec.
        var other = Self.adagradSpec(); other.dim = 9
        await expectStatus(.alreadyExists) { try await client.admin.createTable(other) }

        // Nothing changed and the shards still serve.
        #expect(try await client.pull(table: "emb", ids: ids) == before)
        let statsAfter = try await client.admin.describeTable("emb")
        #expect(statsAfter.map(\.rows) == statsBefore.map(\.rows))
        #expect(statsAfter.map(\.pushes) == statsBefore.map(\.pushes))
        #expect(await client.health() == [true, true])
    }

    @Test func tablesSurviveGracefulRestartAndCanBeDropped() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(Self.adagradSpec("a"))
        try await client.admin.createTable(TableSpec(name: "b", dim: 3, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await client.push(table: "b", ids: [1, 2], gradients: [1, 1, 1, 2, 2, 2])
        cluster.terminate(0)
        try cluster.restart(0)
        try await client.waitUntilHealthy(timeoutSeconds: 20)
        #expect(try await client.admin.listTables() == ["a", "b"])
        #expect(try await client.pull(table: "b", ids: [2, 1]) == [-2, -2, -2, -1, -1, -1])
        #expect(try await client.admin.describeTable("b").map(\.rows) == [2])
        #expect(try await client.admin.dropTable("b"))
        #expect(try await client.admin.listTables() == ["a"])
        await expectStatus(.notFound) { _ = try await client.pull(table: "b", ids: [1]) }
        let status = try await client.admin.shardStatus()
        #expect(status.count == 1 && status[0].ownedSlots == 4096 && status[0].durability == "async")
    }
}
