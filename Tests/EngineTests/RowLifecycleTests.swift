import Testing
import Foundation
@testable import Engine
import Vocabulary

@Suite struct AdmissionSketchTests {
    @Test func countMinSketchNeverUndercountsBetweenHalvingsAndRoundTrips() {
        var s = CountMinSketch(width: 4096)
        var truth: [UInt64: Int] = [:]
        var rng = SplitMix64(seed: 3)
        for _ in 0..<4000 {
            let k = rng.next() % 3000
            truth[k, default: 0] += 1
            #expect(s.increment(k) >= truth[k]!)
        }
        for (k, n) in truth { #expect(s.estimate(k) >= n) }
        let copy = CountMinSketch(encoded: s.encoded, width: 4096)
        #expect(copy?.additions == 4000)
        for k in truth.keys { #expect(copy?.estimate(k) == s.estimate(k)) }
        #expect(CountMinSketch(encoded: s.encoded, width: 2048) == nil)
    }

    @Test func agingKeepsHotIdsAndForgetsAStreamOfOnceSeenIds() {
        // A key counted 3000 times is halved every 1024 additions but stays far above any threshold.
        var hot = CountMinSketch(width: 1024)
        for _ in 0..<3000 { _ = hot.increment(9) }
        #expect(hot.estimate(9) >= 512 && hot.additions == 3000 % 1024)
        // 200,000 distinct ids seen once through 1,024 counters: conservative update and halving keep the
        // sketch from filling up, so an id never seen is rarely estimated at 2 or more.
        var s = CountMinSketch(width: 1024)
        for k in 0..<200_000 { _ = s.increment(UInt64(k)) }
        let unseen = (1_000_000..<1_010_000).filter { s.estimate(UInt64($0)) >= 2 }.count
        #expect(unseen < 1000, "\(unseen) of 10,000 unseen ids estimated at >= 2")
    }

    @Test func thresholdAndProbabilityDecideLikeTheSpecSays() {
        let f = AdmissionFilter(config: AdmissionConfig(minCount: 3), saved: nil)
        #expect(f.admit([1, 2]) == [false, false])
        #expect(f.admit([1]) == [false])
        #expect(f.admit([1, 2]) == [true, false])
        #expect(f.admit([2]) == [true])
        // Probability alone: about p of first pushes create rows, deterministically per (key, count).
        let p = AdmissionFilter(config: AdmissionConfig(minCount: 0, probability: 0.25), saved: nil)
        let keys = (0..<20_000).map { UInt64($0) }
        let first = p.admit(keys)
        let share = Double(first.filter { $0 }.count) / Double(keys.count)
        #expect(abs(share - 0.25) < 0.02)
        let again = AdmissionFilter(config: AdmissionConfig(minCount: 0, probability: 0.25), saved: nil).admit(keys)
        #expect(again == first)
    }

    @Test func sequenceClockAnswersConservativelyAndRoundTrips() {
        var c = SequenceClock()
        for t in 0..<100 { c.note(seq: UInt64(t * 10), at: Double(1000 + t)) }
        #expect(c.sequence(atOrBefore: 1050.5) == 500)
        #expect(c.sequence(atOrBefore: 999) == 0)
        c.note(seq: 2000, at: 1099.5)   // under a second after the last sample: ignored
        #expect(c.samples.last?.seq == 990)
        for t in 0..<10_000 { c.note(seq: UInt64(5000 + t), at: Double(2000 + t)) }
        #expect(c.samples.count <= SequenceClock.capacity)
        #expect(c.sequence(atOrBefore: 1050.5) <= 500)
        let copy = SequenceClock(encoded: c.encoded)
        #expect(copy?.samples.count == c.samples.count && copy?.sequence(atOrBefore: 9000) == c.sequence(atOrBefore: 9000))
    }

    @Test func invalidPoliciesAreRefusedWithTheField() throws {
        var spec = TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.admission = AdmissionConfig(minCount: 1)
        #expect(throws: SpecError.self) { try spec.validated() }
        spec.admission = AdmissionConfig(minCount: 2); spec.admission?.sketchWidth = 1000
        #expect(throws: SpecError.self) { try spec.validated() }
        spec.admission = AdmissionConfig(minCount: 0, probability: 1.5)
        #expect(throws: SpecError.self) { try spec.validated() }
        spec.admission = nil
        spec.eviction = EvictionConfig()
        #expect(throws: SpecError.self) { try spec.validated() }
        spec.eviction?.minL2Norm = -1
        #expect(throws: SpecError.self) { try spec.validated() }
        spec.eviction = EvictionConfig(); spec.eviction?.maxRows = 10
        #expect((try? spec.validated()) != nil)
        // The wire form carries both policies.
        spec.admission = AdmissionConfig(minCount: 4, probability: 0.5)
        spec.eviction?.policy = .leastFrequentlyUpdated; spec.eviction?.ttlSeconds = 30
        #expect(try TableSpec(wire: spec.wire) == spec)
    }
}

@Suite struct RowLifecycleEngineTests {
    /// Engines and pulls as the engine tests make them.
    let base = ShardEngineTests()
    func push(_ e: ShardEngine, _ t: String, _ ids: [UInt64], _ g: Float, requestID: RequestID? = nil) throws -> Int {
        let dim = try e.dim(of: t)
        let grads = [Float](repeating: g, count: ids.count * dim)
        return try ids.withUnsafeBufferPointer { i in try grads.withUnsafeBytes { b in try e.push(table: t, ids: i, gradientBytes: b, requestID: requestID) } }
    }

    @Test func unadmittedIdsAreCountedNotAppliedAndTheCountsSurviveARestart() throws {
        var (e, dir) = try base.makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "a", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.admission = AdmissionConfig(minCount: 3)
        _ = try e.createTable(spec)
        #expect(try push(e, "a", [1, 2], 1) == 0)
        #expect(try base.pull(e, "a", [1]) == [0, 0])
        #expect(try push(e, "a", [1], 1) == 0)
        // A retried push (same request id) is answered from the ledger and counted once.
        let rid = RequestID(high: 7, low: 1)
        #expect(try push(e, "a", [1, 2], 1, requestID: rid) == 1)
        #expect(try push(e, "a", [1, 2], 1, requestID: rid) == 1)
        #expect(try base.pull(e, "a", [1, 2]) == [-1, -1, 0, 0])
        // Existing rows are always updated.
        #expect(try push(e, "a", [1], 1) == 1)
        var s = try e.snapshot(of: "a")
        #expect(s.rowsAdmitted == 1 && s.pushesRefused == 4 && s.rows == 1 && s.admissionSketchBytes == 8 << 20)
        // A graceful restart keeps the counts (saved with the final checkpoint): id 2 has two, one more admits it.
        e.close()
        (e, _) = try base.makeEngine(dir: dir)
        #expect(try push(e, "a", [2], 1) == 1)
        #expect(try base.pull(e, "a", [1, 2]) == [-2, -2, -1, -1])
        s = try e.snapshot(of: "a")
        #expect(s.rows == 2)
        e.close()
    }

    @Test func timeToLiveByUpdatesEvictsStaleRowsAndTheLogNeverBringsThemBack() throws {
        var (e, dir) = try base.makeEngine()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.eviction = EvictionConfig(); spec.eviction?.ttlUpdates = 5
        _ = try e.createTable(spec)
        let stale = (0..<100).map { UInt64($0) }, fresh = (1000..<1100).map { UInt64($0) }
        _ = try push(e, "t", stale, 1)
        for _ in 0..<10 { _ = try push(e, "t", fresh, 1) }
        let (evicted, after) = try e.evict(table: "t")
        #expect(evicted == 100 && after == 100)
        #expect(try base.pull(e, "t", [stale[0], fresh[0]]) == [0, 0, -10, -10])
        // A push after the eviction starts the row again; a crash (no final checkpoint) replays only that.
        _ = try push(e, "t", [stale[1]], 2)
        e.close(checkpoint: false)
        (e, _) = try base.makeEngine(dir: dir)
        #expect(try base.pull(e, "t", [stale[0], stale[1], fresh[5]]) == [0, 0, -2, -2, -10, -10])
        let s = try e.snapshot(of: "t")
        #expect(s.rows == 101 && s.rowsEvicted == 0)
        e.close()
    }

    @Test func aRowBudgetCapsCreationAndEvictsTheLeastRecentlyOrFrequentlyUpdatedRows() throws {
        let (e, dir) = try base.makeEngine(cacheRows: 64)
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var lru = TableSpec(name: "lru", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        lru.eviction = EvictionConfig(); lru.eviction?.maxRows = 400; lru.eviction?.intervalSeconds = 3600
        var lfu = lru; lfu.name = "lfu"; lfu.eviction?.policy = .leastFrequentlyUpdated
        _ = try e.createTable(lru); _ = try e.createTable(lfu)
        let batch = { (b: Int) in (b * 100..<(b + 1) * 100).map { UInt64($0) } }
        // 400 rows in batches of 100, oldest first; then "lru" updates batch 0 again (batch 1 is now the least
        // recently updated) and "lfu" updates batches 1-3 five more times (batch 0 the least frequently).
        for b in 0..<4 { _ = try push(e, "lru", batch(b), 1); _ = try push(e, "lfu", batch(b), 1) }
        _ = try push(e, "lru", batch(0), 1)
        for _ in 0..<5 { _ = try push(e, "lfu", (100..<400).map { UInt64($0) }, 1) }
        // At max_rows, new ids are counted as refused and create nothing; existing rows still update.
        #expect(try push(e, "lru", batch(10) + [5], 1) == 1)
        var s = try e.snapshot(of: "lru")
        #expect(s.rows == 400 && s.pushesRefused == 100)
        // An on-demand pass goes down to 0.995 x max_rows, taking the policy's lowest rows.
        let (n1, after1) = try e.evict(table: "lru")
        let (n2, after2) = try e.evict(table: "lfu")
        #expect(n1 == 2 && after1 == 398 && n2 == 2 && after2 == 398)
        let lruGone = try base.pull(e, "lru", batch(1)).filter { $0 == 0 }.count
        let lfuGone = try base.pull(e, "lfu", batch(0)).filter { $0 == 0 }.count
        #expect(lruGone == 2 && lfuGone == 2)
        // The room made lets two new rows in.
        #expect(try push(e, "lru", batch(11), 1) == 2)
        s = try e.snapshot(of: "lru")
        #expect(s.rows == 400 && s.pushesRefused == 198 && s.rowsEvicted == 2)
        // Eviction of a table without a policy is refused by name.
        _ = try e.createTable(TableSpec(name: "plain", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        #expect(throws: EngineError.self) { try e.evict(table: "plain") }
    }

    /// Dynamic-sparsity and DNIS rows carry more than weights and optimizer state (masks, scores, block ids);
    /// a TTL pass removes them whole like dense rows, and an evicted id reads as a never-pushed one.
    @Test func timeToLiveEvictsSparseAndDnisRowsWhole() throws {
        let (e, dir) = try base.makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var o = OptimizerConfig(kind: .adagrad, learningRate: 0.1); o.initialAccumulator = 0.5
        var dsl = TableSpec(name: "dsl", dim: 8, optimizer: o, initializer: .uniform(-1, 1, seed: 3))
        dsl.sparsity = SparsityConfig(density: 0.5)
        var dnis = TableSpec(name: "dnis", dim: 8, optimizer: o, initializer: .uniform(-1, 1, seed: 3))
        dnis.dnis = DnisConfig(blocks: 2)
        for var spec in [dsl, dnis] {
            spec.eviction = EvictionConfig(); spec.eviction?.ttlUpdates = 3; spec.eviction?.intervalSeconds = 3600
            _ = try e.createTable(spec)
            let stale = (0..<50).map { UInt64($0) }, fresh = (500..<550).map { UInt64($0) }
            let untouched = try base.pull(e, spec.name, [stale[7], 9_999])
            _ = try push(e, spec.name, stale, 1)
            #expect(try base.pull(e, spec.name, [stale[7]]) != Array(untouched.prefix(8)), "\(spec.name): the push changed nothing")
            for _ in 0..<5 { _ = try push(e, spec.name, fresh, 1) }
            let (evicted, after) = try e.evict(table: spec.name)
            #expect(evicted == 50 && after == 50, "\(spec.name): evicted \(evicted), rows after \(after)")
            #expect(try base.pull(e, spec.name, [stale[7], 9_999]) == untouched, "\(spec.name): an evicted row does not read as new")
            #expect(try e.snapshot(of: spec.name).rows == 50)
        }
        #expect(try e.sparsityReport(table: "dsl").rows == 50)
        #expect(try e.dnisReport(table: "dnis").blocks.reduce(0) { $0 + $1.rows } <= 50)
    }

    @Test func rowsOfSmallNormAreEvicted() throws {
        let (e, dir) = try base.makeEngine()
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        var spec = TableSpec(name: "n", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        spec.eviction = EvictionConfig(); spec.eviction?.minL2Norm = 1.0
        _ = try e.createTable(spec)
        _ = try push(e, "n", [1], 0.1)   // norm 0.14: evicted
        _ = try push(e, "n", [2], 2)     // norm 2.8: kept
        #expect(try e.evict(table: "n") == (1, 1))
        #expect(try base.pull(e, "n", [1, 2]) == [0, 0, -2, -2])
    }
}
