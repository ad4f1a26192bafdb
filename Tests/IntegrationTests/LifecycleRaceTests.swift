import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Counts of acknowledged pushes per id, shared by the racing tasks.
final class AckedCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [UInt64: Int] = [:]
    func add(_ ids: [UInt64]) { lock.withLock { for id in ids { counts[id, default: 0] += 1 } } }
    var snapshot: [UInt64: Int] { lock.withLock { counts } }
}

/// Failures the racing tasks saw that the contract does not allow (anything but the documented codes).
final class Violations: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { if items.count < 50 { items.append(s) } } }
    var all: [String] { lock.withLock { items } }
}

/// The table lifecycle rule under fire (issue: a Compact racing a DropTable crashed a shard). For a bounded
/// time, seeded tasks create / drop / compact / flush / evict / checkpoint / describe / status / export /
/// move slots on two real shards while others pull and push. Passes when no shard died, no call got
/// INTERNAL, and every acknowledged push is in its table exactly once (tables never dropped, and churn tables
/// since their last creation; churn tables carry an eviction rule no pushed row meets, so their passes run
/// and delete nothing), and the table whose passes do delete holds no more than was pushed.
@Suite(.serialized) struct LifecycleRaceTests {
    static let seconds = Double(ProcessInfo.processInfo.environment["EMBEDPS_RACE_SECONDS"] ?? "") ?? 15

    /// Records `error` unless the contract allows it for the operation (`allowed` status codes).
    static func check(_ error: any Error, _ what: String, allowed: Set<StatusCode>, _ v: Violations) {
        if let ce = error as? ClientError, let s = ce.status {
            if !allowed.contains(s.code) || s.code == .internalError { v.add("\(what): \(s)") }
            if ce.detail == nil { v.add("\(what): status without ErrorDetail: \(s)") }
            return
        }
        v.add("\(what): \(error)")
    }

    @Test func adminAndDataCallsRaceWithoutCrashesAndPushesApplyExactlyOnce() async throws {
        let cluster = try LocalCluster(shards: 2, extraArgs: ["--checkpoint-seconds", "1"])
        defer { cluster.stop() }
        var options = ClientOptions(); options.retrySeconds = 60; options.initialBackoffMs = 5; options.maxBackoffMs = 50
        let client = try cluster.client(options)
        let sgd = OptimizerConfig(kind: .sgd, learningRate: 1)
        try await client.admin.createTable(TableSpec(name: "keep", dim: 2, optimizer: sgd))
        // Rows pushed once are (1, 1), norm 1.41: "aged" evicts them, the churn tables (floor 0.5) never do.
        func evicting(_ name: String, floor: Float) -> TableSpec {
            var spec = TableSpec(name: name, dim: 2, optimizer: sgd)
            var e = EvictionConfig(); e.minL2Norm = floor; e.intervalSeconds = 1
            spec.eviction = e
            return spec
        }
        try await client.admin.createTable(evicting("aged", floor: 2.5))
        let agedAcked = AckedCounts()
        let acked = AckedCounts(), violations = Violations()
        let deadline = Date().addingTimeInterval(Self.seconds)
        let churnNames = ["churn0", "churn1", "churn2"]

        let tasks: [Task<Void, Never>] = [
            // Pushers to the table that is never dropped.
            Task { await Self.pusher(client, seed: 1, until: deadline, acked, violations) },
            Task { await Self.pusher(client, seed: 2, until: deadline, acked, violations) },
            // Pullers of everything.
            Task {
                var rng = SplitMix64(seed: 3)
                while Date() < deadline {
                    let table = rng.next() % 2 == 0 ? "keep" : churnNames[Int(rng.next() % 3)]
                    do { _ = try await client.pull(table: table, ids: (0..<64).map { _ in rng.next() % 5000 }) }
                    catch { Self.check(error, "pull \(table)", allowed: table == "keep" ? [] : [.notFound], violations) }
                }
            },
            // Table churn; each churn table is pushed only here, so its expected rows are known exactly.
            Task {
                var rng = SplitMix64(seed: 4)
                var live: [String: [UInt64: Int]] = [:]
                while Date() < deadline {
                    let name = churnNames[Int(rng.next() % 3)]
                    do {
                        switch rng.next() % 4 {
                        case 0:
                            if try await client.admin.dropTable(name) { live[name] = nil }
                        default:
                            if live[name] == nil {
                                try await client.admin.createTable(evicting(name, floor: 0.5))
                                live[name] = [:]
                            }
                            let ids = (0..<32).map { _ in rng.next() % 3000 }
                            try await client.push(table: name, ids: ids, gradients: [Float](repeating: -1, count: 64))
                            for id in ids { live[name]![id, default: 0] += 1 }
                        }
                    } catch { Self.check(error, "churn \(name)", allowed: [], violations) }
                }
                // Verify the churn tables that exist at the end against their pushes since creation.
                for (name, counts) in live {
                    let ids = Array(counts.keys).sorted()
                    guard let rows = try? await client.pull(table: name, ids: ids) else { violations.add("final pull \(name) failed"); continue }
                    for (j, id) in ids.enumerated() where rows[2 * j] != Float(counts[id]!) {
                        violations.add("\(name) id \(id): \(rows[2 * j]) != \(counts[id]!) pushes"); break
                    }
                }
            },
            // Compaction, flushes and eviction passes of everything, and of single tables being dropped.
            Task {
                var rng = SplitMix64(seed: 5)
                while Date() < deadline {
                    let table = rng.next() % 2 == 0 ? "" : churnNames[Int(rng.next() % 3)]
                    do {
                        switch rng.next() % 3 {
                        case 0: _ = try await client.admin.compact(table: table)
                        case 1: try await client.admin.flush(table: table)
                        default: _ = try await client.admin.evict(table: table == "" && rng.next() % 2 == 0 ? "aged" : table)
                        }
                    } catch { Self.check(error, "compact/flush/evict '\(table)'", allowed: [.notFound, .failedPrecondition, .unavailable], violations) }
                }
            },
            // Pushes to the table whose eviction passes delete rows.
            Task {
                var rng = SplitMix64(seed: 8)
                while Date() < deadline {
                    let ids = Array(Set((0..<64).map { _ in rng.next() % 2000 }))
                    do {
                        try await client.push(table: "aged", ids: ids, gradients: [Float](repeating: -1, count: ids.count * 2))
                        agedAcked.add(ids)
                    } catch { Self.check(error, "push aged", allowed: [], violations) }
                }
            },
            // Cluster checkpoints (freezes), describe, status, list, export.
            Task {
                var n = 0
                while Date() < deadline {
                    n += 1
                    do { _ = try await client.admin.createCheckpoint(name: "race\(n)", freezeSeconds: 10) }
                    catch { Self.check(error, "checkpoint", allowed: [.aborted, .unavailable], violations) }
                    try? await Task.sleep(nanoseconds: 300_000_000)
                }
            },
            Task {
                var rng = SplitMix64(seed: 7)
                while Date() < deadline {
                    let table = rng.next() % 2 == 0 ? "keep" : churnNames[Int(rng.next() % 3)]
                    do {
                        switch rng.next() % 4 {
                        case 0: _ = try await client.admin.describeTable(table)
                        case 1: _ = try await client.admin.shardStatus()
                        case 2: _ = try await client.admin.listCheckpoints()
                        default: _ = try await client.admin.exportTable(table, pageRows: 256)
                        }
                    } catch { Self.check(error, "read \(table)", allowed: table == "keep" ? [] : [.notFound], violations) }
                }
            },
            // Slot moves back and forth between the shards (a failed move is rerun, as an operator would).
            Task {
                var flip = false
                while Date() < deadline {
                    flip.toggle()
                    let target = (0..<RowAddressing.slotCount).map { UInt16(flip ? ($0 < 1024 ? 0 : 1) : ($0 < 2048 ? 0 : 1)) }
                    do { _ = try await client.admin.reshard(to: target, chunkSlots: 256) }
                    catch { Self.check(error, "reshard", allowed: [.notFound, .unavailable, .aborted, .failedPrecondition], violations) }
                }
            },
        ]
        for t in tasks { await t.value }

        // Finish any move a failed reshard left half done, then check the never-dropped table exactly.
        _ = try await client.admin.reshard(to: (0..<RowAddressing.slotCount).map { UInt16($0 < 2048 ? 0 : 1) })
        #expect(cluster.allRunning, "a shard died: \(cluster.logTail())")
        #expect(await client.health() == [true, true])
        let counts = acked.snapshot
        let ids = counts.keys.sorted()
        let rows = try await client.pull(table: "keep", ids: ids)
        var wrong: [String] = []
        for (j, id) in ids.enumerated() where rows[2 * j] != Float(counts[id]!) || rows[2 * j + 1] != Float(counts[id]!) {
            wrong.append("id \(id): \(rows[2 * j]) vs \(counts[id]!)")
        }
        #expect(wrong.isEmpty, "acknowledged pushes not applied exactly once: \(wrong.prefix(5))")
        #expect(counts.values.reduce(0, +) > 256, "too few pushes to mean anything: \(counts.values.reduce(0, +))")
        // "aged": eviction only ever removes a row whole, so each id reads (v, v) with 0 <= v <= its pushes;
        // after one more pass no row of norm under 2.5 is left.
        _ = try await client.admin.evict(table: "aged")
        let agedCounts = agedAcked.snapshot, agedIds = agedCounts.keys.sorted()
        let aged = try await client.pull(table: "aged", ids: agedIds)
        var agedWrong: [String] = []
        for (j, id) in agedIds.enumerated() {
            let v = aged[2 * j]
            if v != aged[2 * j + 1] || v < 0 || v > Float(agedCounts[id]!) || v != v.rounded() || v == 1 { agedWrong.append("id \(id): \(aged[2 * j]),\(aged[2 * j + 1]) after \(agedCounts[id]!) pushes") }
        }
        #expect(agedWrong.isEmpty, "evicting table: \(agedWrong.prefix(5))")
        let agedStats = try await client.admin.describeTable("aged")
        #expect(agedStats.reduce(0) { $0 + $1.rowsEvicted } > 0, "the evicting table evicted nothing")
        let checkpoints = try await client.admin.listCheckpoints().count
        print("race: \(counts.values.reduce(0, +)) row pushes acknowledged, \(checkpoints) checkpoints, map version \(client.slotMap.version)")
        #expect(violations.all.isEmpty, "\(violations.all)")
        #expect(!cluster.logTail().contains("Sanitizer"), "sanitizer report in a shard log: \(cluster.logTail())")
    }

    static func pusher(_ client: EmbedPSClient, seed: UInt64, until deadline: Date, _ acked: AckedCounts, _ v: Violations) async {
        var rng = SplitMix64(seed: seed)
        while Date() < deadline {
            let ids = Array(Set((0..<128).map { _ in rng.next() % 5000 }))
            do {
                try await client.push(table: "keep", ids: ids, gradients: [Float](repeating: -1, count: ids.count * 2))
                acked.add(ids)
            } catch { check(error, "push keep", allowed: [], v) }
        }
    }

    /// Calls arriving while a shard restores a checkpoint are told RESTORING (UNAVAILABLE), never INTERNAL,
    /// and the shard serves the checkpoint afterwards.
    @Test func callsDuringARestoreAreToldToRetry() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "t", dim: 16, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ids = (0..<20_000).map { UInt64($0) }
        try await client.push(table: "t", ids: ids, gradients: [Float](repeating: 1, count: ids.count * 16))
        _ = try await client.admin.createCheckpoint(name: "base")
        let ch = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        defer { ch.close() }
        let seen = Violations(), restoring = AckedCounts()
        let stop = Date().addingTimeInterval(8)
        let callers = (0..<3).map { k in
            Task {
                while Date() < stop {
                    let bytes = Wire.DescribeTableRequest(table: "t").encoded()
                    let (code, detail, _) = await HardeningTests.send(ch, k == 0 ? ShardRPC.describeTable.path : ShardRPC.shardStatus.path, k == 0 ? bytes : [])
                    if code == .unavailable && detail?.reason == .restoring { restoring.add([0]) }
                    else if code != .ok { seen.add("\(code) \(String(describing: detail))") }
                }
            }
        }
        var restores = 0
        while Date() < stop {
            _ = try await client.admin.restoreCheckpoint(name: "base")
            restores += 1
        }
        for c in callers { await c.value }
        #expect(seen.all.isEmpty, "\(seen.all)")
        #expect(restores >= 2)
        print("restore race: \(restores) restores, \(restoring.snapshot[0] ?? 0) calls told RESTORING")
        #expect(try await client.pull(table: "t", ids: [0, 19_999]) == [Float](repeating: -1, count: 32))
        #expect(cluster.allRunning)
    }
}
