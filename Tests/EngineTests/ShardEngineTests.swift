import Testing
import Foundation
@testable import Engine
import Storage
import Vocabulary

@Suite struct ShardEngineTests {
    func makeEngine(shards: Int = 1, index: Int = 0, cacheRows: Int = 1 << 16, dir existing: String? = nil,
                    configure: (inout ShardEngineConfiguration) -> Void = { _ in }) throws -> (ShardEngine, String) {
        let dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("engine-\(UUID().uuidString)").path
        var c = ShardEngineConfiguration(dataDirectory: dir, shardIndex: index, slotMap: try .evenSplit(shards: shards))
        c.cacheRowsPerTable = cacheRows
        configure(&c)
        return (try ShardEngine(c), dir)
    }

    func push(_ e: ShardEngine, _ table: String, _ ids: [UInt64], _ g: [Float]) throws -> Int {
        try ids.withUnsafeBufferPointer { i in try g.withUnsafeBytes { b in try e.push(table: table, ids: i, gradientBytes: b) } }
    }
    func pull(_ e: ShardEngine, _ table: String, _ ids: [UInt64]) throws -> [Float] {
        let dim = try e.dim(of: table)
        var out = [Float](repeating: 0, count: ids.count * dim)
        try ids.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: table, ids: i, into: $0.baseAddress!) } }
        return out
    }

    @Test func pushWithNaNGradientIsRejectedAndChangesNothing() throws {
        let (e, dir) = try makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        _ = try push(e, "t", [1, 2], [1, 1, 1, 1])
        #expect(throws: EngineError.nonFiniteGradient(table: "t", id: 2, column: 1)) { try push(e, "t", [1, 2], [5, 5, 5, .nan]) }
        #expect(try pull(e, "t", [1, 2]) == [-1, -1, -1, -1])
        #expect(try e.snapshot(of: "t").pushes == 1)
    }

    @Test func idsOfSlotsOwnedByAnotherShardAreRefusedWithTheMapVersion() throws {
        let (e, dir) = try makeEngine(shards: 2, index: 0)
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        // slot of id 1 in table "t" is owned by shard 1 for some id among the first few: find one.
        let a = RowAddressing(spec: try e.spec(of: "t"))
        let foreign = try #require((UInt64(0)..<100).first { a.slot(ofRowKey: $0) >= 2048 })
        do {
            _ = try pull(e, "t", [foreign])
            Issue.record("expected wrongShard")
        } catch let err as EngineError {
            guard case .wrongShard(_, let id, _, let owner, let shard, let version) = err else { Issue.record("\(err)"); return }
            #expect(id == foreign && owner == 1 && shard == 0 && version == 1)
            #expect(err.description.contains("shard map version 1"))
        }
    }

    /// Misses are read in one part (1 thread) or split across threads in storage order (2000 misses: 2 or 3
    /// parts of 666-1000 rows, uneven): every row lands in its caller position either way.
    @Test(arguments: [1, 2, 3]) func rowsBeyondTheCacheAreServedFromRocksDBCorrectly(readThreads: Int) throws {
        let (e, dir) = try makeEngine(cacheRows: 8) { $0.readThreads = readThreads }
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var o = OptimizerConfig(kind: .adam, learningRate: 0.01)
        o.beta1 = 0.5
        _ = try e.createTable(TableSpec(name: "t", dim: 3, optimizer: o, initializer: .uniform(-1, 1, seed: 1)))
        let ids = (0..<2000).map { UInt64($0 * 3) }
        let g = (0..<6000).map { Float($0 % 7) - 3 }
        for _ in 0..<3 { _ = try push(e, "t", ids, g) }
        // Reference: the same optimizer applied three times from the initial row.
        let opt = SparseOptimizer(config: try e.spec(of: "t").optimizer, dim: 3)
        let ini = RowInitializer(config: .uniform(-1, 1, seed: 1), dim: 3)
        var expected: [Float] = []
        for (n, id) in ids.enumerated() {
            var row = [Float](repeating: 0, count: 9)
            var step: UInt32 = 0
            row.withUnsafeMutableBufferPointer { r in
                ini.fill(r.baseAddress!, rowKey: id); opt.initializeState(r.baseAddress!)
                for _ in 0..<3 { Array(g[n * 3 ..< n * 3 + 3]).withUnsafeBufferPointer { opt.apply(r.baseAddress!, gradient: $0.baseAddress!, step: &step) } }
            }
            expected += row[0..<3]
        }
        #expect(try pull(e, "t", ids) == expected)
        // One push larger than the cache overflows it briefly (its rows are dirty until written); written out,
        // the cache is back within its bound.
        try e.checkpointAll()
        let snap = try e.snapshot(of: "t")
        #expect(snap.rows == 2000 && snap.cachedRows <= 8 && snap.dirtyRows == 0)
        #expect(try pull(e, "t", ids) == expected)
        // Stored and never-written rows interleaved: the never-written ones read as their initial weights.
        var mixed: [UInt64] = [], mixedExpected: [Float] = []
        for (n, id) in ids.enumerated() {
            mixed += [id, id + 1]
            var fresh = [Float](repeating: 0, count: 9)
            fresh.withUnsafeMutableBufferPointer { ini.fill($0.baseAddress!, rowKey: id + 1) }
            mixedExpected += expected[n * 3 ..< n * 3 + 3] + fresh[0..<3]
        }
        #expect(try pull(e, "t", mixed) == mixedExpected)
    }

    /// A stored row that fails to decode fails the read whichever part of a parallel read holds it (the
    /// helper thread's error reaches the caller), names the row, and leaves the other rows readable.
    @Test(arguments: [1, 2]) func aCorruptStoredRowFailsItsReadInAnyPart(readThreads: Int) throws {
        let (e, dir) = try makeEngine(cacheRows: 8) { $0.readThreads = readThreads }
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1)))
        let ids = (0..<1000).map { UInt64($0) }
        _ = try push(e, "t", ids, [Float](repeating: 1, count: 2000))
        try e.checkpointAll()
        // The row that sorts last in storage order (the last part's) gets a value too short to decode.
        let bad = try e.withTable("t") { t in ids.max { t.addressing.slot(ofRowKey: t.addressing.rowKey($0)) < t.addressing.slot(ofRowKey: t.addressing.rowKey($1)) }! }
        try e.withTable("t") { (t) throws(EngineError) in
            let key = t.addressing.rowKey(bad)
            let b = WriteBatch()
            b.put(t.family, key: RowKey.encode(slot: t.addressing.slot(ofRowKey: key), key: key), value: [1, 2, 3])
            do { try t.db.write(b, sync: false) } catch { throw .storage("\(error)") }
        }
        #expect {
            _ = try pull(e, "t", ids)
        } throws: { error in
            guard case EngineError.storage(let message) = error else { return false }
            return message.contains("row \(bad)")
        }
        let others = ids.filter { $0 != bad }
        #expect(try pull(e, "t", others) == [Float](repeating: -0.1, count: others.count * 2))
    }

    /// A push's ids in ascending order (taken as distinct without a map), in any other order, or repeated
    /// (summed), update the same rows by the same amounts.
    @Test func pushedIdsInAnyOrderOrRepeatedUpdateTheSameRows() throws {
        let (e, dir) = try makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        func strictlyIncreasing(_ keys: [UInt64]) -> Bool { keys.withUnsafeBufferPointer(isStrictlyIncreasing) }
        #expect(strictlyIncreasing([1, 2, 9]) && strictlyIncreasing([7]) && strictlyIncreasing([]))
        #expect(!strictlyIncreasing([1, 1, 2]) && !strictlyIncreasing([2, 1]))
        for name in ["asc", "desc", "dup"] {
            _ = try e.createTable(TableSpec(name: name, dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        }
        #expect(try push(e, "asc", [3, 5, 8], [1, 2, 3, 4, 5, 6]) == 3)
        #expect(try push(e, "desc", [8, 5, 3], [5, 6, 3, 4, 1, 2]) == 3)
        #expect(try push(e, "dup", [5, 3, 8, 5], [1, 1, 1, 2, 5, 6, 2, 3]) == 3)
        let expected: [Float] = [-1, -2, -3, -4, -5, -6]
        for name in ["asc", "desc", "dup"] { #expect(try pull(e, name, [3, 5, 8]) == expected, "\(name)") }
    }

    @Test func aDataDirectoryBelongsToOneShardIndex() throws {
        let (e, dir) = try makeEngine(shards: 2, index: 0)
        e.close()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = ShardEngineConfiguration(dataDirectory: dir, shardIndex: 1, slotMap: try .evenSplit(shards: 2))
        #expect(throws: EngineError.self) { try ShardEngine(c) }
    }

    /// Pushes `rounds` SGD updates of lr 1 and returns what every row must be (ids 0..<n, gradient = id+round).
    func pushRounds(_ e: ShardEngine, n: Int, rounds: Range<Int>) throws -> [Float] {
        for r in rounds {
            let ids = (0..<n).map { UInt64($0) }
            _ = try push(e, "t", ids, ids.map { Float($0) + Float(r) })
        }
        return (0..<n).map { id in -Float((0..<rounds.upperBound).reduce(0) { $0 + id + $1 }) }
    }

    @Test func acknowledgedPushesSurviveACrashThroughUpdateLogReplay() throws {
        let (e, dir) = try makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let expected = try pushRounds(e, n: 50, rounds: 0..<4)
        e.close(checkpoint: false)  // as after kill -9: rows only in the log
        let (again, _) = try makeEngine(dir: dir)
        defer { again.close() }
        #expect(try pull(again, "t", (0..<50).map { UInt64($0) }) == expected)
        #expect(try again.snapshot(of: "t").rows == 50)
    }

    /// Dirty rows under the low watermark are left in the cache while pushes go on; once the table has had no
    /// push for `idleFlushSeconds` and reads need room, the flusher writes them all and then flushes the
    /// memtable to SST files (no checkpoint is due), so reads can evict them and cache misses stop searching
    /// the memtable; the rows read back exactly.
    @Test func anIdleTableWritesItsDirtyRowsAndItsMemtableWhenReadsNeedRoom() throws {
        // No checkpoint comes due during the test.
        let (e, dir) = try makeEngine(cacheRows: 400) { c in c.checkpointLogBytes = 1 << 40; c.checkpointIntervalSeconds = 1e6 }
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let expected = try pushRounds(e, n: 80, rounds: 0..<2)   // 80 dirty rows: under the watermark (100)
        #expect(try e.snapshot(of: "t").dirtyRows == 80)
        let checkpointsBefore = try e.snapshot(of: "t").checkpoints
        let memtableEntries = { () throws -> UInt64 in
            try e.withTable("t") { t in t.db.integerProperty(t.family, "rocksdb.num-entries-active-mem-table") }
        }
        e.startCheckpointer()
        Thread.sleep(forTimeInterval: TableTuning().idleFlushSeconds + 0.2)
        let deadline = Date().addingTimeInterval(20)
        var round: UInt64 = 0
        while try (e.snapshot(of: "t").dirtyRows > 0 || memtableEntries() > 0) && Date() < deadline {
            // Reads of rows not cached fill the cache, so rows need room.
            _ = try pull(e, "t", (0..<400).map { 1000 + round * 400 + $0 })
            round += 1
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(try e.snapshot(of: "t").dirtyRows == 0)
        #expect(try memtableEntries() == 0)
        #expect(try e.snapshot(of: "t").rowsFlushed >= 80)
        #expect(try e.snapshot(of: "t").checkpoints == checkpointsBefore)
        #expect(try pull(e, "t", (0..<80).map { UInt64($0) }) == expected)
    }

    /// Spare log segments (the disk a burst's retired segments hold for the next ones) are kept while the
    /// table is written to, and deleted once it has had no push for `spareIdleSeconds`; pushes after that
    /// open new segment files, and every acknowledged update survives a crash.
    @Test func anIdleTableDeletesItsSpareLogSegments() throws {
        let idle = 1.5
        let (e, dir) = try makeEngine { c in
            c.checkpointLogBytes = 1 << 40; c.checkpointIntervalSeconds = 1e6
            c.logSegmentBytes = 64 << 10; c.logRecycleBytes = 1 << 20; c.spareIdleSeconds = idle
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 8, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ids = (0..<UInt64(100)).map { $0 }
        var expected = [Float](repeating: 0, count: 800)
        func pushAll(_ g: Float) throws {
            _ = try push(e, "t", ids, [Float](repeating: g, count: 800))
            for i in expected.indices { expected[i] -= g }
        }
        for r in 0..<48 { try pushAll(Float(r % 5) + 1) }   // ~4.1 KB records: three segments and more
        try e.checkpoint(table: "t")
        try pushAll(1)   // the checkpoint closed the segment: this opens the next one on a spare
        let afterCheckpoint = try e.snapshot(of: "t")
        let spares = afterCheckpoint.logSpareBytes
        #expect(spares >= 64 << 10 && afterCheckpoint.logSegmentsRecycled == 1, "the retired full segments became spares")
        e.startCheckpointer()
        // Written to (one row at a time: no new segment takes a spare) for longer than the idle time.
        let writing = Date()
        var last = Date()
        while Date().timeIntervalSince(writing) < 2 * idle {
            _ = try push(e, "t", [7], [Float](repeating: 0.5, count: 8))
            for c in 0..<8 { expected[7 * 8 + c] -= 0.5 }
            last = Date()
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(try e.snapshot(of: "t").logSpareBytes == spares, "spares kept while the table is written to")
        // Idle: deleted, not before the idle time.
        let deadline = Date().addingTimeInterval(30)
        while try e.snapshot(of: "t").logSpareBytes > 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try e.snapshot(of: "t").logSpareBytes == 0)
        #expect(Date().timeIntervalSince(last) >= idle)
        // Pushes come back: new segment files, no spare to reuse; nothing acknowledged is lost.
        let before = try e.snapshot(of: "t")
        for r in 0..<32 { try pushAll(Float(r % 3) + 1) }
        let after = try e.snapshot(of: "t")
        #expect(after.logSegmentsCreated > before.logSegmentsCreated && after.logSegmentsRecycled == before.logSegmentsRecycled)
        e.close(checkpoint: false)   // as after kill -9
        let (again, _) = try makeEngine(dir: dir)
        defer { again.close() }
        #expect(try pull(again, "t", ids) == expected)
    }

    @Test func pushesOfCachedRowsNeverWaitForWritesButPushesNeedingRoomDo() throws {
        // Back-pressure is for rows that need room. A table the cache holds whole, all of it dirty, takes
        // pushes without writing a row (they would otherwise wait for a checkpoint's writes); pushes that bring
        // new rows into the full cache write dirty rows themselves, so the cache stays bounded.
        let cache = 1000
        let (e, dir) = try makeEngine(cacheRows: cache) { c in c.checkpointLogBytes = 1 << 40; c.checkpointIntervalSeconds = 1e6 }
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let all = (0..<UInt64(cache)).map { $0 }
        for start in stride(from: 0, to: cache, by: 100) {
            _ = try push(e, "t", Array(all[start..<(start + 100)]), [Float](repeating: 1, count: 200))
        }
        var s = try e.snapshot(of: "t")
        #expect(s.cachedRows == UInt64(cache) && s.dirtyRows == UInt64(cache))   // full, every row dirty (over 90%)
        for round in 0..<20 {
            let ids = (0..<100).map { UInt64(($0 * 7 + round * 31) % cache) }
            _ = try push(e, "t", ids, [Float](repeating: 0.5, count: 200))
        }
        s = try e.snapshot(of: "t")
        #expect(s.backpressureFlushes == 0)
        #expect(s.rowsFlushed == 0 && s.dirtyRows == UInt64(cache))
        // New rows: each push's inserts find the cache full, so the pushes after them help the flusher.
        for round in 0..<20 {
            let ids = (0..<100).map { UInt64(cache + round * 100 + $0) }
            _ = try push(e, "t", ids, [Float](repeating: 0.25, count: 200))
        }
        s = try e.snapshot(of: "t")
        #expect(s.backpressureFlushes > 0)
        #expect(s.rowsFlushed > 0)
        #expect(s.cachedRows <= UInt64(cache + 200))
        // Nothing was lost along the way: a cached-phase row got 1 + its later pushes; a new row 0.25.
        #expect(try pull(e, "t", [UInt64(cache + 1999)]) == [-0.25, -0.25])
        var expected = [Float](repeating: -1, count: cache)
        for round in 0..<20 { for j in 0..<100 { expected[(j * 7 + round * 31) % cache] -= 0.5 } }
        let got = try pull(e, "t", all)
        let twice: [Float] = expected.flatMap { [$0, $0] }
        #expect(got == twice)
    }

    @Test func replayIsIdempotentForRowsAlreadyFlushedBeforeTheCrash() throws {
        // A 4-row cache forces dirty rows to RocksDB on almost every push, without a checkpoint marker:
        // replay then meets rows that already contain some logged updates and must not apply them twice.
        let (e, dir) = try makeEngine(cacheRows: 4)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        _ = try pushRounds(e, n: 10, rounds: 0..<3)
        try e.checkpointAll()
        let expected = try pushRounds(e, n: 10, rounds: 3..<6)
        e.close(checkpoint: false)
        let (again, _) = try makeEngine(cacheRows: 4, dir: dir)
        #expect(try pull(again, "t", (0..<10).map { UInt64($0) }) == expected)
        // And a clean shutdown checkpoints: nothing left to replay, same rows.
        again.close(checkpoint: true)
        let (third, _) = try makeEngine(cacheRows: 4, dir: dir)
        defer { third.close() }
        #expect(try third.snapshot(of: "t").logBytes == 0)
        #expect(try pull(third, "t", (0..<10).map { UInt64($0) }) == expected)
    }

    @Test func concurrentPullsPushesAndCheckpointsLoseNoUpdateWithATinyCache() throws {
        let (e, dir) = try makeEngine(cacheRows: 16)
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let pushes = 3000, idSpace: UInt64 = 64
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var rng = SplitMix64(seed: UInt64(worker) + 1)
            do {
                switch worker {
                case 0:  // the only writer: each push adds -1 to 8 distinct ids
                    for n in 0..<pushes {
                        let ids = Array(Set((0..<8).map { _ in rng.next() % idSpace })).sorted()
                        _ = try push(e, "t", ids, [Float](repeating: 1, count: ids.count))
                        failures.count(ids)
                        if n % 10 == 0 { try e.checkpointAll() }
                    }
                    failures.done()
                default:  // readers churn the 16-row cache with misses
                    while !failures.isDone {
                        let ids = Array(Set((0..<24).map { _ in rng.next() % idSpace })).sorted()
                        _ = try pull(e, "t", ids)
                    }
                }
            } catch { failures.record("\(error)") }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
        let ids = (0..<idSpace).map { $0 }
        #expect(try pull(e, "t", ids) == ids.map { -Float(failures.pushesPerId[$0, default: 0]) })
    }

    /// A large pull alone in its table copies its cached rows on two threads: the rows (cached, stored and
    /// never written, and ids repeated) are the ones a one-thread pull returns, misses are read and counted
    /// once, and only the split engine counts split pulls.
    @Test func aPullSplitAcrossThreadsReturnsWhatOneThreadReturns() throws {
        var engines: [(ShardEngine, String)] = []
        defer { for (e, dir) in engines { e.close(); try? FileManager.default.removeItem(atPath: dir) } }
        var results: [[Float]] = []
        var rng = SplitMix64(seed: 7)
        let pushed = (0..<6000).map { _ in rng.next() % 1_000_000 }
        let distinct = Array(Set(pushed)).sorted()
        let g = (0..<distinct.count * 4).map { Float($0 % 11) - 5 }
        // Stored rows, pushed rows that stayed cached, rows never written, and repeats.
        let asked = (0..<9000).map { n in n % 3 == 0 ? distinct[n % distinct.count] : n % 3 == 1 ? rng.next() % 2_000_000 : pushed[n % pushed.count] }
        for threads in [1, 2] {
            let (e, dir) = try makeEngine(cacheRows: 4096) { $0.splitThreads = threads; $0.stripesPerTable = 8 }
            engines.append((e, dir))
            _ = try e.createTable(TableSpec(name: "t", dim: 4, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1),
                                            initializer: .uniform(-1, 1, seed: 3)))
            _ = try push(e, "t", distinct, g)
            try e.checkpointAll()
            _ = try push(e, "t", Array(distinct.prefix(2000)), Array(g.prefix(8000)))
            results.append(try pull(e, "t", asked))
            results.append(try pull(e, "t", asked))
            let snap = try e.snapshot(of: "t")
            #expect(snap.cacheMisses > 0 && snap.cacheHits > 0)
            #expect(snap.cacheHits + snap.cacheMisses == 2 * UInt64(asked.count))
            if threads == 1 { #expect(snap.pullsSplit == 0) } else { #expect(snap.pullsSplit == 2) }
        }
        #expect(results[0] == results[2] && results[1] == results[3])
        #expect(results[0] == results[1])
    }

    /// Pushes from three threads to overlapping rows, in phases whose rows are cached (pushes then log
    /// before they pin) and phases that bring new rows in (pushes pin first again; the first such push may
    /// read them under the commit lock), with Adagrad, whose result depends on the order of updates: after a
    /// crash, replaying the log gives the very bits the live rows had, so rows were updated in log order on
    /// both paths.
    @Test(arguments: [true, false]) func pushesUpdateRowsInLogOrderWhetherTheyLogBeforeOrAfterPinning(logBeforePin: Bool) throws {
        let (e, dir) = try makeEngine(cacheRows: 1 << 12) { $0.logBeforePin = logBeforePin }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 4, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1)))
        let failures = Failures()
        // Threads of their own (concurrentPerform may run the iterations one after the other).
        let done = DispatchGroup()
        for worker in 0..<3 {
            done.enter()
            Thread {
                defer { done.leave() }
                var rng = SplitMix64(seed: UInt64(worker) + 7)
                do {
                    for n in 0..<240 {
                        // Phases of 40 pushes: even phases stay on rows 0..<64, odd ones add rows never seen.
                        let phase = n / 40
                        var ids = Set((0..<16).map { _ in rng.next() % 64 })
                        if phase % 2 == 1 { ids.insert(1000 + UInt64(phase * 1000 + worker * 100 + n % 40)) }
                        let sorted = ids.sorted()
                        let g = (0..<(sorted.count * 4)).map { _ in Float(rng.next() % 1000) / 500 - 1 }
                        _ = try push(e, "t", sorted, g)
                    }
                } catch { failures.record("\(error)") }
            }.start()
        }
        done.wait()
        #expect(failures.messages.isEmpty, "\(failures.messages)")
        let snap = try e.snapshot(of: "t")
        if logBeforePin { #expect(snap.pushesLoggedFirst > 0 && snap.pushesLoggedFirst < snap.pushes) } else { #expect(snap.pushesLoggedFirst == 0) }
        var ids: [UInt64] = (0..<64).map { UInt64($0) }
        for p in stride(from: 1, to: 6, by: 2) {
            for w in 0..<3 { for n in 0..<40 { ids.append(UInt64(1000 + p * 1000 + w * 100 + n)) } }
        }
        let live: [Float] = try pull(e, "t", ids)
        e.close(checkpoint: false)  // as after kill -9: every update only in the log
        let (again, _) = try makeEngine(cacheRows: 1 << 12, dir: dir)
        defer { again.close() }
        let replayed: [Float] = try pull(again, "t", ids)
        let differing = zip(replayed, live).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(replayed.count == live.count && differing == 0, "\(differing) of \(live.count) floats differ after the replay")
    }

    /// A push that logged before pinning and then failed to read a row it needs (here a stored row made
    /// undecodable) is answered with the storage error and stops the table (its record is in the log); once
    /// the row reads again, a restart replays the record: the push is applied whole, never in part.
    @Test func aPushThatLoggedFirstAndFailedItsReadIsAppliedWholeAfterTheRestart() throws {
        let (e, dir) = try makeEngine(cacheRows: 8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try e.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ids = (0..<100).map { UInt64($0) }
        _ = try push(e, "t", ids, [Float](repeating: 1, count: 200))
        try e.checkpointAll()
        // Row 0 is cached by pushes to it alone; a row beyond the 8-row cache is stored only, then corrupted.
        for _ in 0..<(EmbeddingTable.logFirstStreak + 2) { _ = try push(e, "t", [0], [1, 1]) }
        let far: UInt64 = 50
        let (key, good): ([UInt8], [UInt8]) = try e.withTable("t") { (t) throws(EngineError) in
            let k = t.addressing.rowKey(far)
            let key = RowKey.encode(slot: t.addressing.slot(ofRowKey: k), key: k)
            #expect(t.cached(k, t.store.withAll { $0 }) == nil)
            guard let value = try? t.db.get(t.family, key: key) else { throw .storage("row \(far) not stored") }
            let b = WriteBatch()
            b.put(t.family, key: key, value: [1, 2, 3])
            do { try t.db.write(b, sync: false) } catch { throw .storage("\(error)") }
            return (key, value)
        }
        #expect(try e.snapshot(of: "t").pushesLoggedFirst > 0)
        #expect {
            _ = try push(e, "t", [0, far], [1, 1, 1, 1])
        } throws: { error in
            guard case EngineError.storage(let message) = error else { return false }
            return message.contains("row \(far)") && message.contains("refuses updates until the shard restarts")
        }
        #expect(throws: EngineError.self) { _ = try push(e, "t", [1], [1, 1]) }
        // No checkpoint may cover the logged record the table did not apply.
        #expect(throws: EngineError.self) { try e.checkpointAll() }
        try e.withTable("t") { (t) throws(EngineError) in
            let b = WriteBatch()
            b.put(t.family, key: key, value: good)
            do { try t.db.write(b, sync: false) } catch { throw .storage("\(error)") }
        }
        e.close(checkpoint: false)
        let (again, _) = try makeEngine(cacheRows: 8, dir: dir)
        defer { again.close() }
        // Row 0: 1 + (streak + 2) + 1 pushes of 1; row 50: 1 + 1; row 1: the refused push is not applied.
        let pushes0 = Float(EmbeddingTable.logFirstStreak + 4)
        #expect(try pull(again, "t", [0, far, 1]) == [-pushes0, -pushes0, -2, -2, -1, -1])
    }

    @Test func pooledPullAndPushFollowTheItemsPieces() throws {
        let (e, dir) = try makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "sem", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.semantic = SemanticConfig(tokenizer: .unigram, levels: 2, codebookSize: 4, budget: 100)
        _ = try e.createTable(spec)
        // Item 10 = codes (1, 2) -> pieces 1 and 6; item 11 = codes (1, 3) -> pieces 1 and 7.
        #expect(try e.registerItems(table: "sem", items: [10, 11], codes: [1, 2, 1, 3]) == (2, 2))
        _ = try push(e, "sem", [1, 6, 7], [1, 1, 2, 2, 3, 3])  // rows: piece1 = -1, piece6 = -2, piece7 = -3
        func pooled(_ items: [UInt64]) throws -> [Float] {
            var out = [Float](repeating: 9, count: items.count * 2)
            try items.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pullPooled(table: "sem", items: i, into: $0.baseAddress!) } }
            return out
        }
        #expect(try pooled([10, 11, 10]) == [-3, -3, -4, -4, -3, -3])
        // One pooled push of both items: shared piece 1 gets both gradients, summed.
        let updated = try [UInt64(10), 11].withUnsafeBufferPointer { i in
            try [Float(1), 0, 0, 1].withUnsafeBytes { try e.pushPooled(table: "sem", items: i, gradientBytes: $0) }
        }
        #expect(updated == 3)
        #expect(try pull(e, "sem", [1, 6, 7]) == [-2, -2, -3, -2, -3, -4])
        #expect(throws: EngineError.unknownItem(table: "sem", item: 12)) { try pooled([10, 12]) }
        _ = try e.createTable(TableSpec(name: "plain", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        #expect(throws: EngineError.notSemantic("plain")) {
            try [UInt64(1)].withUnsafeBufferPointer { i in var o = [Float](repeating: 0, count: 2); try o.withUnsafeMutableBufferPointer { try e.pullPooled(table: "plain", items: i, into: $0.baseAddress!) } }
        }
        #expect(throws: EngineError.self) { _ = try e.registerItems(table: "sem", items: [1], codes: [1, 4]) }
        let stats = try #require(try e.semanticStats(table: "sem"))
        #expect(stats.items == 2 && stats.piecesPerItem == 2 && stats.rowsUsed == 3 && stats.collisions == 0)
        #expect(try e.semanticStats(table: "plain") == nil)
        // Cached statistics follow later registrations: item 12 = codes (0, 0) -> pieces 0 and 4.
        _ = try e.registerItems(table: "sem", items: [12], codes: [0, 0])
        let after = try #require(try e.semanticStats(table: "sem"))
        #expect(after.items == 3 && after.rowsUsed == 5)
    }

    @Test func hashedPiecesReportTheirCollisions() throws {
        let (e, dir) = try makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "h", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        // prefix(2) over K=8: 8 + 64 distinct pieces possible, hashed into 10 rows.
        spec.semantic = SemanticConfig(tokenizer: .prefix(2), levels: 2, codebookSize: 8, budget: 10)
        _ = try e.createTable(spec)
        let items = (0..<64).map { UInt64($0) }
        _ = try e.registerItems(table: "h", items: items, codes: items.flatMap { [UInt32($0 / 8), UInt32($0 % 8)] })
        let s = try #require(try e.semanticStats(table: "h"))
        #expect(s.items == 64 && s.piecesPerItem == 2 && s.rowsUsed <= 10)
        #expect(s.collisions == 72 - s.rowsUsed, "72 distinct pieces on \(s.rowsUsed) rows")
    }

    @Test func registeredItemsSurviveARestart() throws {
        let (e, dir) = try makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "sem", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.semantic = SemanticConfig(tokenizer: .prefix(2), levels: 2, codebookSize: 4, budget: 100)
        _ = try e.createTable(spec)
        _ = try e.registerItems(table: "sem", items: [5, 6], codes: [0, 1, 3, 3])
        e.close()
        let (again, _) = try makeEngine(dir: dir)
        defer { again.close() }
        #expect(again.registeredItems(table: "sem") == 2)
        #expect(try again.spec(of: "sem").semantic == spec.semantic)
    }
}

/// Shared bookkeeping of the stress test.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var messages: [String] = []
    private(set) var pushesPerId: [UInt64: Int] = [:]
    private var finished = false
    func record(_ m: String) { lock.withLock { messages.append(m); finished = true } }
    func count(_ ids: [UInt64]) { lock.withLock { for i in ids { pushesPerId[i, default: 0] += 1 } } }
    func done() { lock.withLock { finished = true } }
    var isDone: Bool { lock.withLock { finished } }
}

@Suite struct RequestIdempotencyTests {
    @Test func aRetriedPushIsAnsweredButNotAppliedAgainAcrossCrashesAndCheckpoints() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idem-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func open() throws -> ShardEngine {
            try ShardEngine(ShardEngineConfiguration(dataDirectory: dir, shardIndex: 0, slotMap: try .evenSplit(shards: 1)))
        }
        func push(_ e: ShardEngine, _ id: RequestID?) throws -> Int {
            try [UInt64(7), 8].withUnsafeBufferPointer { i in try [Float](repeating: 1, count: 4).withUnsafeBytes { try e.push(table: "t", ids: i, gradientBytes: $0, requestID: id) } }
        }
        func value(_ e: ShardEngine) throws -> Float {
            var out = [Float](repeating: 0, count: 2)
            try [UInt64(7)].withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: "t", ids: i, into: $0.baseAddress!) } }
            return out[0]
        }
        var e = try open()
        _ = try e.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let a = RequestID(high: 1, low: 1), b = RequestID(high: 1, low: 2)
        #expect(try push(e, a) == 2 && push(e, a) == 2)
        #expect(try value(e) == -1)
        // Crash: the id comes back from the replayed log record.
        e.close(checkpoint: false)
        e = try open()
        #expect(try push(e, a) == 2 && value(e) == -1)
        // Checkpoint (the log segment with the record is deleted): the id comes back from the checkpointed ledger.
        try e.checkpointAll()
        e.close(checkpoint: false)
        e = try open()
        #expect(try push(e, a) == 2 && value(e) == -1)
        #expect(try push(e, b) == 2 && value(e) == -2)
        #expect(try push(e, nil) == 2 && push(e, nil) == 2 && value(e) == -4, "pushes without an id are applied every time")
        e.close()
        #expect(RequestID(hex: a.description) == a && RequestID(hex: "xyz") == nil)
    }
}

@Suite struct StorageOrderTests {
    @Test func countingSortMatchesTheComparatorOrder() {
        var rng = SplitMix64(seed: 5)
        for n in [0, 1, 7, 4096, 20000] {
            let keys = (0..<n).map { _ in rng.next() % 50_000 }
            let unique = Array(Set(keys))
            let slots = unique.map { UInt16($0 % 4096) }
            let expected = unique.indices.sorted { slots[$0] != slots[$1] ? slots[$0] < slots[$1] : unique[$0] < unique[$1] }
            #expect(EmbeddingTable.storageOrder(unique, slots: slots) == expected)
        }
    }
}
