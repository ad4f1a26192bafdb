import Foundation
import EmbedPSWire

/// Server-side sparse optimizer of a table.
public enum OptimizerKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case sgd = 1, adagrad = 2, adam = 3, ftrl = 4
    /// Float slots of optimizer state per weight.
    public var stateSlots: Int {
        switch self { case .sgd: 0; case .adagrad: 1; case .adam: 2; case .ftrl: 2 }
    }
    public var description: String {
        switch self { case .sgd: "sgd"; case .adagrad: "adagrad"; case .adam: "adam"; case .ftrl: "ftrl" }
    }
    public init?(name: String) {
        guard let k = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = k
    }
}

public enum InitializerKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case zeros = 1, uniform = 2, normal = 3
    public var description: String {
        switch self { case .zeros: "zeros"; case .uniform: "uniform"; case .normal: "normal" }
    }
}

public enum HashMode: UInt8, Sendable, CustomStringConvertible {
    case collisionFree = 1, fixedBudget = 2
    public var description: String { self == .collisionFree ? "collision-free" : "fixed-budget" }
}

/// Optimizer hyper-parameters with defaults filled in. Invariant (after `TableSpec.validated`): finite,
/// learningRate > 0, betas in [0, 1), epsilon > 0, l1/l2 >= 0.
public struct OptimizerConfig: Sendable, Equatable {
    public var kind: OptimizerKind
    public var learningRate: Float
    public var initialAccumulator: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var l1: Float = 0
    public var l2: Float = 0
    public var beta: Float = 1
    public init(kind: OptimizerKind, learningRate: Float) {
        self.kind = kind; self.learningRate = learningRate
        if kind == .adagrad { epsilon = 1e-10 }
    }
}

public struct InitializerConfig: Sendable, Equatable {
    public var kind: InitializerKind = .zeros
    public var low: Float = 0
    public var high: Float = 0
    public var mean: Float = 0
    public var stddev: Float = 0
    public var seed: UInt64 = 0
    public init() {}
    public static func uniform(_ low: Float, _ high: Float, seed: UInt64) -> InitializerConfig {
        var c = InitializerConfig(); c.kind = .uniform; c.low = low; c.high = high; c.seed = seed; return c
    }
    public static func normal(mean: Float, stddev: Float, seed: UInt64) -> InitializerConfig {
        var c = InitializerConfig(); c.kind = .normal; c.mean = mean; c.stddev = stddev; c.seed = seed; return c
    }
}

/// A semantic-ID table's tokenizer settings.
public struct SemanticConfig: Sendable, Equatable {
    public enum Tokenizer: Sendable, Equatable {
        case unigram, ngram(Int), prefix(Int)
        /// A serialized SentencePiece model (checked by the shard, which links SentencePiece).
        case sentencePiece([UInt8])
    }
    public var tokenizer: Tokenizer
    public var levels: Int
    public var codebookSize: Int
    public var budget: UInt64
    public init(tokenizer: Tokenizer, levels: Int, codebookSize: Int, budget: UInt64) {
        self.tokenizer = tokenizer; self.levels = levels; self.codebookSize = codebookSize; self.budget = budget
    }
}

/// Dynamic sparse learning settings of a table (DSL). Invariant (after `TableSpec.validated`): 0 < density < 1,
/// 0 < growthDecay <= 1, 0 < fractionEnd <= fractionStart <= 1, regrowInterval >= 1, rounds >= 1.
public struct SparsityConfig: Sendable, Equatable {
    public var density: Float
    public var seed: UInt64 = 0
    /// Per-push decay of an inactive entry's accumulated |gradient|.
    public var growthDecay: Float = 0.99
    /// Pushes between prune-and-regrow steps (the coordinator's schedule).
    public var regrowInterval: Int = 1000
    public var fractionStart: Float = 0.5
    public var fractionEnd: Float = 0.005
    /// Rounds over which the update fraction decays from start to end.
    public var rounds: Int = 100
    public init(density: Float) { self.density = density }

    /// Active entries of a newly created row: round(density * dim), at least 1.
    public func activePerRow(dim: Int) -> Int { max(1, min(dim, Int((Double(density) * Double(dim)).rounded()))) }

    /// Share of active entries moved at `round` (0-based): cosine decay from fractionStart to fractionEnd over
    /// `rounds`, then fractionEnd.
    public func updateFraction(round: Int) -> Double {
        let t = min(1, Double(round) / Double(max(1, rounds)))
        return Double(fractionEnd) + 0.5 * Double(fractionStart - fractionEnd) * (1 + cos(Double.pi * t))
    }
}

/// DNIS mixed-dimension settings of a table. Invariant (after `TableSpec.validated`): 1 <= blocks <= 64;
/// blockSizes empty (equal splits) or blocks - 1 positive sizes (the last block takes the rest);
/// alphaLearningRate > 0; alphaL1 >= 0.
public struct DnisConfig: Sendable, Equatable {
    public var blocks: Int
    public var blockSizes: [UInt64] = []
    public var alphaLearningRate: Float = 0.01
    public var alphaL1: Float = 1e-5
    public init(blocks: Int = 10) { self.blocks = blocks }

    /// Rows per block (most frequent first) for `rows` rows ranked by frequency; sums to `rows`.
    public func blockRows(total rows: UInt64) -> [UInt64] {
        if blockSizes.isEmpty {
            let s = UInt64(blocks)
            return (0..<blocks).map { rows / s + (UInt64($0) < rows % s ? 1 : 0) }
        }
        var left = rows
        var out: [UInt64] = []
        for size in blockSizes { let n = min(size, left); out.append(n); left -= n }
        out.append(left)
        return out
    }
}

/// Feature admission of a table (see `AdmissionConfig` in the proto). Invariant (after validation):
/// probability in [0, 1] (0 = unused); sketchWidth a power of two in [1024, 2^26].
public struct AdmissionConfig: Sendable, Equatable, Codable {
    /// Pushes of an id before its row is created (0 or 1: no threshold).
    public var minCount: Int = 0
    /// Chance that a counted push creates the row (0: unused).
    public var probability: Float = 0
    public var sketchWidth: Int = 1 << 20
    public init(minCount: Int = 0, probability: Float = 0) { self.minCount = minCount; self.probability = probability }
}

/// Row eviction of a table (see `EvictionConfig` in the proto). Invariant (after validation): at least one
/// rule set; minL2Norm finite and >= 0; intervalSeconds >= 1.
public struct EvictionConfig: Sendable, Equatable, Codable {
    public enum Policy: Int, Sendable, Codable { case leastRecentlyUpdated = 0, leastFrequentlyUpdated = 1 }
    public var ttlUpdates: UInt64 = 0
    public var ttlSeconds: UInt64 = 0
    public var maxRows: UInt64 = 0
    public var policy: Policy = .leastRecentlyUpdated
    public var minL2Norm: Float = 0
    public var intervalSeconds: Int = 60
    public init() {}
    /// Whether any rule is set.
    public var active: Bool { ttlUpdates > 0 || ttlSeconds > 0 || maxRows > 0 || minL2Norm > 0 }
}

/// A validated table definition. Invariant: every value satisfies the rules in `validated()`; two shards
/// holding the same name hold equal specs.
public struct TableSpec: Sendable, Equatable {
    public var name: String
    public var dim: Int
    public var hashMode: HashMode = .collisionFree
    public var rowBudget: UInt64 = 0
    public var hashSeed: UInt64 = 0
    public var optimizer: OptimizerConfig
    public var initializer = InitializerConfig()
    /// Set for a semantic-ID table: rows are sub-pieces of items' codes (keys < budget).
    public var semantic: SemanticConfig? = nil
    /// Set for a dynamic-sparsity table: rows keep a fixed budget of active entries.
    public var sparsity: SparsityConfig? = nil
    /// Set for a DNIS table: frequency blocks with learned per-dimension weights, then pruning.
    public var dnis: DnisConfig? = nil
    /// Set: rows are created only for ids pushed often enough.
    public var admission: AdmissionConfig? = nil
    /// Set: rows are deleted by time-to-live, per-shard budget or norm.
    public var eviction: EvictionConfig? = nil

    public init(name: String, dim: Int, optimizer: OptimizerConfig, initializer: InitializerConfig = InitializerConfig()) {
        self.name = name; self.dim = dim; self.optimizer = optimizer; self.initializer = initializer
    }

    /// Initial value of each optimizer state slot (what an inactive entry holds).
    public var stateFill: [Float] {
        switch optimizer.kind {
        case .sgd: []
        case .adagrad: [optimizer.initialAccumulator]
        case .adam: [0, 0]
        case .ftrl: [0, optimizer.initialAccumulator]
        }
    }
    public static let maxDim = 65536

    /// Checks every field (a SentencePiece model is checked by the shard, which can load it); throws
    /// `SpecError` naming the field.
    public func validated() throws(SpecError) -> TableSpec {
        func bad(_ m: String) -> SpecError { SpecError(table: name, message: m) }
        do { try Names.check(name, as: .table) } catch { throw SpecError(table: name, message: error.description, reason: .invalidName) }
        guard dim >= 1, dim <= Self.maxDim else { throw bad("dim \(dim) must be 1...\(Self.maxDim)") }
        if hashMode == .fixedBudget, rowBudget == 0 { throw bad("fixed-budget hashing needs row_budget > 0") }
        let o = optimizer
        guard o.learningRate.isFinite, o.learningRate > 0 else { throw bad("learning_rate \(o.learningRate) must be > 0") }
        for (n, v) in [("initial_accumulator", o.initialAccumulator), ("epsilon", o.epsilon), ("l1", o.l1), ("l2", o.l2), ("beta", o.beta)] {
            guard v.isFinite, v >= 0 else { throw bad("\(n) \(v) must be finite and >= 0") }
        }
        guard o.beta1 >= 0, o.beta1 < 1, o.beta2 >= 0, o.beta2 < 1 else { throw bad("beta1/beta2 must be in [0, 1)") }
        if o.kind == .adam || o.kind == .adagrad { guard o.epsilon > 0 else { throw bad("epsilon must be > 0") } }
        let i = initializer
        switch i.kind {
        case .zeros: break
        case .uniform: guard i.low.isFinite, i.high.isFinite, i.low < i.high else { throw bad("uniform initializer needs low < high") }
        case .normal: guard i.mean.isFinite, i.stddev.isFinite, i.stddev > 0 else { throw bad("normal initializer needs stddev > 0") }
        }
        if let s = semantic {
            guard hashMode == .collisionFree else { throw bad("a semantic table addresses rows by piece key: use collision-free hashing") }
            guard s.levels >= 1, s.levels <= 16, s.codebookSize >= 2, s.codebookSize <= 65536 else {
                throw bad("semantic levels must be 1...16 and codebook size 2...65536")
            }
            switch s.tokenizer {
            case .unigram: break
            case .ngram(let n), .prefix(let n): guard n >= 1 else { throw bad("semantic ngram length \(n) must be >= 1") }
            case .sentencePiece(let model): guard !model.isEmpty else { throw bad("a SENTENCEPIECE table needs its serialized model") }
            }
            guard s.budget >= 1 else { throw bad("semantic budget must be >= 1") }
        }
        if let d = dnis {
            guard sparsity == nil, semantic == nil else { throw bad("a DNIS table cannot also be a sparsity or semantic table") }
            guard d.blocks >= 1, d.blocks <= 64 else { throw bad("dnis blocks \(d.blocks) must be 1...64") }
            guard d.blockSizes.isEmpty || (d.blockSizes.count == d.blocks - 1 && d.blockSizes.allSatisfy { $0 > 0 }) else {
                throw bad("dnis block_sizes needs \(d.blocks - 1) positive sizes (the last block takes the rest) or none (equal splits)")
            }
            guard d.alphaLearningRate.isFinite, d.alphaLearningRate > 0, d.alphaL1.isFinite, d.alphaL1 >= 0 else {
                throw bad("dnis alpha_learning_rate must be > 0 and alpha_l1 >= 0")
            }
        }
        if let d = sparsity {
            guard d.density > 0, d.density < 1 else { throw bad("sparsity density \(d.density) must be in (0, 1); leave sparsity unset for a dense table") }
            guard d.growthDecay > 0, d.growthDecay <= 1 else { throw bad("sparsity growth_decay \(d.growthDecay) must be in (0, 1]") }
            guard d.fractionEnd > 0, d.fractionEnd <= d.fractionStart, d.fractionStart <= 1 else {
                throw bad("sparsity update fractions must satisfy 0 < end (\(d.fractionEnd)) <= start (\(d.fractionStart)) <= 1")
            }
            guard d.regrowInterval >= 1, d.rounds >= 1, d.regrowInterval <= Int(UInt32.max), d.rounds <= Int(UInt32.max) else { throw bad("sparsity regrow_interval and regrow_rounds must be >= 1") }
        }
        if let a = admission {
            guard a.minCount >= 0, a.minCount <= Int(UInt16.max) else { throw bad("admission min_count \(a.minCount) must be 0...65535") }
            guard a.probability.isFinite, a.probability >= 0, a.probability <= 1 else { throw bad("admission probability \(a.probability) must be in [0, 1] (0: unused)") }
            guard a.minCount > 1 || a.probability > 0 else { throw bad("admission needs min_count >= 2 or a probability in (0, 1]; leave admission unset to admit every id") }
            guard a.sketchWidth >= 1024, a.sketchWidth <= 1 << 26, a.sketchWidth & (a.sketchWidth - 1) == 0 else {
                throw bad("admission sketch_width \(a.sketchWidth) must be a power of two in [1024, 67108864]")
            }
            guard hashMode == .collisionFree else { throw bad("admission counts ids of collision-free tables (a fixed-budget table has all its rows from the start)") }
        }
        if let e = eviction {
            guard e.active else { throw bad("eviction needs ttl_updates, ttl_seconds, max_rows or min_l2_norm; leave eviction unset to keep every row") }
            guard e.minL2Norm.isFinite, e.minL2Norm >= 0 else { throw bad("eviction min_l2_norm \(e.minL2Norm) must be finite and >= 0") }
            guard e.intervalSeconds >= 1, e.intervalSeconds <= 86400 else { throw bad("eviction interval_seconds \(e.intervalSeconds) must be 1...86400") }
            guard semantic == nil else { throw bad("a semantic table's rows are shared pieces of many items: eviction is not supported for it") }
        }
        return self
    }
}

extension TableSpec {
    /// Builds and validates a spec from its wire form, filling optimizer defaults for zero fields.
    public init(wire w: Wire.TableSpec) throws(SpecError) {
        func bad(_ m: String) -> SpecError { SpecError(table: w.name, message: m) }
        do { try Names.check(w.name, as: .table) } catch { throw SpecError(table: w.name, message: error.description, reason: .invalidName) }
        let wo = w.optimizer ?? Wire.OptimizerConfig()
        guard let kind = OptimizerKind(rawValue: UInt8(truncatingIfNeeded: wo.kind.rawValue)), (1...4).contains(wo.kind.rawValue) else {
            throw bad("optimizer kind \(wo.kind) is not SGD(1), ADAGRAD(2), ADAM(3) or FTRL(4)")
        }
        var o = OptimizerConfig(kind: kind, learningRate: wo.learningRate)
        o.initialAccumulator = wo.initialAccumulator
        if wo.beta1 != 0 { o.beta1 = wo.beta1 }
        if wo.beta2 != 0 { o.beta2 = wo.beta2 }
        if wo.epsilon != 0 { o.epsilon = wo.epsilon }
        if wo.beta != 0 { o.beta = wo.beta }
        o.l1 = wo.l1; o.l2 = wo.l2
        let wi = w.initializer ?? Wire.InitializerConfig()
        var i = InitializerConfig()
        switch wi.kind.rawValue {
        case 0, 1: i.kind = .zeros
        case 2: i.kind = .uniform
        case 3: i.kind = .normal
        default: throw bad("initializer kind \(wi.kind) is not ZEROS(1), UNIFORM(2) or NORMAL(3)")
        }
        i.low = wi.low; i.high = wi.high; i.mean = wi.mean; i.stddev = wi.stddev; i.seed = wi.seed
        self.init(name: w.name, dim: Int(w.dim), optimizer: o, initializer: i)
        switch w.hashMode.rawValue {
        case 0, 1: hashMode = .collisionFree
        case 2: hashMode = .fixedBudget
        default: throw bad("hash mode \(w.hashMode) is not COLLISION_FREE(1) or FIXED_BUDGET(2)")
        }
        rowBudget = w.rowBudget; hashSeed = w.hashSeed
        if let ws = w.semantic {
            let n = Int(ws.ngram)
            let kind: SemanticConfig.Tokenizer
            switch ws.tokenizer.rawValue {
            case 1: kind = .unigram
            case 2: kind = .ngram(n)
            case 3: kind = .prefix(n)
            case 4: kind = .sentencePiece(ws.sentencepieceModel)
            default: throw bad("tokenizer \(ws.tokenizer) is not UNIGRAM(1), NGRAM(2), PREFIX_NGRAM(3) or SENTENCEPIECE(4)")
            }
            semantic = SemanticConfig(tokenizer: kind, levels: Int(ws.levels), codebookSize: Int(ws.codebookSize), budget: ws.budget)
        }
        if let wd = w.dnis {
            var d = DnisConfig(blocks: wd.blocks == 0 ? 10 : Int(wd.blocks))
            d.blockSizes = wd.blockSizes
            if wd.alphaLearningRate != 0 { d.alphaLearningRate = wd.alphaLearningRate }
            d.alphaL1 = wd.alphaL1 == 0 ? 1e-5 : max(0, wd.alphaL1)
            dnis = d
        }
        if let wa = w.admission {
            var a = AdmissionConfig(minCount: Int(wa.minCount), probability: wa.probability)
            if wa.sketchWidth != 0 { a.sketchWidth = Int(wa.sketchWidth) }
            admission = a
        }
        if let we = w.eviction {
            var e = EvictionConfig()
            e.ttlUpdates = we.ttlUpdates; e.ttlSeconds = we.ttlSeconds; e.maxRows = we.maxRows; e.minL2Norm = we.minL2Norm
            guard let p = EvictionConfig.Policy(rawValue: Int(we.policy.rawValue)) else {
                throw bad("eviction policy \(we.policy) is not LEAST_RECENTLY_UPDATED(0) or LEAST_FREQUENTLY_UPDATED(1)")
            }
            e.policy = p
            if we.intervalSeconds != 0 { e.intervalSeconds = Int(we.intervalSeconds) }
            eviction = e
        }
        if let ws = w.sparsity {
            var d = SparsityConfig(density: ws.density)
            d.seed = ws.seed
            if ws.growthDecay != 0 { d.growthDecay = ws.growthDecay }
            if ws.regrowInterval != 0 { d.regrowInterval = Int(ws.regrowInterval) }
            if ws.updateFractionStart != 0 { d.fractionStart = ws.updateFractionStart }
            if ws.updateFractionEnd != 0 { d.fractionEnd = ws.updateFractionEnd }
            if ws.regrowRounds != 0 { d.rounds = Int(ws.regrowRounds) }
            sparsity = d
        }
        self = try validated()
    }

    /// The wire form (what `init(wire:)` reads back to an equal spec).
    public var wire: Wire.TableSpec {
        var w = Wire.TableSpec()
        w.name = name; w.dim = UInt32(dim); w.hashMode = Wire.HashMode(rawValue: Int32(hashMode.rawValue)); w.rowBudget = rowBudget; w.hashSeed = hashSeed
        w.optimizer = Wire.OptimizerConfig(kind: Wire.OptimizerKind(rawValue: Int32(optimizer.kind.rawValue)), learningRate: optimizer.learningRate,
                                           initialAccumulator: optimizer.initialAccumulator, beta1: optimizer.beta1, beta2: optimizer.beta2,
                                           epsilon: optimizer.epsilon, l1: optimizer.l1, l2: optimizer.l2, beta: optimizer.beta)
        w.initializer = Wire.InitializerConfig(kind: Wire.InitializerKind(rawValue: Int32(initializer.kind.rawValue)), low: initializer.low,
                                               high: initializer.high, mean: initializer.mean, stddev: initializer.stddev, seed: initializer.seed)
        if let s = semantic {
            var ws = Wire.SemanticConfig()
            switch s.tokenizer {
            case .unigram: ws.tokenizer = .unigram
            case .ngram(let n): ws.tokenizer = .ngram; ws.ngram = UInt32(n)
            case .prefix(let n): ws.tokenizer = .prefixNgram; ws.ngram = UInt32(n)
            case .sentencePiece(let model): ws.tokenizer = .sentencepiece; ws.sentencepieceModel = model
            }
            ws.levels = UInt32(s.levels); ws.codebookSize = UInt32(s.codebookSize); ws.budget = s.budget
            w.semantic = ws
        }
        if let d = sparsity {
            w.sparsity = Wire.SparsityConfig(density: d.density, seed: d.seed, growthDecay: d.growthDecay, regrowInterval: UInt32(d.regrowInterval),
                                             updateFractionStart: d.fractionStart, updateFractionEnd: d.fractionEnd, regrowRounds: UInt32(d.rounds))
        }
        if let d = dnis {
            w.dnis = Wire.DnisConfig(blocks: UInt32(d.blocks), blockSizes: d.blockSizes, alphaLearningRate: d.alphaLearningRate, alphaL1: d.alphaL1 == 0 ? -1 : d.alphaL1)
        }
        if let a = admission {
            w.admission = Wire.AdmissionConfig(minCount: UInt32(a.minCount), probability: a.probability, sketchWidth: UInt32(a.sketchWidth))
        }
        if let e = eviction {
            w.eviction = Wire.EvictionConfig(ttlUpdates: e.ttlUpdates, ttlSeconds: e.ttlSeconds, maxRows: e.maxRows,
                                             policy: Wire.EvictionPolicy(rawValue: Int32(e.policy.rawValue)), minL2Norm: e.minL2Norm,
                                             intervalSeconds: UInt32(e.intervalSeconds))
        }
        return w
    }
}
