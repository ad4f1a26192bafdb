import Testing
import Foundation
@testable import Engine
import Vocabulary
import Storage

@Suite struct DimensionSearchTests {
    @Test func alphaStepNormalisesPerBlockAddsL1AndClamps() {
        // 2 blocks x 3 dims. Block 0: g = [0.2, -0.4, 0.6] + l1 (0.01) = [0.21, -0.39, 0.61]; mean |g| = 0.40333..
        // normalised = [0.52066, -0.96694, 1.51240]; alpha -= 0.1 * that, clamped.
        var alpha: [Float] = [1, 0.5, 0.05, 0, 0.3, 0.9]
        let g: [Float] = [0.2, -0.4, 0.6, 0, 0, -3]
        DimensionSearch.updateAlpha(&alpha, gradient: g, blocks: 2, dim: 3, learningRate: 0.1, l1: 0.01)
        let m0: Float = (0.21 + 0.39 + 0.61) / 3 + 1e-8
        #expect(abs(alpha[0] - (1 - 0.1 * 0.21 / m0)) < 1e-6)
        #expect(abs(alpha[1] - (0.5 + 0.1 * 0.39 / m0)) < 1e-6)
        #expect(alpha[2] == 0, "0.05 - 0.151 < 0 is clamped to 0")
        // Block 1: alpha 0 gets no L1 subgradient: g = [0, 0.01, -2.99]; mean = 1.0 (+1e-8).
        let m1: Float = (0 + 0.01 + 2.99) / 3 + 1e-8
        #expect(alpha[3] == 0)
        #expect(abs(alpha[4] - (0.3 - 0.1 * 0.01 / m1)) < 1e-6)
        #expect(alpha[5] == 1, "0.9 + 0.299 is clamped to 1")
    }

    func spec(dim: Int = 4, blocks: Int = 2) throws -> TableSpec {
        var s = TableSpec(name: "d", dim: dim, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), initializer: .uniform(-1, 1, seed: 1))
        s.dnis = DnisConfig(blocks: blocks)
        return try s.validated()
    }

    @Test func viewChainRuleFoldAndAlphaGradientFollowTheBlock() throws {
        let s = try spec()
        let f = try #require(s.sparseFormat)
        let d = DimensionSearch(config: try #require(s.dnis), format: f)
        var state = DnisState(blocks: 2, dim: 4)
        state.alpha = [1, 1, 1, 1, 0.5, 0, 1, 0.25]
        var row = [Float](repeating: 0, count: s.rowFloats)
        try row.withUnsafeMutableBufferPointer { b in
            let r = try #require(b.baseAddress)
            d.initialize(r, state: state)
            #expect(f.activeCount(r) == 4 && d.block(r) == 1 && d.count(r) == 0)
            r[0] = 2; r[1] = 3; r[2] = -4; r[3] = 0.001
            var out = [Float](repeating: 9, count: 4)
            d.view(r, into: &out, state: state)
            #expect(out == [1, 0, -4, 0.00025])
            var g: [Float] = [1, 1, 1, 1]
            d.chainRule(r, gradient: &g, state: state)
            #expect(g == [0.5, 0, 1, 0.25])
            var partial = [Float](repeating: 0, count: 8)
            d.accumulateAlphaGradient(r, gradient: [1, 2, 3, 4], into: &partial)
            #expect(partial == [0, 0, 0, 0, 2, 6, -12, 0.004])
            // Fold alpha with a cut of 0.01: column 1 (alpha 0) and column 3 (0.00025) are dropped.
            d.fold(r, alpha: state.alpha, cut: 0.01)
            #expect(f.activeCount(r) == 2 && Array(UnsafeBufferPointer(start: r, count: 4)) == [1, 0, -4, 0])
            d.afterUpdate(r)
            #expect(d.count(r) == 1)
        }
        // The stored form keeps only the surviving entries.
        let codec = RowCodec(sparse: f, optimizerTag: 1)
        let bytes = codec.encode(floats: row, step: 1, seq: 2)
        #expect(bytes.count == 16 + 8 + 8 + 2 * 4)
        var back = [Float](repeating: 0, count: s.rowFloats)
        _ = try bytes.withUnsafeBytes { raw in try back.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0.baseAddress!) } }
        #expect(back == row)
    }

    @Test func blockRowsSplitEquallyOrByGivenSizes() {
        var c = DnisConfig(blocks: 3)
        #expect(c.blockRows(total: 10) == [4, 3, 3])
        c.blockSizes = [2, 5]
        #expect(c.blockRows(total: 10) == [2, 5, 3])
        #expect(c.blockRows(total: 4) == [2, 2, 0])
        var a = [UInt64](repeating: 0, count: MagnitudeHistogram.bins), b = a
        a[100] = 3; a[50] = 3; b[100] = 1; b[10] = 5
        // Most frequent first: 4 rows in bin 100 (3 on a, 1 on b), then bin 50 (a), then bin 10 (b).
        #expect(MagnitudeHistogram.splitSequential([a, b], sizes: [4, 4, 4], descending: true) == [[3, 1], [3, 1], [0, 4]])
    }

    func makeEngine(dir existing: String? = nil, cacheRows: Int) throws -> (ShardEngine, String) {
        let dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("dnis-\(UUID().uuidString)").path
        var c = ShardEngineConfiguration(dataDirectory: dir, shardIndex: 0, slotMap: try .evenSplit(shards: 1))
        c.cacheRowsPerTable = cacheRows
        return (try ShardEngine(c), dir)
    }

    @Test(arguments: [1 << 16, 8]) func searchAssignPruneAndRecover(cacheRows: Int) throws {
        var (e, dir) = try makeEngine(cacheRows: cacheRows)
        defer { e.close(); try? FileManager.default.removeItem(atPath: dir) }
        let s = try spec(dim: 4, blocks: 2)
        _ = try e.createTable(s)
        func push(_ ids: [UInt64], _ g: [Float]) throws {
            _ = try ids.withUnsafeBufferPointer { i in try g.withUnsafeBytes { b in try e.push(table: "d", ids: i, gradientBytes: b) } }
        }
        func pull(_ ids: [UInt64]) throws -> [Float] {
            var out = [Float](repeating: 0, count: ids.count * 4)
            try ids.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try e.pull(table: "d", ids: i, into: $0.baseAddress!) } }
            return out
        }
        // Ids 1..3 pushed 3 times, 4..10 once: 1..3 are the frequent block after assignment (5 / 5 split).
        for _ in 0..<2 { try push([1, 2, 3], [Float](repeating: 0.1, count: 12)) }
        try push(Array(1...10), [Float](repeating: 0.1, count: 40))
        let perBlock = try e.dnisAssign(table: "d", take: [5])
        #expect(perBlock == [5, 5])
        let report = try e.dnisReport(table: "d")
        #expect(report.blocks.map(\.rows) == [5, 5] && report.blocks.map(\.active) == [20, 20] && report.assignmentRound == 1)
        // alpha: block 0 keeps everything, block 1 scales column 0 by 0.5 and zeroes column 3.
        let (v, _, _) = try e.dnisAlpha(table: "d", gradient: [], setVersion: 5, setAlpha: [1, 1, 1, 1, 0.5, 1, 1, 0])
        #expect(v == 5)
        let raw = try (1...10).map { try e.fullRow(table: "d", id: UInt64($0)) }
        let blockOf = raw.map { Int($0[s.sparseFormat!.metaOffset + 1].bitPattern) }
        #expect(blockOf.filter { $0 == 0 }.count == 5 && blockOf[0] == 0 && blockOf[1] == 0 && blockOf[2] == 0)
        let pulled = try pull((1...10).map { UInt64($0) })
        for (n, r) in raw.enumerated() where blockOf[n] == 1 {
            #expect(pulled[n * 4] == r[0] * 0.5 && pulled[n * 4 + 3] == 0 && pulled[n * 4 + 1] == r[1])
        }
        // A push carries dL/de: the shard applies dL/dv = dL/de * alpha (SGD lr 1).
        let low = try #require((1...10).first { blockOf[$0 - 1] == 1 })
        try push([UInt64(low)], [1, 1, 1, 1])
        let after = try e.fullRow(table: "d", id: UInt64(low))
        #expect(after[0] == raw[low - 1][0] - 0.5 && after[3] == raw[low - 1][3] && after[1] == raw[low - 1][1] - 1)

        // Prune 12 of 40 entries: the 5 zero-alpha entries of block 1 go first.
        let before = try (1...10).map { try e.fullRow(table: "d", id: UInt64($0)) }
        let (pruned, active, rows) = try e.dnisPrune(table: "d", prune: 12, threshold: 0.05)
        #expect(pruned == 12 && active == 28 && rows == 10)
        let folded = try pull((1...10).map { UInt64($0) })
        var magnitudes: [(Float, Bool)] = []
        for (n, r) in before.enumerated() {
            let b = blockOf[n]
            for k in 0..<4 {
                let scaled = r[k] * [Float(1), 1, 1, 1, 0.5, 1, 1, 0][b * 4 + k]
                magnitudes.append((abs(scaled), folded[n * 4 + k] != 0))
                if folded[n * 4 + k] != 0 { #expect(folded[n * 4 + k] == scaled, "alpha folded in") }
            }
        }
        let keptMin = try #require(magnitudes.filter { $0.1 }.map(\.0).min())
        let droppedMax = try #require(magnitudes.filter { !$0.1 }.map(\.0).max())
        #expect(droppedMax <= keptMin)
        #expect(try e.dnisReport(table: "d").pruned)
        #expect(throws: EngineError.self) { try e.dnisAlpha(table: "d", gradient: [Float](repeating: 1, count: 8), setVersion: 0, setAlpha: []) }
        // Compact rows carry only the surviving entries; a new row is cut at the threshold.
        let compact = try [UInt64(1), 999].withUnsafeBufferPointer { try e.pullCompact(table: "d", ids: $0) }
        let firstActive = (0..<4).filter { folded[$0] != 0 }
        #expect(compact.masks[0] == firstActive.reduce(UInt32(0)) { $0 | (1 << UInt32($1)) })
        #expect(Array(compact.values.prefix(firstActive.count)) == firstActive.map { folded[$0] })
        #expect(compact.values.count - firstActive.count == (compact.masks[1]).nonzeroBitCount && compact.masks[1] & 0b1000 == 0)
        // Pushes after pruning leave pruned entries at zero; a crash loses nothing.
        try push(Array(1...10), [Float](repeating: 0.5, count: 40))
        let expected = try pull((1...10).map { UInt64($0) })
        for i in 0..<40 where folded[i] == 0 { #expect(expected[i] == 0) }
        e.close(checkpoint: false)
        (e, dir) = try makeEngine(dir: dir, cacheRows: cacheRows)
        #expect(try pull((1...10).map { UInt64($0) }) == expected)
        let summary = try e.dnisReport(table: "d")
        #expect(summary.pruned && summary.blocks.reduce(0) { $0 + $1.active } == 28)
        // Stored: header 16 + bitmaps 8 + meta 8 per row, 4 bytes per surviving entry (SGD: no state).
        #expect(summary.blocks.reduce(0) { $0 + $1.storedBytes } == 10 * 32 + 28 * 4)
        #expect(summary.blocks.reduce(0) { $0 + $1.denseBytes } == 10 * (16 + 16))
    }
}
