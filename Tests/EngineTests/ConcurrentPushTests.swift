import Testing
import Foundation
@testable import Engine
import Storage
import Vocabulary

/// Pushes to one table from several threads at once. A plain table's pushes update their rows after the
/// commit lock, each taking its apply turn stripe by stripe (`RowStore.withStripesInTurn`), so two pushes
/// work at once; every row must still get its updates in sequence (log) order, and checkpoints beside them
/// must see every committed update applied (`EmbeddingTable.withCommitApplied`).
@Suite struct ConcurrentPushTests {
    static let dim = 8

    /// An engine whose checkpoints run only when the test asks (as the snapshot tests' engines).
    func makeEngine(dir: String) throws -> ShardEngine { try SnapshotCheckpointTests().makeEngine(dir: dir).0 }

    func pullAll(_ e: ShardEngine, _ n: Int) throws -> [Float] {
        let ids = (0..<UInt64(n)).map { $0 }
        var out = [Float](repeating: 0, count: n * Self.dim)
        try ids.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: "t", ids: i, into: $0.baseAddress!) } }
        return out
    }

    /// Four threads push overlapping batches (Adagrad: a row's result depends on the order of its updates,
    /// bit for bit) while a fifth takes snapshot checkpoints and checkpoints into RocksDB in turn; then the
    /// shard stops as kill -9 would. Replaying the log (in sequence order) over the last checkpoint must
    /// rebuild exactly the rows the pushes left: a row updated out of sequence order, or a checkpoint
    /// recording an update not yet applied, would differ. Seeded and bounded.
    @Test func concurrentPushesReachEveryRowInLogOrderSoACrashReplaysTheSameBits() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("concurrent-push-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = try makeEngine(dir: dir)
        var spec = TableSpec(name: "t", dim: Self.dim, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.5))
        spec.optimizer.initialAccumulator = 0.1
        _ = try e.createTable(spec)
        let n = 3000, pushers = 4, batches = 120, batchRows = 600
        final class Failures: @unchecked Sendable { let lock = NSLock(); var errors: [String] = [] }
        let failures = Failures()
        let group = DispatchGroup()
        for w in 0..<pushers {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var rng = UInt64(w + 1) &* 0x9E37_79B9_7F4A_7C15
                for b in 0..<batches {
                    rng = rng &* 6364136223846793005 &+ 1442695040888963407
                    // A window of the id space, so batches of different threads overlap heavily.
                    let start = Int(rng >> 33) % (n - batchRows)
                    let ids = (start..<start + batchRows).map { UInt64($0) }
                    var g = [Float]()
                    g.reserveCapacity(batchRows * Self.dim)
                    for id in ids { for c in 0..<Self.dim { g.append(Float((Int(id) &* 31 &+ b &* 7 &+ w &* 13 &+ c) % 17 - 8) * 0.37) } }
                    do {
                        _ = try ids.withUnsafeBufferPointer { i in try g.withUnsafeBytes { try e.push(table: "t", ids: i, gradientBytes: $0) } }
                    } catch {
                        failures.lock.lock(); failures.errors.append("\(error)"); failures.lock.unlock()
                    }
                }
            }
        }
        var checkpoints = 0
        while group.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
            try e.withTable("t") { (t) throws(EngineError) in
                if checkpoints % 2 == 0 { try t.snapshotCheckpoint() } else { try t.checkpoint() }
            }
            checkpoints += 1
        }
        #expect(failures.errors.isEmpty, "\(failures.errors.prefix(3))")
        #expect(checkpoints > 0)
        #expect(try e.snapshot(of: "t").pushes == UInt64(pushers * batches))
        let live = try pullAll(e, n)
        e.close(checkpoint: false)
        let again = try makeEngine(dir: dir)
        defer { again.close() }
        let replayed = try pullAll(again, n)
        let differing = (0..<n).filter { r in (0..<Self.dim).contains { live[r * Self.dim + $0] != replayed[r * Self.dim + $0] } }
        let rebuiltDifferently = differing.count
        #expect(rebuiltDifferently == 0, "first rows rebuilt differently by replay: \(differing.prefix(5))")
    }
}
