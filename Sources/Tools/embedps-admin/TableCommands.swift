import Foundation
import CLI
import Client
import Vocabulary
import EmbedPSWire

/// Table management.
let tableCommands: [AdminCommand] = [
    AdminCommand(words: ["table", "list"], usage: "  table list                     table names") { c in
        let names = try await c.admin.listTables()
        if c.json { print(jsonText(names)) } else { names.forEach { print($0) } }
    },
    AdminCommand(words: ["table", "describe"], usage: "  table describe NAME            per-shard rows, cache, dirty rows, disk, log and snapshot bytes, request counts") { c in
        let name = c.name("table NAME")
        let stats = try await c.admin.describeTable(name).enumerated().map { TableStatsJSON(shard: $0.offset, $0.element) }
        if c.json { print(jsonText(stats)); return }
        print(renderTable(["shard", "table", "dim", "optimizer", "rows", "cached", "dirty", "cache cap", "disk", "log", "snapshot", "pulls", "pushes", "checkpoints"],
                          stats.map { [String($0.shard), $0.table, String($0.dim), $0.optimizer, String($0.rows), String($0.cachedRows), String($0.dirtyRows),
                                       String($0.cacheCapacityRows), formatBytes($0.bytesOnDisk), formatBytes($0.logBytes), formatBytes($0.snapshotBytes), String($0.pulls), String($0.pushes), String($0.checkpoints)] }))
        if stats.contains(where: { $0.rowsAdmitted != nil || $0.rowsEvicted != nil }) {
            print("")
            print(renderTable(["shard", "rows admitted", "pushes refused", "sketch", "rows evicted", "eviction passes"], stats.map {
                [String($0.shard), $0.rowsAdmitted.map(String.init) ?? "-", $0.pushesRefused.map(String.init) ?? "-",
                 $0.admissionSketchBytes.map { formatBytes($0) } ?? "-", $0.rowsEvicted.map(String.init) ?? "-", $0.evictionPasses.map(String.init) ?? "-"]
            }))
        }
        if let s = stats.first, let items = s.semanticItems {
            print("\nsemantic table: \(items) items registered, \(String(format: "%.2f", s.piecesPerItem ?? 0)) pieces per item, " +
                  "\(s.pieceRowsUsed ?? 0) piece rows used, \(s.pieceCollisions ?? 0) pieces sharing a row through hashing")
        }
    },
    AdminCommand(words: ["table", "create"], usage: """
      table create NAME --dim N [--optimizer sgd|adagrad|adam|ftrl] [--lr X] [--init zeros|uniform|normal]
                        [--low X --high X | --mean X --stddev X] [--seed N] [--hash collision-free|fixed-budget]
                        [--row-budget H] [--hash-seed N] [--initial-accumulator X] [--l1 X] [--l2 X]
                        [--semantic unigram|ngram|prefix|spm --rows N --levels L --codes K [--ngram N]
                         [--spm-model PATH]]   a semantic-ID table of N piece rows
                        [--density D [--regrow-interval P] [--regrow-rounds R] [--growth-decay X]]
                                     a dynamic-sparsity table: D of each row's entries active
                        [--dnis-blocks S [--dnis-block-sizes N1,N2,...] [--alpha-lr X]]
                                     a DNIS mixed-dimension table with S frequency blocks
                        [--admit-min-count N] [--admit-probability P] [--admit-sketch-width W]
                                     create a row only once its id was pushed N times (count-min sketch of
                                     4 x W counters per shard) and/or with probability P per push
                        [--evict-ttl-updates N] [--evict-ttl-seconds S] [--evict-max-rows N]
                        [--evict-policy lru|lfu] [--evict-min-norm X] [--evict-interval S]
                                     delete rows not updated in the last N pushes / S seconds, beyond N rows
                                     per shard (least recently / frequently updated first), or of small norm
    """) { c in
        let admin = c.admin
        let name = c.name("table NAME")
        let spec = try tableSpec(name: name, c.o)
        try await admin.createTable(spec)
        if c.json { print(jsonText(["created": name])) } else { print("table \(name) created on \(admin.shardCount) shards (dim \(spec.dim), \(spec.optimizer.kind), lr \(spec.optimizer.learningRate))") }
    },
    AdminCommand(words: ["table", "drop"], usage: "  table drop NAME                drop the table and all its rows on every shard") { c in
        let name = c.name("table NAME")
        let dropped = try await c.admin.dropTable(name)
        if c.json { print(jsonText(["dropped": dropped])) } else { print(dropped ? "table \(name) dropped" : "no table \(name)") }
    },
]

/// Builds a table spec from `table create` options.
func tableSpec(name: String, _ o: Options) throws -> TableSpec {
    guard let kind = OptimizerKind(name: o.string("optimizer", default: "adagrad")) else { o.fail("--optimizer must be sgd, adagrad, adam or ftrl") }
    var opt = OptimizerConfig(kind: kind, learningRate: Float(o.double("lr", default: 0.05)))
    opt.initialAccumulator = Float(o.double("initial-accumulator", default: kind == .adagrad ? 0.1 : 0))
    opt.l1 = Float(o.double("l1", default: 0)); opt.l2 = Float(o.double("l2", default: 0))
    let seed = UInt64(o.int("seed", default: 1))
    let initializer: InitializerConfig
    switch o.string("init", default: "uniform") {
    case "zeros": initializer = InitializerConfig()
    case "uniform": initializer = .uniform(Float(o.double("low", default: -0.05)), Float(o.double("high", default: 0.05)), seed: seed)
    case "normal": initializer = .normal(mean: Float(o.double("mean", default: 0)), stddev: Float(o.double("stddev", default: 0.01)), seed: seed)
    default: o.fail("--init must be zeros, uniform or normal")
    }
    var spec = TableSpec(name: name, dim: o.int("dim", default: 0), optimizer: opt, initializer: initializer)
    switch o.string("hash", default: "collision-free") {
    case "collision-free": break
    case "fixed-budget":
        spec.hashMode = .fixedBudget
        spec.rowBudget = UInt64(o.int("row-budget", default: 0)); spec.hashSeed = UInt64(o.int("hash-seed", default: 0))
    default: o.fail("--hash must be collision-free or fixed-budget")
    }
    if let kind = o.string("semantic") {
        let levels = o.int("levels", default: 3), codes = o.int("codes", default: 256), n = o.int("ngram", default: levels)
        let budget = UInt64(o.int("rows", default: 0))
        guard budget > 0 else { o.fail("a semantic table needs --rows N (its row budget)") }
        let tokenizer: SemanticConfig.Tokenizer
        switch kind {
        case "unigram": tokenizer = .unigram
        case "ngram": tokenizer = .ngram(n)
        case "prefix": tokenizer = .prefix(n)
        case "spm":
            guard let path = o.string("spm-model"), let model = FileManager.default.contents(atPath: path) else {
                o.fail("--semantic spm needs --spm-model PATH (a model written by 'semantic-ids build --spm-vocabulary N')")
            }
            tokenizer = .sentencePiece([UInt8](model))
        default: o.fail("--semantic must be unigram, ngram, prefix or spm")
        }
        spec.semantic = SemanticConfig(tokenizer: tokenizer, levels: levels, codebookSize: codes, budget: budget)
    }
    if let blocks = o.string("dnis-blocks") {
        guard let n = Int(blocks) else { o.fail("--dnis-blocks must be an integer (1...64)") }
        var c = DnisConfig(blocks: n)
        if let sizes = o.string("dnis-block-sizes") {
            let parsed = sizes.split(separator: ",").map { UInt64($0) }
            guard parsed.allSatisfy({ $0 != nil }) else { o.fail("--dnis-block-sizes takes comma-separated row counts, e.g. 1000,5000") }
            c.blockSizes = parsed.compactMap { $0 }
        }
        c.alphaLearningRate = Float(o.double("alpha-lr", default: Double(c.alphaLearningRate)))
        spec.dnis = c
    }
    if let density = o.string("density") {
        guard let d = Float(density) else { o.fail("--density must be a number in (0, 1)") }
        var c = SparsityConfig(density: d)
        c.seed = UInt64(o.int("sparsity-seed", default: Int(seed)))
        c.regrowInterval = o.int("regrow-interval", default: c.regrowInterval)
        c.rounds = o.int("regrow-rounds", default: c.rounds)
        c.growthDecay = Float(o.double("growth-decay", default: Double(c.growthDecay)))
        spec.sparsity = c
    }
    if o.string("admit-min-count") != nil || o.string("admit-probability") != nil {
        var a = AdmissionConfig(minCount: o.int("admit-min-count", default: 0), probability: Float(o.double("admit-probability", default: 0)))
        a.sketchWidth = o.int("admit-sketch-width", default: a.sketchWidth)
        spec.admission = a
    }
    let evictKeys = ["evict-ttl-updates", "evict-ttl-seconds", "evict-max-rows", "evict-min-norm"]
    if evictKeys.contains(where: { o.string($0) != nil }) {
        var e = EvictionConfig()
        e.ttlUpdates = UInt64(o.int("evict-ttl-updates", default: 0)); e.ttlSeconds = UInt64(o.int("evict-ttl-seconds", default: 0))
        e.maxRows = UInt64(o.int("evict-max-rows", default: 0)); e.minL2Norm = Float(o.double("evict-min-norm", default: 0))
        e.intervalSeconds = o.int("evict-interval", default: e.intervalSeconds)
        switch o.string("evict-policy", default: "lru") {
        case "lru": e.policy = .leastRecentlyUpdated
        case "lfu": e.policy = .leastFrequentlyUpdated
        default: o.fail("--evict-policy must be lru or lfu")
        }
        spec.eviction = e
    }
    return try spec.validated()
}
