import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire
import Coordination

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
    static func primaryWithFollower(_ extraArgs: [String] = [], followerArgs: [String] = []) async throws -> (LocalCluster, FollowerProcess, ClusterSpec) {
        let cluster = try LocalCluster(shards: 1, extraArgs: extraArgs)
        try await cluster.client().admin.createTable(TableSpec(name: "emb", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let follower = FollowerProcess(of: cluster, extraArgs: followerArgs)
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
        try await Self.expectRestartedOldPrimaryRefusesWrites(cluster, spec, newPrimary: followerAddress)
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

    /// The old primary, restarted on its old data and address with a spec naming the follower: it refuses
    /// writes naming `newPrimary`.
    static func expectRestartedOldPrimaryRefusesWrites(_ cluster: LocalCluster, _ spec: ClusterSpec, newPrimary: String) async throws {
        var restartSpec = ClusterSpec(shards: [.init(address: spec.shards[0].address, followers: [newPrimary])])
        restartSpec.version = 1
        try restartSpec.encoded().write(to: URL(fileURLWithPath: cluster.serverSpecPath))
        try cluster.restart(0)
        let (code, detail) = await Self.rawPush(spec.shards[0].address, "emb")
        #expect(code == .failedPrecondition && detail?.reason == .notPrimary && detail?.primary == newPrimary, "old primary answered \(code) \(String(describing: detail))")
    }

    @Test(.enabled(if: EtcdProcess.binary != nil, "needs etcd (apt-get install etcd-server; Cluster/install-deps.sh installs it)"))
    func aFollowerPromotesItselfWhenTheKilledPrimarysEtcdLeaseExpires() async throws {
        let etcd = try EtcdProcess()
        defer { etcd.stop() }
        let lease = ["--etcd", etcd.url, "--lease-ttl-seconds", "2"]
        let (cluster, follower, spec) = try await Self.primaryWithFollower(["--ack-replicas", "1", "--ack-timeout-ms", "3000"] + lease, followerArgs: lease)
        defer { follower.stop(); cluster.stop() }
        let followerAddress = "127.0.0.1:\(follower.port)"
        let primaryStatus = try await EmbedPSClient(spec: ClusterSpec(shards: [spec.shards[0]])).admin.shardStatus()[0]
        #expect(primaryStatus.lease.hasPrefix("primary"), "\(primaryStatus.lease)")
        let client = try EmbedPSClient(spec: spec)
        let pusher = CountingPusher(ids: 2000)
        let stop = StopFlag()
        let load = Task { await pusher.run(client, table: "emb", seed: 3, until: { stop.isSet }) }
        try await Self.waitForPushes(pusher, atLeast: 150)

        // kill -9 and no command: the lease runs out, the follower takes it and promotes itself.
        cluster.kill9(0)
        let killed = Date()
        let before = pusher.count
        try await Self.waitForPushes(pusher, atLeast: before + 1)
        let writesAgain = Date().timeIntervalSince(killed)
        try await Self.waitForPushes(pusher, atLeast: before + 150)
        stop.set()
        await load.value
        #expect(pusher.failed.isEmpty, "pushes failed across the failover: \(pusher.failed.prefix(3))")
        let promoted = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: followerAddress)]))
        let status = try await promoted.admin.shardStatus()[0]
        #expect(status.epoch == 1 && status.follows.isEmpty && status.lease.hasPrefix("primary"), "\(status.epoch) \(status.follows) \(status.lease)")
        try await Self.expectExactCounts(promoted, pusher, "emb")
        try await Self.expectRestartedOldPrimaryRefusesWrites(cluster, spec, newPrimary: followerAddress)
        // A primary that cannot renew its lease for a whole TTL (etcd gone) stops taking writes: a follower
        // elsewhere may hold the shard by then.
        etcd.stop()
        var (code, detail) = await Self.rawPush(followerAddress, "emb")
        let deadline = Date().addingTimeInterval(15)   // one TTL (2 s) plus a lease round, with room for a loaded machine
        while code != .failedPrecondition && Date() < deadline {
            try await Task.sleep(nanoseconds: 200_000_000)
            (code, detail) = await Self.rawPush(followerAddress, "emb")
        }
        #expect(code == .failedPrecondition && detail?.reason == .notPrimary, "a primary without its lease answered \(code)")
        print(String(format: "etcd failover: pushes acknowledged again %.2f s after kill -9 (lease TTL 2 s)", writesAgain))
    }

    /// With etcd configured, a failover by command while the old primary is alive and renewing its lease:
    /// the promoted primary takes the key over by its higher epoch, the old one stops renewing.
    @Test(.enabled(if: EtcdProcess.binary != nil, "needs etcd (apt-get install etcd-server; Cluster/install-deps.sh installs it)"))
    func aFailoverByCommandTakesTheEtcdLeaseOverByEpoch() async throws {
        let etcd = try EtcdProcess()
        defer { etcd.stop() }
        let lease = ["--etcd", etcd.url, "--lease-ttl-seconds", "2"]
        let (cluster, follower, spec) = try await Self.primaryWithFollower(lease, followerArgs: lease)
        defer { follower.stop(); cluster.stop() }
        let followerAddress = "127.0.0.1:\(follower.port)"
        let client = try EmbedPSClient(spec: spec)
        let pusher = CountingPusher(ids: 500)
        let stop = StopFlag()
        let load = Task { await pusher.run(client, table: "emb", seed: 5, until: { stop.isSet }) }
        try await Self.waitForPushes(pusher, atLeast: 50)
        let report = try await EmbedPSAdmin(spec: spec).failover(shard: 0)
        #expect(report.oldPrimaryReachable && report.epoch == 1)
        let before = pusher.count
        try await Self.waitForPushes(pusher, atLeast: before + 50)
        stop.set()
        await load.value
        #expect(pusher.failed.isEmpty, "\(pusher.failed.prefix(3))")
        let promoted = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: followerAddress)]))
        try await Self.expectExactCounts(promoted, pusher, "emb")
        // Each lease loop runs every third of the TTL: wait (bounded) for both to have seen the new map.
        let old = try EmbedPSClient(spec: ClusterSpec(shards: [spec.shards[0]]))
        var newStatus = try await promoted.admin.shardStatus()[0], oldStatus = try await old.admin.shardStatus()[0]
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !(newStatus.lease.hasPrefix("primary") && oldStatus.lease.hasPrefix("fenced")) {
            try await Task.sleep(nanoseconds: 100_000_000)
            newStatus = try await promoted.admin.shardStatus()[0]; oldStatus = try await old.admin.shardStatus()[0]
        }
        #expect(newStatus.lease.hasPrefix("primary"), "\(newStatus.lease)")
        #expect(oldStatus.lease.hasPrefix("fenced") && oldStatus.fencedBy == followerAddress, "\(oldStatus.lease)")
        let holder = try EtcdClient(endpoint: etcd.url).get("/embedps/shard/0/primary")?.value ?? ""
        #expect(holder.contains(followerAddress) && holder.contains("\"epoch\":1"), "\(holder)")
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

/// A single-member etcd on free loopback ports with its own data directory, for the lease tests.
final class EtcdProcess: @unchecked Sendable {
    static var binary: String? { ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) } }
    let url: String
    let dir: URL
    private let process = Process()

    init() throws {
        guard let bin = Self.binary else { throw ClusterSpecError("etcd is not installed") }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let (clientPort, peerPort) = (Self.freePort(), Self.freePort())
        url = "http://127.0.0.1:\(clientPort)"
        let peer = "http://127.0.0.1:\(peerPort)"
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["--name", "embedps-test", "--data-dir", dir.appendingPathComponent("data").path, "--listen-client-urls", url, "--advertise-client-urls", url,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "embedps-test=\(peer)"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("etcd.log").path, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: dir.appendingPathComponent("etcd.log").path)
        try process.run()
        let client = try EtcdClient(endpoint: url)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if (try? client.get("/probe")) != nil || ((try? client.grantLease(ttl: 1)) != nil) { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        stop()
        throw ClusterSpecError("etcd did not answer within 20 s")
    }

    func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: dir)
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET); addr.sin_port = 0; addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
