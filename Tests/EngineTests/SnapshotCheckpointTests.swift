import Testing
import Foundation
@testable import Engine
import Storage
import Vocabulary

/// Checkpoints written as snapshot files (`EmbeddingTable.snapshotCheckpoint`): rows stay out of RocksDB,
/// nothing acknowledged is lost across a crash, and whatever needs RocksDB whole (imports, a graceful stop)
/// ends the snapshot first.
@Suite struct SnapshotCheckpointTests {
    static let dim = 4

    func makeEngine(cacheRows: Int = 1 << 16, dir existing: String? = nil, logRecycleBytes: Int? = nil) throws -> (ShardEngine, String) {
        let dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("snapshot-\(UUID().uuidString)").path
        var c = ShardEngineConfiguration(dataDirectory: dir, shardIndex: 0, slotMap: try .evenSplit(shards: 1))
        c.cacheRowsPerTable = cacheRows
        c.logRecycleBytes = logRecycleBytes
        // Checkpoints only when a test asks for one.
        c.checkpointLogBytes = 1 << 40; c.checkpointIntervalSeconds = 1e6
        return (try ShardEngine(c), dir)
    }

    /// Rows of ids 0..<n as pushed so far (SGD, learning rate 1, rows start at 0).
    struct Model {
        var rows: [Float]
        init(n: Int) { rows = [Float](repeating: 0, count: n * SnapshotCheckpointTests.dim) }
        mutating func push(_ e: ShardEngine, _ ids: [UInt64], round: Int) throws {
            var g = [Float]()
            for id in ids {
                for c in 0..<SnapshotCheckpointTests.dim {
                    let v = Float((Int(id) * 7 + round * 3 + c) % 11) - 5
                    g.append(v)
                    rows[Int(id) * SnapshotCheckpointTests.dim + c] -= v
                }
            }
            _ = try ids.withUnsafeBufferPointer { i in try g.withUnsafeBytes { try e.push(table: "t", ids: i, gradientBytes: $0) } }
        }
    }

    func pull(_ e: ShardEngine, _ n: Int) throws -> [Float] {
        let ids = (0..<UInt64(n)).map { $0 }
        var out = [Float](repeating: 0, count: n * Self.dim)
        try ids.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: "t", ids: i, into: $0.baseAddress!) } }
        return out
    }

    func createTable(_ e: ShardEngine) throws {
        _ = try e.createTable(TableSpec(name: "t", dim: Self.dim, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
    }

    func takeSnapshot(_ e: ShardEngine) throws { try e.withTable("t") { (t) throws(EngineError) in try t.snapshotCheckpoint() } }

    /// A new engine with table "t" of 100 pushed rows, checkpointed as a snapshot; the model has room for
    /// `modelRows` rows.
    func tableOf100RowsInASnapshot(modelRows: Int = 100) throws -> (ShardEngine, String, Model) {
        let (e, dir) = try makeEngine()
        try createTable(e)
        var m = Model(n: modelRows)
        try m.push(e, (0..<100).map { $0 }, round: 0)
        try takeSnapshot(e)
        return (e, dir, m)
    }

    func snapshotFiles(_ e: ShardEngine) throws -> [UInt64] { try e.withTable("t") { RowSnapshotFile.ids(in: $0.log.directory) } }

    /// Stops `e` as kill -9 would (no checkpoint), opens the directory again and expects rows 0..<n to be
    /// what `m` says and the table to count n rows.
    func expectRowsAfterCrash(_ e: ShardEngine, dir: String, _ m: Model, rows n: Int, cacheRows: Int = 1 << 16,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        e.close(checkpoint: false)
        let (again, _) = try makeEngine(cacheRows: cacheRows, dir: dir)
        defer { again.close() }
        #expect(try pull(again, n) == m.rows, sourceLocation: sourceLocation)
        #expect(try again.snapshot(of: "t").rows == UInt64(n), sourceLocation: sourceLocation)
    }

    @Test func aSnapshotCheckpointKeepsRowsOutOfRocksDBAndNothingAcknowledgedIsLostInACrash() throws {
        let (e, dir) = try makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try createTable(e)
        var m = Model(n: 400)
        for r in 0..<3 { try m.push(e, (0..<300).map { $0 }, round: r) }
        try takeSnapshot(e)
        let first = try e.snapshot(of: "t")
        #expect(first.snapshotCheckpoints == 1 && first.snapshotRows == 300 && first.rows == 300)
        #expect(try e.withTable("t") { $0.storedRows } == 0, "the checkpoint wrote no row to RocksDB")
        #expect(try snapshotFiles(e) == [1])
        // Rows covered by the first snapshot and rows new since; the second snapshot replaces the first.
        for r in 3..<5 { try m.push(e, (100..<400).map { $0 }, round: r) }
        try takeSnapshot(e)
        #expect(try snapshotFiles(e) == [2])
        #expect(try e.snapshot(of: "t").snapshotRows == 300 + 400)
        #expect(try e.snapshot(of: "t").snapshotsRecycled == 0)
        // The third is written over the first one's file, kept as the spare when the second replaced it.
        try m.push(e, (0..<200).map { $0 }, round: 5)
        try takeSnapshot(e)
        #expect(try snapshotFiles(e) == [3])
        #expect(try e.snapshot(of: "t").snapshotsRecycled == 1)
        // Updates after the checkpoint are in the log alone.
        try m.push(e, (0..<50).map { $0 }, round: 6)
        e.close(checkpoint: false)   // as after kill -9

        let (again, _) = try makeEngine(dir: dir)
        #expect(try pull(again, 400) == m.rows)
        #expect(try again.snapshot(of: "t").rows == 400)
        try m.push(again, (0..<10).map { $0 }, round: 7)
        // A graceful stop writes every row to RocksDB and ends the snapshot.
        again.close()
        let (third, _) = try makeEngine(dir: dir)
        defer { third.close() }
        #expect(try snapshotFiles(third).isEmpty)
        #expect(try third.withTable("t") { $0.storedRows } == 400)
        #expect(try pull(third, 400) == m.rows)
    }

    /// With log recycling off (`--log-recycle-mb 0`) no retired snapshot is kept as a spare either: each
    /// snapshot's file is deleted once the next one replaces it, and the rows survive a crash all the same.
    @Test func withRecyclingOffARetiredSnapshotIsDeletedNotKeptAsTheSpare() throws {
        let (e, dir) = try makeEngine(logRecycleBytes: 0)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try createTable(e)
        var m = Model(n: 300)
        for r in 0..<4 {
            try m.push(e, (0..<300).map { $0 }, round: r)
            try takeSnapshot(e)
            #expect(try snapshotFiles(e) == [UInt64(r + 1)])
        }
        let logDir = try e.withTable("t") { $0.log.directory }
        #expect(!FileManager.default.fileExists(atPath: logDir + "/snapshot.spare"))
        #expect(try e.snapshot(of: "t").snapshotsRecycled == 0)
        try expectRowsAfterCrash(e, dir: dir, m, rows: 300)
    }

    /// A cache of 64 rows under pushes to 400: rows the snapshot covered are written to RocksDB and evicted
    /// after it (some for the first time), then the shard crashes. Replay over the snapshot's older images
    /// restores every row, and the row count stays exact.
    @Test func rowsWrittenAndEvictedAfterASnapshotAreRecoveredExactly() throws {
        let (e, dir) = try makeEngine(cacheRows: 64)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try createTable(e)
        var m = Model(n: 400)
        try m.push(e, (0..<64).map { $0 }, round: 0)
        try takeSnapshot(e)
        #expect(try e.withTable("t") { $0.storedRows } == 0)
        for r in 1..<4 {
            for start in stride(from: 0, to: 400, by: 40) { try m.push(e, (UInt64(start)..<UInt64(start + 40)).map { $0 }, round: r) }
            try e.withTable("t") { (t) throws(EngineError) in try t.flushing.withLock { (fs) throws(EngineError) in _ = try t.flushDirty(&fs) } }
        }
        #expect(try e.withTable("t") { $0.storedRows } > 0, "rows reached RocksDB after the snapshot")
        try expectRowsAfterCrash(e, dir: dir, m, rows: 400, cacheRows: 64)
    }

    /// Pushes keep updating rows the snapshot covers while checkpoints into RocksDB run (an admin flush,
    /// a follower's copy): the rows' updates from before the snapshot are in no other place, and each such
    /// checkpoint must write them all; after a crash every row is what was acknowledged (seeded, bounded).
    @Test func checkpointsIntoRocksDBWhilePushesRunLoseNothingTheSnapshotHeld() throws {
        let (e, dir) = try makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try createTable(e)
        let n = 20_000
        final class Box: @unchecked Sendable { let lock = NSLock(); var model = Model(n: 20_000); var error: Error? }
        let box = Box()
        try box.model.push(e, (0..<UInt64(n)).map { $0 }, round: 0)
        let done = DispatchSemaphore(value: 0)
        let running = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var rng: UInt64 = 7
            for r in 1...300 {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                let start = UInt64(rng >> 33) % UInt64(n - 1000)
                box.lock.lock()
                do { try box.model.push(e, (start..<start + 1000).map { $0 }, round: r) } catch { box.error = error }
                box.lock.unlock()
                if r == 3 { running.signal() }
            }
            done.signal()
        }
        running.wait()
        // Snapshots and checkpoints into RocksDB in turn for as long as the pushes run.
        var turns = 0
        while done.wait(timeout: .now()) == .timedOut {
            try takeSnapshot(e)
            try e.withTable("t") { (t) throws(EngineError) in try t.checkpoint() }
            turns += 1
        }
        #expect(box.error == nil && turns > 0)
        let superseded = try e.snapshot(of: "t").snapshotsSuperseded
        print("checkpoints into RocksDB beside pushes: \(turns), of which held the pushes: \(superseded)")
        e.close(checkpoint: false)
        let (again, _) = try makeEngine(dir: dir)
        defer { again.close() }
        #expect(try pull(again, n) == box.model.rows)
    }

    /// A checkpoint into RocksDB while a snapshot is the checkpoint runs beside pushes: its sweep writes the
    /// rows only the snapshot holds whatever their first-dirty sequence (covered rows, and covered rows
    /// updated since), so it never needs to hold the pushes, and the marker ends the snapshot.
    @Test func aCheckpointIntoRocksDBWritesEveryRowTheSnapshotHeldWithoutHoldingPushes() throws {
        var (e, dir, m) = try tableOf100RowsInASnapshot(modelRows: 120)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let before = try e.snapshot(of: "t")
        #expect(before.snapshotBytes > 100 * UInt64(Self.dim * 4), "the stats count the snapshot's file")
        // Rows 0..<30 covered and updated since (their first-dirty sequence is after the snapshot's), rows
        // 30..<100 covered only, rows 100..<120 new; then, as the checkpoint starts its sweep, rows 50..<60
        // (covered) updated after the sequence the sweep takes rows through.
        try m.push(e, (0..<30).map { $0 }, round: 1)
        try m.push(e, (100..<120).map { $0 }, round: 1)
        final class Late: @unchecked Sendable { var model: Model; var error: Error?; init(_ m: Model) { model = m } }
        let late = Late(m)
        try e.withTable("t") { (t) throws(EngineError) in
            t.beforeCheckpointSweep = { do { try late.model.push(e, (50..<60).map { $0 }, round: 3) } catch { late.error = error } }
            defer { t.beforeCheckpointSweep = nil }
            try t.checkpoint()
        }
        #expect(late.error == nil)
        m = late.model
        let after = try e.snapshot(of: "t")
        #expect(after.snapshotsSuperseded == 0, "the sweep took every snapshot-held row")
        #expect(after.dirtyRows == 0 && after.snapshotBytes == 0 && after.checkpoints == before.checkpoints + 1)
        #expect(try snapshotFiles(e).isEmpty)
        #expect(try e.withTable("t") { $0.storedRows } == 120)
        try m.push(e, (20..<40).map { $0 }, round: 2)
        try expectRowsAfterCrash(e, dir: dir, m, rows: 120)
    }

    /// A stripe with more dirty rows than one part (`snapshotPartRows`) is swept in parts, its lock released
    /// between them; pushes between parts to rows already covered, rows not reached yet and new rows lose
    /// nothing: the snapshot covers every row dirty when the sweep reached it, the rest stay dirty (in the
    /// log after the checkpoint), and after a crash every row is what was acknowledged.
    @Test func aSnapshotSweptInPartsWhilePushesRunLosesNothing() throws {
        let (e, dir) = try makeEngine(cacheRows: 1 << 17)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try createTable(e)
        let n = 40_000, stripes = try e.withTable("t") { $0.store.stripeCount }
        #expect(n / stripes > 2 * EmbeddingTable.snapshotPartRows, "each stripe needs several parts")
        var m = Model(n: n + 500)
        try m.push(e, (0..<UInt64(n)).map { $0 }, round: 0)
        final class Between: @unchecked Sendable { var model: Model; var error: Error?; var calls = 0; init(_ m: Model) { model = m } }
        let between = Between(m)
        try e.withTable("t") { (t) throws(EngineError) in
            t.betweenSnapshotParts = {
                between.calls += 1
                guard between.calls <= 5 else { return }
                let k = UInt64(between.calls)
                // Rows spread over every stripe (some already covered, some not reached), and new rows.
                do { try between.model.push(e, (0..<200).map { $0 * 199 + k }, round: Int(k))
                     try between.model.push(e, (0..<100).map { UInt64(n) + (k - 1) * 100 + $0 }, round: Int(k)) } catch { between.error = error }
            }
            defer { t.betweenSnapshotParts = nil }
            try t.snapshotCheckpoint()
        }
        #expect(between.error == nil)
        #expect(between.calls >= stripes * 2, "parts per stripe: \(between.calls) calls for \(stripes) stripes")
        m = between.model
        let stats = try e.snapshot(of: "t")
        #expect(stats.snapshotCheckpoints == 1 && stats.snapshotRows >= UInt64(n))
        #expect(try e.withTable("t") { $0.storedRows } == 0)
        try m.push(e, (0..<50).map { $0 * 13 }, round: 9)
        try expectRowsAfterCrash(e, dir: dir, m, rows: n + 500, cacheRows: 1 << 17)
    }

    /// An import writes rows to RocksDB outside the log: it first ends the snapshot (a checkpoint in RocksDB),
    /// so the snapshot's older images can never be installed over the imported rows after a crash.
    @Test func anImportAfterASnapshotEndsItAndTheImportedRowsSurviveACrash() throws {
        var (e, dir, m) = try tableOf100RowsInASnapshot()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = (0..<UInt64(50)).map { $0 }
        let values = [Float](repeating: 9, count: 50 * Self.dim)
        _ = try keys.withUnsafeBufferPointer { k in try values.withUnsafeBytes { try e.importRows(table: "t", keys: k, valueBytes: $0) } }
        for i in 0..<(50 * Self.dim) { m.rows[i] = 9 }
        #expect(try snapshotFiles(e).isEmpty, "the import ended the snapshot")
        let stats = try e.snapshot(of: "t")
        #expect(stats.snapshotsSuperseded == 1 && stats.snapshotBytes == 0, "the import wrote the snapshot's rows with pushes held")
        try m.push(e, (40..<60).map { $0 }, round: 1)
        try expectRowsAfterCrash(e, dir: dir, m, rows: 100)
    }

    @Test func aDamagedSnapshotKeepsTheShardFromStartingAndNamesTheFile() throws {
        let (e, dir, _) = try tableOf100RowsInASnapshot()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try e.withTable("t") { RowSnapshotFile.path($0.log.directory, id: 1) }
        e.close(checkpoint: false)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 1
        try bytes.write(to: URL(fileURLWithPath: path))
        do {
            let (again, _) = try makeEngine(dir: dir)
            again.close(checkpoint: false)
            Issue.record("a damaged snapshot was accepted")
        } catch {
            #expect("\(error)".contains(path) && "\(error)".contains("checksum"), "\(error)")
        }
    }
}
