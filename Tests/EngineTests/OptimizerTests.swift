import Testing
@testable import Engine
import Vocabulary
import SemanticTokenizers
import Foundation

/// Expected values were computed independently in double precision (Python) from the formulas in
/// `SparseOptimizer`'s documentation.
@Suite struct OptimizerTests {
    func run(_ config: OptimizerConfig, start: Float, grads: [Float]) -> [Float] {
        let opt = SparseOptimizer(config: config, dim: 1)
        var row = [Float](repeating: 0, count: 1 + config.kind.stateSlots)
        row[0] = start
        var step: UInt32 = 0
        var out: [Float] = []
        row.withUnsafeMutableBufferPointer { r in
            opt.initializeState(r.baseAddress!)
            for g in grads {
                var gg = g
                opt.apply(r.baseAddress!, gradient: &gg, step: &step)
                out.append(r[0])
            }
        }
        #expect(step == UInt32(grads.count))
        return out
    }

    /// The formulas column by column in Swift, as `SparseOptimizer.apply` computed them before its
    /// arithmetic moved to the vectorised C kernels.
    static func referenceApply(_ c: OptimizerConfig, _ row: inout [Float], _ g: [Float], dim: Int, step: UInt32) {
        let lr = c.learningRate
        switch c.kind {
        case .sgd:
            for j in 0..<dim { row[j] -= lr * g[j] }
        case .adagrad:
            for j in 0..<dim {
                row[dim + j] += g[j] * g[j]
                row[j] -= lr * g[j] / (row[dim + j].squareRoot() + c.epsilon)
            }
        case .adam:
            let t = Double(step)
            let c1 = Float(1 - pow(Double(c.beta1), t)), c2 = Float(1 - pow(Double(c.beta2), t))
            for j in 0..<dim {
                row[dim + j] = c.beta1 * row[dim + j] + (1 - c.beta1) * g[j]
                row[2 * dim + j] = c.beta2 * row[2 * dim + j] + (1 - c.beta2) * g[j] * g[j]
                row[j] -= lr * (row[dim + j] / c1) / ((row[2 * dim + j] / c2).squareRoot() + c.epsilon)
            }
        case .ftrl:
            for j in 0..<dim {
                let n = row[2 * dim + j], nNew = n + g[j] * g[j]
                let sigma = (nNew.squareRoot() - n.squareRoot()) / lr
                row[dim + j] += g[j] - sigma * row[j]
                row[2 * dim + j] = nNew
                let z = row[dim + j]
                if abs(z) <= c.l1 { row[j] = 0 } else {
                    let sign: Float = z < 0 ? -1 : 1
                    row[j] = -(z - sign * c.l1) / ((c.beta + nNew.squareRoot()) / lr + c.l2)
                }
            }
        }
    }

    /// Vector widths and tails: every column of every optimizer ends bit-identical to the per-column
    /// formulas, for dims that fill no vector, some vectors, and vectors plus a tail (seeded values,
    /// 20 steps; FTRL with an l1 that zeroes some columns and not others).
    @Test func vectorisedUpdatesAreBitIdenticalToThePerColumnFormulas() {
        var rng = SplitMix64(seed: 11)
        func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * Float(rng.unit()) }
        for kind in [OptimizerKind.sgd, .adagrad, .adam, .ftrl] {
            var c = OptimizerConfig(kind: kind, learningRate: 0.05)
            c.initialAccumulator = 0.1; c.l1 = 2; c.l2 = 0.1; c.beta = 1
            for dim in [1, 3, 4, 5, 8, 13, 64, 67] {
                let opt = SparseOptimizer(config: c, dim: dim)
                var row = (0..<(dim * (1 + kind.stateSlots))).map { _ in uniform(-0.5, 0.5) }
                row.withUnsafeMutableBufferPointer { opt.initializeState($0.baseAddress!) }
                var expected = row
                var step: UInt32 = 0
                for s in 1...20 {
                    var g = (0..<dim).map { _ in uniform(-1, 1) }
                    row.withUnsafeMutableBufferPointer { r in opt.apply(r.baseAddress!, gradient: &g, step: &step) }
                    Self.referenceApply(c, &expected, g, dim: dim, step: UInt32(s))
                }
                #expect(row.map(\.bitPattern) == expected.map(\.bitPattern), "\(kind) dim \(dim)")
                if kind == .ftrl && dim >= 8 { #expect(row.prefix(dim).contains(0) && row.prefix(dim).contains { $0 != 0 }, "l1 zeroes some columns and not others (dim \(dim))") }
            }
        }
    }

    @Test func sgdSubtractsLearningRateTimesGradient() {
        #expect(abs(run(OptimizerConfig(kind: .sgd, learningRate: 0.1), start: 0.5, grads: [0.2])[0] - 0.48) < 1e-7)
    }

    @Test func adagradMatchesHandComputedValues() {
        var c = OptimizerConfig(kind: .adagrad, learningRate: 0.1); c.initialAccumulator = 0.1
        let w = run(c, start: 0.5, grads: [0.2, -0.1])
        #expect(abs(w[0] - 0.4465477516318008) < 1e-6)
        #expect(abs(w[1] - 0.47236764059985026) < 1e-6)
    }

    @Test func adamMatchesHandComputedValuesWithBiasCorrection() {
        let w = run(OptimizerConfig(kind: .adam, learningRate: 0.1), start: 0.5, grads: [0.2, -0.3])
        #expect(abs(w[0] - 0.40000000499999966) < 1e-6)
        #expect(abs(w[1] - 0.42477018564194274) < 1e-6)
    }

    @Test func ftrlMatchesHandComputedValues() {
        var c = OptimizerConfig(kind: .ftrl, learningRate: 0.1); c.l1 = 0.01; c.l2 = 0.1; c.beta = 1
        let w = run(c, start: 0.5, grads: [0.2, 0.2])
        #expect(abs(w[0] - 0.06528925619834712) < 1e-6)
        #expect(abs(w[1] - 0.04981947027077811) < 1e-6)
    }

    @Test func ftrlWithStrongL1ProducesExactZeros() {
        var c = OptimizerConfig(kind: .ftrl, learningRate: 0.1); c.l1 = 10
        #expect(run(c, start: 0.5, grads: [0.2, -0.1]) == [0, 0])
    }
}

@Suite struct InitializerTests {
    @Test func uniformInitialValuesMatchTheSpecifiedGenerator() {
        // SplitMix64 seeded with XXH64(key=7 as LE bytes, seed=42); computed independently in Python.
        let v = RowInitializer(config: .uniform(-0.05, 0.05, seed: 42), dim: 4).values(rowKey: 7)
        let golden: [Float] = [0.029316723346710205, -0.036273520439863205, -0.04405972361564636, -0.007273829076439142]
        for (a, b) in zip(v, golden) { #expect(abs(a - b) < 1e-7) }
    }

    @Test func initialValuesAreDeterministicAndDifferPerRow() {
        let i = RowInitializer(config: .normal(mean: 0, stddev: 1, seed: 3), dim: 16)
        #expect(i.values(rowKey: 99) == i.values(rowKey: 99))
        #expect(i.values(rowKey: 99) != i.values(rowKey: 100))
    }

    @Test func normalInitialValuesHaveTheRequestedMoments() {
        let i = RowInitializer(config: .normal(mean: 0.5, stddev: 2, seed: 1), dim: 64)
        let all = (0..<500).flatMap { i.values(rowKey: UInt64($0)) }
        let mean = all.reduce(0, +) / Float(all.count)
        let variance = all.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(all.count)
        #expect(abs(mean - 0.5) < 0.05)
        #expect(abs(variance.squareRoot() - 2) < 0.05)
    }

    @Test func uniformValuesStayInRange() {
        let all = (0..<200).flatMap { RowInitializer(config: .uniform(-1, 3, seed: 9), dim: 32).values(rowKey: UInt64($0)) }
        #expect(all.allSatisfy { $0 >= -1 && $0 < 3 })
    }
}

@Suite struct HashingTests {
    @Test func xxh64MatchesPublishedAndIndependentGoldenVectors() {
        #expect(EmbedHash.xxh64("", seed: 0) == 0xef46db3751d8e999)
        #expect(EmbedHash.xxh64("abc", seed: 0) == 0x44bc2cf5ad770999)
        #expect(EmbedHash.xxh64("emb", seed: 0) == 0xbd1c9ec239faa8c6)
        #expect(EmbedHash.xxh64(UInt64(0), seed: 0) == 0x34c96acdcadb1bbb)
        #expect(EmbedHash.xxh64(UInt64(1), seed: 0) == 0x9f29cb17a2a49995)
        #expect(EmbedHash.xxh64(UInt64(42), seed: 7) == 0x1889de22bdd8972c)
        #expect(EmbedHash.xxh64(UInt64.max, seed: 123) == 0x7dc4757f25eca121)
    }

    @Test func slotsAndHashedRowKeysArePinned() {
        let spec = TableSpec(name: "emb", dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        let a = RowAddressing(spec: spec)
        #expect(a.slot(ofRowKey: 0) == 4092)
        #expect(a.slot(ofRowKey: 1) == 3632)
        #expect(a.slot(ofRowKey: 12345) == 5)
        #expect(a.slot(ofRowKey: 1 << 63) == 1078)
        var hashed = spec; hashed.hashMode = .fixedBudget; hashed.rowBudget = 1000; hashed.hashSeed = 7
        #expect(RowAddressing(spec: hashed).rowKey(987654321) == 488)
        #expect(a.rowKey(987654321) == 987654321)
    }
}

@Suite struct ClusterSpecTests {
    @Test func evenSplitGivesContiguousBalancedRanges() throws {
        let m = try SlotMap.evenSplit(shards: 3)
        #expect((0..<3).map { m.slotCount(of: $0) } == [1366, 1365, 1365])
        #expect(m.owner(ofSlot: 0) == 0 && m.owner(ofSlot: 4095) == 2)
    }

    @Test func explicitRangesMustCoverEverySlotOnce() throws {
        var spec = ClusterSpec(shards: [.init(address: "a:1"), .init(address: "b:2")])
        spec.slotRanges = [.init(first: 0, last: 99, shard: 1), .init(first: 100, last: 4095, shard: 0)]
        let m = try spec.slotMap()
        #expect(m.owner(ofSlot: 50) == 1 && m.owner(ofSlot: 100) == 0)
        spec.slotRanges = [.init(first: 0, last: 99, shard: 1), .init(first: 99, last: 4095, shard: 0)]
        #expect(throws: ClusterSpecError.self) { try spec.slotMap() }
        spec.slotRanges = [.init(first: 0, last: 4094, shard: 0)]
        #expect(throws: ClusterSpecError.self) { try spec.slotMap() }
        spec.slotRanges = [.init(first: 0, last: 4095, shard: 5)]
        #expect(throws: ClusterSpecError.self) { try spec.slotMap() }
    }

    @Test func tableSpecValidationNamesTheBadField() {
        var s = TableSpec(name: "ok", dim: 4, optimizer: OptimizerConfig(kind: .adam, learningRate: 0.1))
        #expect(throws: Never.self) { try s.validated() }
        s.name = "bad name!"
        #expect(throws: SpecError.self) { try s.validated() }
        s.name = "ok"; s.dim = 0
        #expect(throws: SpecError.self) { try s.validated() }
        s.dim = 4; s.hashMode = .fixedBudget
        #expect(throws: SpecError.self) { try s.validated() }
    }

    @Test func tableSpecRoundTripsThroughTheWire() throws {
        var s = TableSpec(name: "t", dim: 7, optimizer: OptimizerConfig(kind: .ftrl, learningRate: 0.05), initializer: .normal(mean: 0, stddev: 0.1, seed: 5))
        s.optimizer.l1 = 0.2; s.hashMode = .fixedBudget; s.rowBudget = 100; s.hashSeed = 3
        #expect(try TableSpec(wire: s.wire) == s)
    }
}

/// Hand-worked examples: K = 4, L = 3, codes (1, 2, 3).
@Suite struct SemanticIDTokenizerTests {
    func pieces(_ kind: SemanticIDTokenizer.Kind, budget: UInt64 = 1000, _ codes: [Int] = [1, 2, 3]) throws -> [UInt64] {
        try SemanticIDTokenizer(kind: kind, levels: 3, codebookSize: 4, budget: budget).pieces(codes)
    }

    @Test func unigramGivesEachLevelItsOwnRange() throws {
        // level 0: 0*4+1; level 1: 1*4+2; level 2: 2*4+3
        #expect(try pieces(.unigram) == [1, 6, 11])
        #expect(try SemanticIDTokenizer(kind: .unigram, levels: 3, codebookSize: 4, budget: 1000).keySpace == 12)
    }

    @Test func bigramsAreNonOverlappingWithAShorterLastGroup() throws {
        // (c1,c2) = 1*4+2 = 6 in [0,16); (c3) = 16 + 3 = 19 in [16,20)
        #expect(try pieces(.ngram(2)) == [6, 19])
        #expect(try SemanticIDTokenizer(kind: .ngram(2), levels: 3, codebookSize: 4, budget: 1000).keySpace == 20)
    }

    @Test func prefixNgramsOwnOneRangePerPrefixLength() throws {
        // (c1) = 1; (c1,c2) = 4 + 6 = 10; (c1,c2,c3) = 4 + 16 + (16+8+3) = 47
        #expect(try pieces(.prefix(3)) == [1, 10, 47])
        #expect(try pieces(.prefix(2)) == [1, 10])
        #expect(try SemanticIDTokenizer(kind: .prefix(3), levels: 3, codebookSize: 4, budget: 1000).keySpace == 84)
    }

    @Test func piecesBeyondTheBudgetAreHashedIntoIt() throws {
        let t = try SemanticIDTokenizer(kind: .prefix(3), levels: 3, codebookSize: 4, budget: 50)
        #expect(t.hashed)
        let p = try t.pieces([1, 2, 3])
        #expect(p.count == 3 && p.allSatisfy { $0 < 50 })
        #expect(try t.pieces([1, 2, 3]) == p, "deterministic")
        // Items sharing a prefix share that prefix's piece even when hashed.
        #expect(try t.pieces([1, 2, 0])[0...1] == p[0...1])
    }

    @Test func invalidCodesAreRejected() throws {
        #expect(throws: TokenizerError.self) { try pieces(.unigram, [1, 4, 0]) }
        #expect(throws: TokenizerError.self) { try pieces(.unigram, [1, 2]) }
        #expect(throws: TokenizerError.self) { try SemanticIDTokenizer(kind: .ngram(0), levels: 3, codebookSize: 4, budget: 10) }
    }
}
