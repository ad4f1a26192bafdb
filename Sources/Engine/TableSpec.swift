import Foundation
import EmbedPSWire
import Storage

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
        /// A serialized SentencePiece model (see `SentencePieceTokenizer`).
        case sentencePiece([UInt8])
    }
    public var tokenizer: Tokenizer
    public var levels: Int
    public var codebookSize: Int
    public var budget: UInt64
    public init(tokenizer: Tokenizer, levels: Int, codebookSize: Int, budget: UInt64) {
        self.tokenizer = tokenizer; self.levels = levels; self.codebookSize = codebookSize; self.budget = budget
    }
    public func makeTokenizer() throws(EngineError) -> PieceTokenizer {
        let kind: SemanticIDTokenizer.Kind
        switch tokenizer {
        case .unigram: kind = .unigram
        case .ngram(let n): kind = .ngram(n)
        case .prefix(let n): kind = .prefix(n)
        case .sentencePiece(let model):
            let spm = try SentencePieceTokenizer(model: model, levels: levels, codebookSize: codebookSize)
            guard UInt64(spm.vocabularySize) <= budget else {
                throw .invalidSpec(table: "-", message: "SentencePiece vocabulary \(spm.vocabularySize) exceeds the table budget \(budget)")
            }
            return .sentencePiece(spm)
        }
        return .ngram(try SemanticIDTokenizer(kind: kind, levels: levels, codebookSize: codebookSize, budget: budget))
    }
}

/// The tokenizer of a semantic table: n-gram layouts or a SentencePiece model. Thread-safe.
public enum PieceTokenizer: Sendable {
    case ngram(SemanticIDTokenizer)
    case sentencePiece(SentencePieceTokenizer)

    public func pieces(_ codes: [Int]) throws(EngineError) -> [UInt64] {
        switch self {
        case .ngram(let t): try t.pieces(codes)
        case .sentencePiece(let t): try t.pieces(codes)
        }
    }
    /// Most pieces one item can have.
    public var maxPiecesPerItem: Int {
        switch self { case .ngram(let t): t.piecesPerItem; case .sentencePiece(let t): t.levels }
    }
    public var codebookSize: Int {
        switch self { case .ngram(let t): t.codebookSize; case .sentencePiece(let t): t.codebookSize }
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

    public init(name: String, dim: Int, optimizer: OptimizerConfig, initializer: InitializerConfig = InitializerConfig()) {
        self.name = name; self.dim = dim; self.optimizer = optimizer; self.initializer = initializer
    }

    /// Floats of a row in memory: weights then optimizer state (then the sparse parts, see `SparseRowFormat`).
    public var rowFloats: Int { sparseFormat?.memoryFloats ?? dim * (1 + optimizer.kind.stateSlots) }

    /// Initial value of each optimizer state slot (what an inactive entry holds).
    public var stateFill: [Float] {
        switch optimizer.kind {
        case .sgd: []
        case .adagrad: [optimizer.initialAccumulator]
        case .adam: [0, 0]
        case .ftrl: [0, optimizer.initialAccumulator]
        }
    }
    /// The masked row layout of a dynamic-sparsity table (with growth scores) or of a DNIS table (meta words:
    /// push count, block).
    public var sparseFormat: SparseRowFormat? {
        if sparsity != nil { return SparseRowFormat(dim: dim, stateSlots: optimizer.kind.stateSlots, stateFill: stateFill) }
        if dnis != nil { return SparseRowFormat(dim: dim, stateSlots: optimizer.kind.stateSlots, stateFill: stateFill, growthScores: false, metaWords: 2) }
        return nil
    }

    public static let maxDim = 65536

    /// Checks every field; throws `EngineError.invalidSpec` naming the field.
    public func validated() throws(EngineError) -> TableSpec {
        func bad(_ m: String) -> EngineError { .invalidSpec(table: name, message: m) }
        guard !name.isEmpty, name.utf8.count <= 128,
              name.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 46 || $0 == 45 }) else {
            throw bad("table name must be 1-128 characters of [A-Za-z0-9_.-]")
        }
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
            do { _ = try s.makeTokenizer() } catch { throw bad("\(error)") }
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
        return self
    }
}

extension TableSpec {
    /// Builds and validates a spec from its wire form, filling optimizer defaults for zero fields.
    public init(wire w: WireTableSpec) throws(EngineError) {
        guard let kind = OptimizerKind(rawValue: UInt8(truncatingIfNeeded: w.optimizer.kind)), w.optimizer.kind <= 255 else {
            throw .invalidSpec(table: w.name, message: "optimizer kind \(w.optimizer.kind) is not SGD(1), ADAGRAD(2), ADAM(3) or FTRL(4)")
        }
        var o = OptimizerConfig(kind: kind, learningRate: w.optimizer.learningRate)
        o.initialAccumulator = w.optimizer.initialAccumulator
        if w.optimizer.beta1 != 0 { o.beta1 = w.optimizer.beta1 }
        if w.optimizer.beta2 != 0 { o.beta2 = w.optimizer.beta2 }
        if w.optimizer.epsilon != 0 { o.epsilon = w.optimizer.epsilon }
        if w.optimizer.beta != 0 { o.beta = w.optimizer.beta }
        o.l1 = w.optimizer.l1; o.l2 = w.optimizer.l2
        var i = InitializerConfig()
        switch w.initializer.kind {
        case 0, 1: i.kind = .zeros
        case 2: i.kind = .uniform
        case 3: i.kind = .normal
        default: throw .invalidSpec(table: w.name, message: "initializer kind \(w.initializer.kind) is not ZEROS(1), UNIFORM(2) or NORMAL(3)")
        }
        i.low = w.initializer.low; i.high = w.initializer.high; i.mean = w.initializer.mean
        i.stddev = w.initializer.stddev; i.seed = w.initializer.seed
        self.init(name: w.name, dim: Int(w.dim), optimizer: o, initializer: i)
        switch w.hashMode {
        case 0, 1: hashMode = .collisionFree
        case 2: hashMode = .fixedBudget
        default: throw .invalidSpec(table: w.name, message: "hash mode \(w.hashMode) is not COLLISION_FREE(1) or FIXED_BUDGET(2)")
        }
        rowBudget = w.rowBudget; hashSeed = w.hashSeed
        if let ws = w.semantic {
            let n = Int(ws.ngram)
            let kind: SemanticConfig.Tokenizer
            switch ws.tokenizer {
            case 1: kind = .unigram
            case 2: kind = .ngram(n)
            case 3: kind = .prefix(n)
            case 4: kind = .sentencePiece(ws.sentencePieceModel)
            default: throw .invalidSpec(table: w.name, message: "tokenizer \(ws.tokenizer) is not UNIGRAM(1), NGRAM(2), PREFIX_NGRAM(3) or SENTENCEPIECE(4)")
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

    public var wire: WireTableSpec {
        var w = WireTableSpec()
        w.name = name; w.dim = UInt32(dim); w.hashMode = UInt32(hashMode.rawValue); w.rowBudget = rowBudget; w.hashSeed = hashSeed
        w.optimizer.kind = UInt32(optimizer.kind.rawValue); w.optimizer.learningRate = optimizer.learningRate
        w.optimizer.initialAccumulator = optimizer.initialAccumulator; w.optimizer.beta1 = optimizer.beta1
        w.optimizer.beta2 = optimizer.beta2; w.optimizer.epsilon = optimizer.epsilon; w.optimizer.l1 = optimizer.l1
        w.optimizer.l2 = optimizer.l2; w.optimizer.beta = optimizer.beta
        w.initializer.kind = UInt32(initializer.kind.rawValue); w.initializer.low = initializer.low
        w.initializer.high = initializer.high; w.initializer.mean = initializer.mean
        w.initializer.stddev = initializer.stddev; w.initializer.seed = initializer.seed
        if let s = semantic {
            var ws = WireSemanticConfig()
            switch s.tokenizer {
            case .unigram: ws.tokenizer = 1
            case .ngram(let n): ws.tokenizer = 2; ws.ngram = UInt32(n)
            case .prefix(let n): ws.tokenizer = 3; ws.ngram = UInt32(n)
            case .sentencePiece(let model): ws.tokenizer = 4; ws.sentencePieceModel = model
            }
            ws.levels = UInt32(s.levels); ws.codebookSize = UInt32(s.codebookSize); ws.budget = s.budget
            w.semantic = ws
        }
        if let d = sparsity {
            var ws = WireSparsityConfig()
            ws.density = d.density; ws.seed = d.seed; ws.growthDecay = d.growthDecay; ws.regrowInterval = UInt32(d.regrowInterval)
            ws.updateFractionStart = d.fractionStart; ws.updateFractionEnd = d.fractionEnd; ws.regrowRounds = UInt32(d.rounds)
            w.sparsity = ws
        }
        if let d = dnis {
            var wd = WireDnisConfig()
            wd.blocks = UInt32(d.blocks); wd.blockSizes = d.blockSizes; wd.alphaLearningRate = d.alphaLearningRate; wd.alphaL1 = d.alphaL1 == 0 ? -1 : d.alphaL1
            w.dnis = wd
        }
        return w
    }
}
