import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Pushes of +1 (SGD, learning rate 1, gradient -1) to random ids, counting per id what was acknowledged:
/// after any number of failovers, every row must equal its acknowledged count exactly (applied once each).
final class CountingPusher: @unchecked Sendable {
    private let lock = NSLock()
    private var acked: [UInt64: Float] = [:]
    private var failures: [String] = []
    private(set) var pushes = 0
    let ids: UInt64

    init(ids: UInt64) { self.ids = ids }

    func run(_ client: EmbedPSClient, table: String, seed: UInt64, until stop: @escaping @Sendable () -> Bool) async {
        var rng = SplitMix64(seed: seed)
        while !stop() {
            let batch = Array(Set((0..<64).map { _ in rng.next() % ids })).sorted()
            do {
                try await client.push(table: table, ids: batch, gradients: [Float](repeating: -1, count: batch.count * 2))
                lock.withLock { for id in batch { acked[id, default: 0] += 1 }; pushes += 1 }
            } catch {
                lock.withLock { failures.append("\(error)") }
                return
            }
        }
    }
    var counts: [UInt64: Float] { lock.withLock { acked } }
    var failed: [String] { lock.withLock { failures } }
    var count: Int { lock.withLock { pushes } }
}

/// A flag one task sets and others poll. Thread-safe.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Failover (issue: followers, failover without loss): `embedps-admin failover` promotes a follower and
/// fences the old primary with a higher epoch in the shard map; clients follow; with --ack-replicas 1 a
/// kill -9 of the primary under push load loses no acknowledged push and applies none twice.
@Suite(.serialized) struct FailoverTests {
    static func waitForTable(_ follower: EmbedPSClient, _ table: String) async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let s = try? await follower.admin.describeTable(table), s.first?.replicated == true { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw ClusterSpecError("the follower did not create '\(table)' within 30 s")
    }

    static func waitForPushes(_ pusher: CountingPusher, atLeast n: Int) async throws {
        let deadline = Date().addingTimeInterval(60)
        while pusher.count < n && Date() < deadline && pusher.failed.isEmpty { try await Task.sleep(nanoseconds: 20_000_000) }
    }

    /// Every acknowledged push is in the rows exactly once.
    static func expectExactCounts(_ client: EmbedPSClient, _ pusher: CountingPusher, _ table: String) async throws {
        let ids = (0..<pusher.ids).map { $0 }
        let rows = try await client.pull(table: table, ids: ids)
        let counts = pusher.counts
        var wrong: [String] = []
        for (i, id) in ids.enumerated() where rows[i * 2] != counts[id, default: 0] || rows[i * 2 + 1] != counts[id, default: 0] {
            wrong.append("id \(id): row \(rows[i * 2]), acknowledged \(counts[id, default: 0])")
        }
        #expect(wrong.isEmpty, "\(wrong.count) rows differ from their acknowledged pushes: \(wrong.prefix(5))")
    }

    /// A push sent once, straight to `address`: its status and ErrorDetail.
    static func rawPush(_ address: String, _ table: String) async -> (StatusCode, Wire.ErrorDetail?) {
        let channel = Channel(ChannelConfiguration(target: address))
        defer { channel.close() }
        var req = Wire.PushRequest(table: table, ids: [1])
        req.gradients = [Float](repeating: -1, count: 2).withUnsafeBytes { Array($0) }
        let (code, detail, _) = await HardeningTests.send(channel, ShardRPC.push.path, req.encoded())
        return (code, detail)
    }

    /// One primary shard with table "emb" (dim 2, SGD lr 1) and a follower that created it; the spec lists
    /// the follower, as a cluster spec file would.
    static func primaryWithFollower(_ extraArgs: [String] = []) async throws -> (LocalCluster, FollowerProcess, ClusterSpec) {
        let cluster = try LocalCluster(shards: 1, extraArgs: extraArgs)
        try await cluster.client().admin.createTable(TableSpec(name: "emb", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let follower = FollowerProcess(of: cluster)
        try follower.start()
        try await Self.waitForTable(try follower.client(), "emb")
        var spec = cluster.clientSpec
        spec.shards[0].followers = ["127.0.0.1:\(follower.port)"]
        return (cluster, follower, spec)
    }

    @Test func killedPrimaryWithAckReplicasFailsOverWithoutLosingOrRepeatingAPush() async throws {
        let (cluster, follower, spec) = try await Self.primaryWithFollower(["--ack-replicas", "1", "--ack-timeout-ms", "3000"])
        defer { follower.stop(); cluster.stop() }
        let primaryAddress = spec.shards[0].address, followerAddress = "127.0.0.1:\(follower.port)"
        let client = try EmbedPSClient(spec: spec)
        let pusher = CountingPusher(ids: 3000)
        let stop = StopFlag()
        let load = Task { await pusher.run(client, table: "emb", seed: 7, until: { stop.isSet }) }
        try await Self.waitForPushes(pusher, atLeast: 150)
        let acks = try await client.admin.shardStatus()[0].ackReplicas
        #expect(acks == 1)

        // kill -9 under load, then promote the follower by command.
        cluster.kill9(0)
        let killed = Date()
        let admin = try EmbedPSAdmin(spec: spec)
        let report = try await admin.failover(shard: 0)
        #expect(report.newPrimary == followerAddress && report.epoch == 1 && !report.oldPrimaryReachable, "\(report)")
        let before = pusher.count
        try await Self.waitForPushes(pusher, atLeast: before + 150)
        let writesAgain = Date().timeIntervalSince(killed)
        stop.set()
        await load.value
        #expect(pusher.failed.isEmpty, "pushes failed across the failover: \(pusher.failed.prefix(3))")
        #expect(pusher.count >= before + 150, "only \(pusher.count - before) pushes after the failover")
        let newPrimary = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: followerAddress)]))
        try await Self.expectExactCounts(newPrimary, pusher, "emb")

        // The old primary comes back with its old data and spec: it learns the newer map from the follower
        // before serving and refuses writes, naming the new primary.
        var restartSpec = ClusterSpec(shards: [.init(address: primaryAddress, followers: [followerAddress])])
        restartSpec.version = 1
        try restartSpec.encoded().write(to: URL(fileURLWithPath: cluster.serverSpecPath))
        try cluster.restart(0)
        let (code, detail) = await Self.rawPush(primaryAddress, "emb")
        #expect(code == .failedPrecondition && detail?.reason == .notPrimary && detail?.primary == followerAddress, "old primary answered \(code) \(String(describing: detail))")
        let oldStatus = try await EmbedPSClient(spec: ClusterSpec(shards: [.init(address: primaryAddress)])).admin.shardStatus()[0]
        #expect(oldStatus.fencedBy == followerAddress && oldStatus.epoch == 0)
        // A client that only knows the old primary follows the map it answers to the new one.
        let stale = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: primaryAddress)]))
        try await stale.push(table: "emb", ids: [2999], gradients: [-1, -1])
        let after = try await newPrimary.pull(table: "emb", ids: [2999])
        #expect(after == [pusher.counts[2999, default: 0] + 1, pusher.counts[2999, default: 0] + 1])
        print(String(format: "failover: %d pushes before the kill, %d after; writes accepted again %.2f s after kill -9 (failover command %.2f s)",
                     before, pusher.count - before, writesAgain, report.seconds))
    }

    @Test func plannedFailoverFencesTheLivePrimaryAfterTheFollowerCaughtUp() async throws {
        let (cluster, follower, spec) = try await Self.primaryWithFollower()
        defer { follower.stop(); cluster.stop() }
        let primaryAddress = spec.shards[0].address, followerAddress = "127.0.0.1:\(follower.port)"
        let client = try EmbedPSClient(spec: spec)
        let pusher = CountingPusher(ids: 500)
        let stop = StopFlag()
        let load = Task { await pusher.run(client, table: "emb", seed: 11, until: { stop.isSet }) }
        try await Self.waitForPushes(pusher, atLeast: 100)

        // Through the admin tool, as an operator would (JSON report).
        let (status, out) = try cluster.admin(["failover", "0", "--json"], spec: spec)
        #expect(status == 0, "\(out)")
        let report = try JSONDecoder().decode(FailoverReport.self, from: Data(out.utf8))
        #expect(report.oldPrimaryReachable && report.newPrimary == followerAddress && report.epoch == 1)
        for t in report.tables { #expect(t.primarySequence == t.promotedSequence, "\(t)") }
        let before = pusher.count
        try await Self.waitForPushes(pusher, atLeast: before + 100)
        stop.set()
        await load.value
        #expect(pusher.failed.isEmpty, "\(pusher.failed.prefix(3))")
        try await Self.expectExactCounts(try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: followerAddress)])), pusher, "emb")
        // The old primary, still running, refuses writes naming the new one; it keeps serving reads.
        let (code, detail) = await Self.rawPush(primaryAddress, "emb")
        #expect(code == .failedPrecondition && detail?.reason == .notPrimary && detail?.primary == followerAddress)
        // Running it again changes nothing: the shard's primary is already the follower.
        let (again, againOut) = try cluster.admin(["failover", "0"], spec: spec)
        #expect(again != 0 && againOut.contains("no followers"), "\(againOut)")
    }
}
