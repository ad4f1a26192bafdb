import Foundation
import Client
import EmbedPSWire
import Vocabulary
import CLI
import Storage

/// Replication figures (`--replication`): push throughput of one primary shard without and with a follower
/// copying it (same pass), the follower's lag sampled under that load, how long it needs to catch up when the
/// load stops, and freshness (push acknowledged -> the follower's pull returns the new value).
struct ReplicationFigures: Codable {
    var rows: Int, dim: Int, batch: Int, seconds: Double
    var pushRowsPerSecondAlone: Double
    var pushRowsPerSecondWithFollower: Double
    var lagRecordsP50: Double, lagRecordsP99: Double, lagRecordsMax: Double
    var lagRowsMax: Double
    var catchUpSeconds: Double
    var freshnessP50Ms: Double, freshnessP99Ms: Double
    var bootstrapSeconds: Double
    /// The primary restarted with --ack-replicas 1 (a push answered once the follower confirmed it).
    var pushRowsPerSecondAckReplica: Double
    var pushLatencyP50MsAck0: Double, pushLatencyP50MsAck1: Double
    /// kill -9 of the primary under push load, `embedps-admin failover`, first push acknowledged again.
    var failoverCommandSeconds: Double, killToWritesSeconds: Double
}

func runReplicationBenchmark(rows: Int, dim: Int, batch: Int, seconds: Double, work: URL, json: Bool) async throws {
    let primaryDir = work.appendingPathComponent("primary")
    try FileManager.default.createDirectory(at: primaryDir, withIntermediateDirectories: true)
    let (primary, specPath) = try await startBenchShard(work: primaryDir, cacheRows: rows + 1)
    defer { primary.stop(graceSeconds: 30) }
    let client = try EmbedPSClient(specPath: specPath)
    try await client.waitUntilHealthy(timeoutSeconds: 30)
    let table = "replicated"
    try await client.admin.createTable(TableSpec(name: table, dim: dim, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.01)))
    var rng = SplitMix64(seed: 7)
    let batches = (0..<256).map { _ in Array(Set((0..<batch).map { _ in rng.next() % UInt64(rows) })) }
    let grads = batches.map { b in FloatBuffer((0..<(b.count * dim)).map { _ in Float(rng.unit() - 0.5) * 0.01 }) }
    func lastSequence(_ c: EmbedPSClient) async throws -> UInt64 { try await c.admin.describeTable(table).first?.lastSequence ?? 0 }

    /// Pushes with 4 in flight for `seconds`; `sample` runs every 100 ms meanwhile. Returns rows/s.
    func pushLoad(_ seconds: Double, sample: (@Sendable () async -> Void)? = nil) async throws -> Double {
        let sampler = sample.map { s in Task { while !Task.isCancelled { await s(); try? await Task.sleep(nanoseconds: 100_000_000) } } }
        defer { sampler?.cancel() }
        let start = monotonicSeconds()
        var k = 0, pushed = 0
        while monotonicSeconds() - start < seconds {
            try await withThrowingTaskGroup(of: Int.self) { g in
                for j in 0..<4 {
                    let b = batches[(k + j) % batches.count], gr = grads[(k + j) % grads.count]
                    g.addTask { try await client.push(table: table, ids: b, gradients: gr); return b.count }
                }
                for try await n in g { pushed += n }
            }
            k += 4
        }
        return Double(pushed) / (monotonicSeconds() - start)
    }

    // Fill the table (every row pushed once), then measure the primary alone.
    printError("  replication: filling \(rows) rows, then \(Int(seconds)) s of pushes without a follower")
    var start = 0
    while start < rows {
        let ids = (start..<min(rows, start + 65536)).map { UInt64($0) }
        try await client.push(table: table, ids: ids, gradients: [Float](repeating: 0.001, count: ids.count * dim))
        start += 65536
    }
    let alone = try await pushLoad(seconds)

    // Start the follower; it copies the stored rows (the primary checkpoints first), then the log.
    let followerDir = work.appendingPathComponent("follower")
    try FileManager.default.createDirectory(at: followerDir, withIntermediateDirectories: true)
    let serverSpec = primaryDir.appendingPathComponent("server-spec.json").path
    let primaryAddress = try ClusterSpec.load(path: specPath).shards[0].address
    let portFile = followerDir.appendingPathComponent("port").path
    let serverBin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("embedps-server").path
    let follower = try ChildProcess(serverBin, ["--cluster", serverSpec, "--shard-index", "0", "--listen", "127.0.0.1:0", "--data-dir", followerDir.appendingPathComponent("data").path,
                                                "--cache-rows", "\(rows + 1)", "--port-file", portFile, "--follow", primaryAddress],
                                    log: followerDir.appendingPathComponent("follower.log").path)
    defer { follower.stop(graceSeconds: 30) }
    try waitForFile(portFile, seconds: 30)
    try await Task.sleep(nanoseconds: 50_000_000)
    let followerPort = try String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    let fc = try EmbedPSClient(spec: ClusterSpec(shards: [.init(address: "127.0.0.1:\(followerPort)")]))
    let t0 = monotonicSeconds()
    let target = try await lastSequence(client)
    while (try? await lastSequence(fc)) ?? 0 < target { try await Task.sleep(nanoseconds: 20_000_000) }
    let bootstrap = monotonicSeconds() - t0
    printError(String(format: "  replication: follower copied %d rows and caught up in %.2f s; %d s of pushes with it", rows, bootstrap, Int(seconds)))

    let lags = LockedBox<[Double]>([])
    let with = try await pushLoad(seconds) { [client, fc, table] in
        guard let p = try? await client.admin.describeTable(table).first?.lastSequence,
              let f = try? await fc.admin.describeTable(table).first?.lastSequence else { return }
        lags.withLock { $0.append(Double(p &- min(p, f))) }
    }
    let stopped = monotonicSeconds(), final = try await lastSequence(client)
    while (try? await lastSequence(fc)) ?? 0 < final { try await Task.sleep(nanoseconds: 5_000_000) }
    let catchUp = monotonicSeconds() - stopped

    // Freshness: one row pushed, then the follower polled until its value changes.
    var fresh: [Double] = []
    let gradient = [Float](repeating: -1, count: dim)
    for i in 0..<50 {
        let id = UInt64(i)
        let before = try await fc.pull(table: table, ids: [id])
        let t = monotonicSeconds()
        try await client.push(table: table, ids: [id], gradients: gradient)
        while try await fc.pull(table: table, ids: [id]) == before { try await Task.sleep(nanoseconds: 200_000) }
        fresh.append((monotonicSeconds() - t) * 1000)
    }
    func pct(_ xs: [Double], _ p: Double) -> Double { let s = xs.sorted(); return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))] }
    /// Median latency of single pushes (one in flight) of one batch.
    func pushLatencyMs() async throws -> Double {
        var ms: [Double] = []
        for i in 0..<100 {
            let t = monotonicSeconds()
            try await client.push(table: table, ids: batches[i], gradients: grads[i])
            ms.append((monotonicSeconds() - t) * 1000)
        }
        return pct(ms, 0.5)
    }
    let latency0 = try await pushLatencyMs()

    // The same primary (data, port) restarted with --ack-replicas 1; the follower reconnects by itself.
    let port = try String(contentsOfFile: primaryDir.appendingPathComponent("port").path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    try? FileManager.default.removeItem(atPath: primaryDir.appendingPathComponent("port").path)
    var ackArgs = primary.args
    if let i = ackArgs.firstIndex(of: "--listen") { ackArgs[i + 1] = "127.0.0.1:\(port)" }
    try primary.restart(signal: SIGTERM, arguments: ackArgs + ["--ack-replicas", "1"])
    try waitForFile(primaryDir.appendingPathComponent("port").path, seconds: 60)
    try await client.waitUntilHealthy(timeoutSeconds: 30)
    // Warm the restarted primary's cache as it was before (every row pulled once), so only the ack differs.
    for first in stride(from: 0, to: rows, by: 65536) {
        _ = try await client.pull(table: table, ids: (first..<min(rows, first + 65536)).map { UInt64($0) })
    }
    let resumed = try await lastSequence(client)
    while (try? await lastSequence(fc)) ?? 0 < resumed { try await Task.sleep(nanoseconds: 20_000_000) }
    printError("  replication: primary restarted with --ack-replicas 1; \(Int(seconds)) s of pushes")
    let acked = try await pushLoad(seconds)
    let latency1 = try await pushLatencyMs()

    // Failover: kill -9 under push load, promote the follower, time until pushes are acknowledged again.
    var withFollowerSpec = try ClusterSpec.load(path: specPath)
    withFollowerSpec.shards[0].followers = ["127.0.0.1:\(followerPort)"]
    let failoverClient = try EmbedPSClient(spec: withFollowerSpec)
    let ackedAt = LockedBox<[Double]>([])
    let load = Task {
        var i = 0
        while !Task.isCancelled {
            do { try await failoverClient.push(table: table, ids: batches[i % batches.count], gradients: grads[i % grads.count]) } catch { return }
            ackedAt.withLock { $0.append(monotonicSeconds()) }
            i += 1
        }
    }
    try await Task.sleep(nanoseconds: 1_000_000_000)
    primary.kill9()
    let killedAt = monotonicSeconds()
    let report = try await EmbedPSAdmin(spec: withFollowerSpec).failover(shard: 0)
    while ackedAt.withLock({ $0.last ?? 0 }) < killedAt && monotonicSeconds() - killedAt < 60 { try await Task.sleep(nanoseconds: 5_000_000) }
    let writesAgain = (ackedAt.withLock { $0.first { $0 > killedAt } } ?? .nan) - killedAt
    load.cancel()
    _ = await load.value
    printError(String(format: "  replication: failover after kill -9 took %.2f s; pushes acknowledged again %.2f s after the kill", report.seconds, writesAgain))
    let l = lags.withLock { $0 }
    let perRecord = Double(batches.map(\.count).reduce(0, +)) / Double(batches.count)
    let f = ReplicationFigures(rows: rows, dim: dim, batch: batch, seconds: seconds, pushRowsPerSecondAlone: alone, pushRowsPerSecondWithFollower: with,
                               lagRecordsP50: pct(l, 0.5), lagRecordsP99: pct(l, 0.99), lagRecordsMax: l.max() ?? 0, lagRowsMax: (l.max() ?? 0) * perRecord,
                               catchUpSeconds: catchUp, freshnessP50Ms: pct(fresh, 0.5), freshnessP99Ms: pct(fresh, 0.99), bootstrapSeconds: bootstrap,
                               pushRowsPerSecondAckReplica: acked, pushLatencyP50MsAck0: latency0, pushLatencyP50MsAck1: latency1,
                               failoverCommandSeconds: report.seconds, killToWritesSeconds: writesAgain)
    if json { print(jsonText(f)); return }
    func g(_ x: Double, _ d: Int = 0) -> String { String(format: "%.\(d)f", x) }
    print(renderTable(["rows x dim", "push rows/s alone", "with follower", "ratio", "lag records p50 / p99 / max", "lag rows max", "catch-up s",
                       "freshness p50 / p99 ms", "copy + catch-up s"],
                      [["\(rows) x \(dim)", g(alone), g(with), g(with / max(1, alone), 2), "\(g(f.lagRecordsP50)) / \(g(f.lagRecordsP99)) / \(g(f.lagRecordsMax))",
                        g(f.lagRowsMax), g(catchUp, 3), "\(g(f.freshnessP50Ms, 2)) / \(g(f.freshnessP99Ms, 2))", g(bootstrap, 2)]]))
    print(renderTable(["push rows/s ack-replicas 0", "ack-replicas 1", "ratio", "push p50 ms ack 0 / 1 (1 in flight)", "failover command s", "kill -9 -> writes again s"],
                      [[g(with), g(acked), g(acked / max(1, with), 2), "\(g(latency0, 2)) / \(g(latency1, 2))", g(report.seconds, 2), g(writesAgain, 2)]]))
}
