import Testing
import Foundation
@testable import Engine
import Vocabulary
import Storage

@Suite struct DynamicSparsityTests {
    func adagradSpec(dim: Int, density: Float) -> TableSpec {
        var o = OptimizerConfig(kind: .adagrad, learningRate: 0.1)
        o.initialAccumulator = 0.5
        var spec = TableSpec(name: "s", dim: dim, optimizer: o, initializer: .uniform(-1, 1, seed: 3))
        var c = SparsityConfig(density: density)
        c.seed = 11; c.growthDecay = 0.5
        spec.sparsity = c
        return spec
    }

    func freshRow(_ spec: TableSpec, key: UInt64) -> [Float] {
        let sp = DynamicSparsity(config: spec.sparsity!, format: spec.sparseFormat!)
        var row = [Float](repeating: 0, count: spec.rowFloats)
        row.withUnsafeMutableBufferPointer { b in
            RowInitializer(config: spec.initializer, dim: spec.dim).fill(b.baseAddress!, rowKey: key)
            SparseOptimizer(config: spec.optimizer, dim: spec.dim).initializeState(b.baseAddress!)
            sp.initialize(b.baseAddress!, rowKey: key)
        }
        return row
    }

    @Test func initialMaskHasExactlyTheBudgetAndClearsInactiveEntries() throws {
        let spec = try adagradSpec(dim: 10, density: 0.3).validated()
        let f = try #require(spec.sparseFormat)
        var masks = Set<[Bool]>()
        for key in UInt64(0)..<50 {
            let row = freshRow(spec, key: key)
            try row.withUnsafeBufferPointer { b in
                let r = try #require(b.baseAddress)
                #expect(f.activeCount(r) == 3)
                #expect(f.firedCount(r) == 3)
                for j in 0..<10 where !f.isActive(r, j) {
                    #expect(r[j] == 0 && r[10 + j] == 0.5 && r[f.scoreOffset + j] == 0)
                    #expect(!f.hasFired(r, j))
                }
                masks.insert((0..<10).map { f.isActive(r, $0) })
            }
            #expect(freshRow(spec, key: key) == row, "the initial row is a pure function of (seed, key)")
        }
        #expect(masks.count > 20, "masks differ between rows")
    }

    @Test func updateTouchesActiveEntriesOnlyAndAccumulatesDecayedGradientMagnitude() throws {
        let spec = try adagradSpec(dim: 4, density: 0.5).validated()
        let f = try #require(spec.sparseFormat)
        let sp = DynamicSparsity(config: spec.sparsity!, format: f)
        let opt = SparseOptimizer(config: spec.optimizer, dim: 4)
        var row = freshRow(spec, key: 7)
        let before = row
        var step: UInt32 = 0
        row.withUnsafeMutableBufferPointer { b in
            let r = b.baseAddress!
            let g1: [Float] = [1, -2, 3, -4], g2: [Float] = [0.5, 0.5, 0.5, 0.5]
            opt.apply(r, gradient: g1, step: &step); sp.afterUpdate(r, gradient: g1, pushesSinceRowUpdate: 1)
            // Two pushes later (decay 0.5 per push): score = |g1| * 0.5^2 + |g2|.
            opt.apply(r, gradient: g2, step: &step); sp.afterUpdate(r, gradient: g2, pushesSinceRowUpdate: 2)
            for j in 0..<4 {
                if f.isActive(r, j) {
                    // Adagrad by hand: a = 0.5 + g1^2 (+ g2^2), two steps.
                    let a1 = 0.5 + g1[j] * g1[j]
                    let w1 = before[j] - 0.1 * g1[j] / (a1.squareRoot() + 1e-10)
                    let a2 = a1 + 0.25
                    let w2 = w1 - 0.1 * 0.5 / (a2.squareRoot() + 1e-10)
                    #expect(abs(r[j] - w2) < 1e-6 && abs(r[4 + j] - a2) < 1e-6)
                    #expect(r[f.scoreOffset + j] == 0)
                } else {
                    #expect(r[j] == 0 && r[4 + j] == 0.5, "inactive: weight 0, accumulator untouched")
                    #expect(abs(r[f.scoreOffset + j] - (abs(g1[j]) * 0.25 + 0.5)) < 1e-6)
                }
            }
            #expect(abs(sp.growthScore(r, (0..<4).first { !f.isActive(r, $0) }!, pushesSinceRowUpdate: 1) - r[f.scoreOffset + (0..<4).first { !f.isActive(r, $0) }!] * 0.5) < 1e-7)
        }
    }

    @Test func pruneClearsStateAndGrowStartsAtZero() throws {
        let spec = try adagradSpec(dim: 6, density: 0.5).validated()
        let f = try #require(spec.sparseFormat)
        let sp = DynamicSparsity(config: spec.sparsity!, format: f)
        var row = freshRow(spec, key: 3)
        row.withUnsafeMutableBufferPointer { b in
            let r = b.baseAddress!
            let on = (0..<6).first { f.isActive(r, $0) }!, off = (0..<6).first { !f.isActive(r, $0) }!
            r[6 + on] = 9  // accumulated state
            r[f.scoreOffset + off] = 4
            sp.prune(r, on)
            #expect(!f.isActive(r, on) && f.hasFired(r, on) && r[on] == 0 && r[6 + on] == 0.5)
            sp.grow(r, off)
            #expect(f.isActive(r, off) && f.hasFired(r, off) && r[off] == 0 && r[6 + off] == 0.5 && r[f.scoreOffset + off] == 0)
            #expect(f.activeCount(r) == 3)
        }
    }

    @Test func sparseCodecStoresActiveEntriesOnly() throws {
        for density in [Float(0.2), 0.5, 0.9] {
            let spec = try adagradSpec(dim: 40, density: density).validated()
            let f = try #require(spec.sparseFormat)
            var row = freshRow(spec, key: 5)
            row.withUnsafeMutableBufferPointer { b in
                for j in 0..<40 where !f.isActive(b.baseAddress!, j) { b[f.scoreOffset + j] = Float(j) * 0.25 }
            }
            let codec = RowCodec(sparse: f, optimizerTag: 2)
            let bytes = codec.encode(floats: row, step: 9, seq: 77)
            let active = Int((Double(density) * 40).rounded())
            #expect(bytes.count == 16 + 8 * 2 + active * 8 + (40 - active) * 2)
            #expect(bytes.count < 16 + 40 * 8, "smaller than the dense row")
            var back = [Float](repeating: -1, count: spec.rowFloats)
            let (step, seq) = try bytes.withUnsafeBytes { raw in try back.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0.baseAddress!) } }
            #expect(step == 9 && seq == 77)
            #expect(back == row, "scores are multiples of 0.25, exact in float16")
            // A truncated row and a row with bits past dim are refused.
            #expect(throws: RowCodecError.self) {
                try Array(bytes.dropLast()).withUnsafeBytes { raw in try back.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0.baseAddress!) } }
            }
            var bad = bytes
            bad[16 + 7] |= 0x80  // mask word 1, bit 31 = entry 63 >= dim
            #expect(throws: RowCodecError.self) {
                try bad.withUnsafeBytes { raw in try back.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0.baseAddress!) } }
            }
        }
    }

    @Test func globalSplitGivesExactPerShardCounts() {
        var a = [UInt64](repeating: 0, count: MagnitudeHistogram.bins), b = a
        a[1] = 10; a[5] = 10; b[1] = 5; b[5] = 30; b[9] = 7
        // Ascending: 15 in bin 1, then 40 in bin 5 shared 10:30.
        #expect(MagnitudeHistogram.split([a, b], count: 15) == [10, 5])
        #expect(MagnitudeHistogram.split([a, b], count: 35) == [15, 20])
        #expect(MagnitudeHistogram.split([a, b], count: 16).reduce(0, +) == 16)
        #expect(MagnitudeHistogram.split([a, b], count: 1000) == [20, 42])
        // Descending: bin 9 first (all on shard 1).
        #expect(MagnitudeHistogram.split([a, b], count: 7, descending: true) == [0, 7])
        #expect(MagnitudeHistogram.split([a, b], count: 11, descending: true) == [1, 10])
        #expect(MagnitudeHistogram.bin(0) == 0 && MagnitudeHistogram.bin(1) == 48 * 32 + 1 && MagnitudeHistogram.bin(1.5) > MagnitudeHistogram.bin(1))
    }

    @Test func cosineScheduleRunsFromStartToEnd() {
        var c = SparsityConfig(density: 0.5)
        c.rounds = 10
        #expect(abs(c.updateFraction(round: 0) - 0.5) < 1e-6)
        #expect(abs(c.updateFraction(round: 5) - 0.2525) < 1e-6)
        #expect(abs(c.updateFraction(round: 10) - 0.005) < 1e-7 && abs(c.updateFraction(round: 50) - 0.005) < 1e-7)
    }

    func makeEngine(dir existing: String? = nil, cacheRows: Int = 1 << 16) throws -> (ShardEngine, String) {
        let dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("dsl-\(UUID().uuidString)").path
        var c = ShardEngineConfiguration(dataDirectory: dir, shardIndex: 0, slotMap: try .evenSplit(shards: 1))
        c.cacheRowsPerTable = cacheRows
        return (try ShardEngine(c), dir)
    }

    func push(_ e: ShardEngine, _ ids: [UInt64], _ g: [Float]) throws {
        _ = try ids.withUnsafeBufferPointer { i in try g.withUnsafeBytes { b in try e.push(table: "s", ids: i, gradientBytes: b) } }
    }

    @Test(arguments: [1 << 16, 16]) func pruneAndRegrowKeepsTheBudgetAndIsDurable(cacheRows: Int) throws {
        var (e, dir) = try makeEngine(cacheRows: cacheRows)
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        let spec = try adagradSpec(dim: 8, density: 0.5).validated()
        let f = try #require(spec.sparseFormat)
        _ = try e.createTable(spec)
        let ids = (0..<60).map { UInt64($0 * 7 + 1) }
        var rng = SplitMix64(seed: 5)
        for _ in 0..<4 { try push(e, ids, (0..<(60 * 8)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }) }
        var report = try e.sparsityReport(table: "s")
        #expect(report.rows == 60 && report.active == 240 && report.inactive == 240 && report.fired == 240)
        #expect(report.storedBytes < report.denseBytes)
        let before = try ids.map { try e.fullRow(table: "s", id: $0) }
        // A step larger than what the shard has is refused and changes nothing.
        #expect(throws: EngineError.self) { try e.sparsityStep(table: "s", prune: 241, grow: 1, round: 1) }
        #expect(try ids.map { try e.fullRow(table: "s", id: $0) } == before)

        let r = try e.sparsityStep(table: "s", prune: 30, grow: 30, round: 1)
        #expect(r.pruned == 30 && r.grown == 30 && r.active == 240 && r.rows == 60 && r.round == 1)
        let after = try ids.map { try e.fullRow(table: "s", id: $0) }
        var pruned: [Float] = [], kept: [Float] = [], grownScores: [Float] = [], idleScores: [Float] = []
        for (b, a) in zip(before, after) {
            try b.withUnsafeBufferPointer { bp in try a.withUnsafeBufferPointer { ap in
                let br = try #require(bp.baseAddress), ar = try #require(ap.baseAddress)
                #expect(f.activeCount(ar) + (0..<8).filter { f.isActive(br, $0) && !f.isActive(ar, $0) }.count - (0..<8).filter { !f.isActive(br, $0) && f.isActive(ar, $0) }.count == 4)
                for j in 0..<8 {
                    switch (f.isActive(br, j), f.isActive(ar, j)) {
                    case (true, false): pruned.append(abs(br[j])); #expect(ar[j] == 0 && ar[8 + j] == 0.5, "pruned: weight and state cleared")
                    case (true, true): kept.append(abs(br[j])); #expect(ar[j] == br[j] && ar[8 + j] == br[8 + j])
                    case (false, true): grownScores.append(br[f.scoreOffset + j]); #expect(ar[j] == 0 && ar[8 + j] == 0.5 && f.hasFired(ar, j), "regrown at zero")
                    case (false, false): idleScores.append(br[f.scoreOffset + j])
                    }
                }
            } }
        }
        #expect(pruned.count == 30 && grownScores.count == 30)
        #expect(try #require(pruned.max()) <= (try #require(kept.min())), "the smallest |w| were pruned")
        #expect(try #require(grownScores.min()) >= (try #require(idleScores.max())), "the largest accumulated gradients grew")
        report = try e.sparsityReport(table: "s")
        #expect(report.active == 240 && report.round == 1 && report.fired == 270 && report.pushesSinceStep == 0)
        // Pulls read inactive entries as zero.
        var out = [Float](repeating: 1, count: 60 * 8)
        try ids.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: "s", ids: i, into: $0.baseAddress!) } }
        for (n, a) in after.enumerated() { for j in 0..<8 { #expect(out[n * 8 + j] == a[j]) } }

        // More pushes, then a crash: the step and the later pushes survive, nothing is applied twice.
        try push(e, ids, [Float](repeating: 0.25, count: 60 * 8))
        let expected = try ids.map { try e.fullRow(table: "s", id: $0) }
        e.close(checkpoint: false)
        (e, dir) = try makeEngine(dir: dir, cacheRows: cacheRows)
        #expect(try ids.map { try e.fullRow(table: "s", id: $0) } == expected)
        #expect(try e.sparsityReport(table: "s").round == 1)
    }
}
