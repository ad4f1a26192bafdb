import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// A follower process of shard 0 of `cluster` (same spec and index, its own port and data directory).
final class FollowerProcess: @unchecked Sendable {
    let cluster: LocalCluster
    let dataDir: String
    let extraArgs: [String]
    private(set) var process: Process?
    private(set) var port = 0
    var log: String { cluster.root.appendingPathComponent("follower.log").path }

    init(of cluster: LocalCluster, extraArgs: [String] = []) {
        self.cluster = cluster; self.extraArgs = extraArgs
        dataDir = cluster.root.appendingPathComponent("follower").path
    }

    func start() throws {
        let portFile = cluster.root.appendingPathComponent("follower-port").path
        try? FileManager.default.removeItem(atPath: portFile)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: LocalCluster.binary("embedps-server"))
        p.arguments = ["--cluster", cluster.serverSpecPath, "--shard-index", "0", "--listen", "127.0.0.1:\(port)", "--data-dir", dataDir,
                       "--port-file", portFile, "--follow", "127.0.0.1:\(cluster.ports[0])"] + extraArgs
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let h = FileHandle(forWritingAtPath: log)
        h?.seekToEndOfFile()
        p.standardOutput = h
        p.standardError = h
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) { port = n; return }
            if !p.isRunning { throw ClusterSpecError("follower exited during start: \(logTail)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw ClusterSpecError("follower did not start within 30 s")
    }

    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); process = nil
    }
    func stop() {
        guard let p = process, p.isRunning else { return }
        p.terminate(); p.waitUntilExit(); process = nil
    }
    var logTail: String { String(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(3000)) }
    func client() throws -> EmbedPSClient { try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: "127.0.0.1:\(port)")])) }
}

/// Followers (issue: followers that replay the update log): a follower copies a primary's stored rows, then
/// its log, so its rows are bitwise equal to the primary's at the same sequence; it refuses writes naming the
/// primary; table creation and drops reach it; after kill -9 it resumes from its own data.
@Suite(.serialized) struct ReplicationTests {
    static func rows(_ client: EmbedPSClient, _ table: String, _ ids: [UInt64]) async throws -> [UInt32] {
        try await client.pull(table: table, ids: ids).map(\.bitPattern)
    }

    /// Waits until the follower's copy of `table` has the primary's last sequence (and returns it).
    static func waitCaughtUp(_ primary: EmbedPSClient, _ follower: EmbedPSClient, _ table: String, seconds: Double = 120) async throws -> UInt64 {
        let deadline = Date().addingTimeInterval(seconds)
        var last: (UInt64, UInt64) = (0, 0)
        while Date() < deadline {
            let p = try await primary.admin.describeTable(table)[0].lastSequence
            if let f = try? await follower.admin.describeTable(table)[0].lastSequence {
                last = (p, f)
                if p == f { return p }
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw ClusterSpecError("follower of '\(table)' at sequence \(last.1), primary at \(last.0) after \(seconds) s")
    }

    @Test func aFollowerCopiesRowsBitwiseRefusesWritesAndResumesAfterKill9() async throws {
        // A small log limit makes the primary checkpoint (and trim its log) while the follower copies.
        let cluster = try LocalCluster(shards: 1, extraArgs: ["--checkpoint-log-mb", "1"])
        defer { cluster.stop() }
        let primary = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        try await primary.admin.createTable(TableSpec(name: "emb", dim: 8, optimizer: opt, initializer: .normal(mean: 0, stddev: 0.1, seed: 5)))
        var rng = SplitMix64(seed: 42)
        var touched = Set<UInt64>()
        func pushBatches(_ n: Int) async throws {
            for _ in 0..<n {
                let ids = Array(Set((0..<512).map { _ in rng.next() % 20_000 }))
                let grads = (0..<(ids.count * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
                try await primary.push(table: "emb", ids: ids, gradients: grads)
                touched.formUnion(ids)
            }
        }
        // History before the follower exists, with a checkpoint in it: the follower must copy rows first.
        try await pushBatches(20)
        try await primary.admin.flush(table: "emb")
        try await pushBatches(10)

        let follower = FollowerProcess(of: cluster)
        defer { follower.stop() }
        try follower.start()
        let fc = try follower.client()
        // Pushes keep coming while it copies and catches up.
        try await pushBatches(40)
        _ = try await Self.waitCaughtUp(primary, fc, "emb")
        let ids = touched.sorted() + [999_999]
        let a = try await Self.rows(primary, "emb", ids), b = try await Self.rows(fc, "emb", ids)
        #expect(a == b, "follower rows differ from the primary's at the same sequence")
        let stats = try await fc.admin.describeTable("emb")[0], primaryRows = try await primary.admin.describeTable("emb")[0].rows
        #expect(stats.replicated && stats.rows == primaryRows, "follower \(stats.rows) rows, primary \(primaryRows)")
        let follows = try await fc.admin.shardStatus()[0].follows
        #expect(follows == "127.0.0.1:\(cluster.ports[0])")

        // The lookup service reads from the follower when the spec lists it: the primary serves no pull.
        var withFollower = cluster.clientSpec
        withFollower.shards[0].followers = ["127.0.0.1:\(follower.port)"]
        let lookup = try cluster.startLookup(spec: withFollower, extraArgs: ["--cache-rows", "0"])
        defer { lookup.process.terminate(); lookup.process.waitUntilExit() }
        let primaryPulls = try await primary.admin.describeTable("emb")[0].pulls
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(lookup.grpc)"))
        defer { channel.close() }
        let probe = Array(ids.prefix(256))
        let (dim, served) = try await LookupServiceTests.grpcLookup(channel, "emb", probe)
        let expected = try await primary.pull(table: "emb", ids: probe)
        #expect(dim == 8 && served.map(\.bitPattern) == expected.map(\.bitPattern), "lookup through the follower differs from the primary")
        let primaryPullsAfter = try await primary.admin.describeTable("emb")[0].pulls
        #expect(primaryPullsAfter == primaryPulls + 1, "the primary served the lookup (\(primaryPulls) -> \(primaryPullsAfter) pulls; 1 is the check above)")

        // Writes to the follower are refused with the primary's address; nothing changes.
        do {
            try await fc.push(table: "emb", ids: [1], gradients: [Float](repeating: 1, count: 8))
            Issue.record("a push to the follower was accepted")
        } catch let e as ClientError {
            #expect(e.status?.code == .failedPrecondition && e.detail?.reason == .notPrimary && e.detail?.primary == "127.0.0.1:\(cluster.ports[0])", "\(e)")
        }
        let unchanged = try await Self.rows(fc, "emb", ids)
        #expect(unchanged == a)

        // Tables created and dropped on the primary follow, whatever their kind.
        try await primary.admin.createTable(TableSpec(name: "later", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await primary.push(table: "later", ids: [7, 8], gradients: [-1, -1, -2, -2])
        var evicting = TableSpec(name: "evicting", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        evicting.eviction = EvictionConfig(); evicting.eviction?.ttlUpdates = 100
        try await primary.admin.createTable(evicting)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let laterRows = try? await fc.pull(table: "later", ids: [7, 8])
            let names = (try? await fc.admin.listTables()) ?? []
            if laterRows == [1, 1, 2, 2] && names.contains("evicting") { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let later = try await fc.pull(table: "later", ids: [7, 8])
        #expect(later == [1, 1, 2, 2])
        let evictingStats = try await fc.admin.describeTable("evicting")[0]
        #expect(evictingStats.replicated)
        _ = try await primary.admin.dropTable("later")
        while Date() < deadline, (try? await fc.admin.listTables())?.contains("later") == true { try await Task.sleep(nanoseconds: 50_000_000) }
        let tables = try await fc.admin.listTables()
        #expect(!tables.contains("later"), "\(tables)")

        // kill -9 of the follower under push load; it restarts from its own data and catches up.
        follower.kill9()
        try await pushBatches(20)
        try follower.start()
        let fc2 = try follower.client()
        try await pushBatches(10)
        _ = try await Self.waitCaughtUp(primary, fc2, "emb")
        let ids2 = touched.sorted()
        let a2 = try await Self.rows(primary, "emb", ids2), b2 = try await Self.rows(fc2, "emb", ids2)
        #expect(a2 == b2, "rows differ after the follower's restart")
        #expect(!follower.logTail.contains("Sanitizer"), "\(follower.logTail)")
        print("replication: " + follower.logTail.split(separator: "\n").filter { $0.contains("copied") || $0.contains("retrying") || $0.contains("created") }.joined(separator: "; "))
    }

    /// Imports write rows outside the update log: the follower sees the primary's rows generation move and
    /// copies the stored rows again, also when the import happened while it was down.
    @Test func importsOnThePrimaryReachTheFollower() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let primary = try cluster.client()
        try await primary.admin.createTable(TableSpec(name: "imp", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ids = (0..<2000).map { UInt64($0) }
        try await primary.push(table: "imp", ids: ids, gradients: [Float](repeating: -1, count: ids.count * 4))
        let follower = FollowerProcess(of: cluster)
        defer { follower.stop() }
        try follower.start()
        _ = try await Self.waitCaughtUp(primary, try follower.client(), "imp")
        func importAndCheck(_ value: Float, restartFollower: Bool) async throws {
            if restartFollower { follower.kill9() }
            try await primary.admin.importRows("imp", keys: Array(ids.prefix(500)), values: [Float](repeating: value, count: 500 * 4))
            try await primary.push(table: "imp", ids: [1, 1999], gradients: [Float](repeating: -0.5, count: 8))
            if restartFollower { try follower.start() }
            let fc = try follower.client()
            let expected = try await Self.rows(primary, "imp", ids)
            let deadline = Date().addingTimeInterval(60)
            var got: [UInt32] = []
            while Date() < deadline {
                got = (try? await Self.rows(fc, "imp", ids)) ?? []
                if got == expected { break }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            #expect(got == expected, "the follower's rows differ from the primary's after an import (restart: \(restartFollower))")
        }
        try await importAndCheck(7, restartFollower: false)
        // Imports are not in the log: equal rows after each can only come from copying the rows again.
        try await importAndCheck(9, restartFollower: true)
    }

    /// ReadStoredRows as an outside client may call it: a limit over the cap (65536) returns a full capped
    /// page that is not reported done, pages resume across slots, a bad slot is refused, and the pages
    /// together hold every stored row once.
    @Test func storedRowPagesAreCappedResumeAcrossSlotsAndRefuseBadSlots() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = TableSpec(name: "wide", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        try await client.admin.createTable(spec)
        for part in 0..<4 {
            let ids = (part * 17_500..<(part + 1) * 17_500).map { UInt64($0) }
            try await client.push(table: "wide", ids: ids, gradients: [Float](repeating: -1, count: ids.count))
        }
        try await client.admin.flush(table: "wide")
        let channel = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { channel.close() }
        func page(_ req: Wire.SlotRowsRequest) async throws -> (StatusCode, Wire.ErrorDetail?, Wire.SlotRows?) {
            try await HardeningTests.slotRows(channel, ShardRPC.readStoredRows, req)
        }
        let (badCode, badDetail, _) = try await page(Wire.SlotRowsRequest(table: "wide", slot: 4096, limit: 10))
        #expect(badCode == .invalidArgument && badDetail?.reason == .malformed)
        let addressing = RowAddressing(spec: spec)
        var seen: [UInt64] = [], cursor: (UInt16, UInt64)? = nil, pages = 0
        while pages < 10 {
            var req = Wire.SlotRowsRequest(table: "wide", slot: UInt32(cursor?.0 ?? 0), limit: 100_000)
            if let c = cursor { req.hasAfter = true; req.after = c.1 }
            let (code, _, reply) = try await page(req)
            let rows = try #require(reply, "ReadStoredRows failed: \(code)")
            pages += 1
            if pages == 1 { #expect(rows.keys.count == 65536 && !rows.done, "first page: \(rows.keys.count) rows, done \(rows.done)") }
            seen += rows.keys
            if let last = rows.keys.last { cursor = (addressing.slot(ofRowKey: last), last) }
            if rows.done { break }
        }
        #expect(pages == 2 && seen.count == 70_000 && Set(seen) == Set((0..<70_000).map { UInt64($0) }), "\(pages) pages, \(seen.count) rows")
    }
}
