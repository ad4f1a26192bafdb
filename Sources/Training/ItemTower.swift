import Foundation
import Client
import Vocabulary
import SemanticTokenizers
import SemanticID

/// How a model represents items on EmbedPS: a hashed-id table, a semantic-ID table (an item is the sum of
/// its sub-piece rows; codes from RQ-k-means over content embeddings), or an id table plus a SentencePiece
/// semantic table, summed (Singh et al.: ids and semantic pieces together).
public struct ItemTowerConfiguration: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case id, unigram, prefix, spm
        case idSpm = "id+spm"
        var usesIds: Bool { self == .id || self == .idSpm }
        var usesSemantic: Bool { self != .id }
    }
    public var kind: Kind = .id
    /// Rows of the item side; 0 = a collision-free id table (one row per item). With id+spm, half each.
    public var rowBudget = 0
    /// Content embeddings (float32 file + ids file) for semantic towers.
    public var embeddingsPath: String? = nil
    public var embeddingIdsPath: String? = nil
    public var levels = 3
    public var codebookSize = 64
    public init() {}
}

/// The item side of a model: pulls item vectors and pushes item gradients through the configured tables.
final class ItemTower: @unchecked Sendable {
    let config: ItemTowerConfiguration
    let client: EmbedPSClient
    let dim: Int
    let idTable: String?
    let semanticTable: String?
    /// Rows the item side may use (reported).
    let rows: Int

    private init(config: ItemTowerConfiguration, client: EmbedPSClient, dim: Int, idTable: String?, semanticTable: String?, rows: Int) {
        self.config = config; self.client = client; self.dim = dim; self.idTable = idTable; self.semanticTable = semanticTable; self.rows = rows
    }

    /// Creates the tables (and, for semantic towers, builds codes, trains SentencePiece and registers items).
    static func setUp(_ config: ItemTowerConfiguration, trainer t: TrainerConfiguration, client: EmbedPSClient, data: InteractionData,
                      split: LeaveLastOutSplit, log: (String) -> Void) async throws -> ItemTower {
        var opt = OptimizerConfig(kind: .adagrad, learningRate: t.learningRate)
        opt.initialAccumulator = 0.1
        let initializer = InitializerConfig.normal(mean: 0, stddev: 0.1, seed: t.seed &+ 1)
        let kind = config.kind
        let budget = config.rowBudget
        var idTable: String? = nil, semanticTable: String? = nil
        var rows = 0
        if kind.usesIds {
            var spec = TableSpec(name: "\(t.run).item", dim: t.dim, optimizer: opt, initializer: initializer)
            spec.sparsity = t.sparsity
            spec.dnis = t.dnisTableConfig
            let idRows = kind == .idSpm ? budget / 2 : budget
            if idRows > 0 { spec.hashMode = .fixedBudget; spec.rowBudget = UInt64(idRows); spec.hashSeed = 17; rows += idRows }
            else { rows += data.itemIds.count }
            if let l = t.lifecycle {
                guard idRows == 0 else { throw DataError("admission and eviction need one row per item: drop --item-rows (a fixed-budget table holds all its rows)") }
                spec.admission = l.admission; spec.eviction = LifecycleTraining.eviction(ttl: l.itemTTLUpdates)
            }
            try await client.admin.createTable(spec)
            idTable = spec.name
        }
        if kind.usesSemantic {
            guard t.worldSize == 1 else { throw DataError("semantic item towers run with one worker for now (--world-size 1)") }
            guard let ep = config.embeddingsPath, let ip = config.embeddingIdsPath else {
                throw DataError("item tower \(kind.rawValue) needs --embeddings F32 and --item-ids TXT (content embeddings of the items)")
            }
            let semRows = kind == .idSpm ? budget / 2 : budget
            guard semRows > 0 else { throw DataError("item tower \(kind.rawValue) needs --item-rows N (the row budget)") }
            let embeddings = try ContentEmbeddings.load(embeddingsPath: ep, idsPath: ip)
            let started = Date()
            let assignment = try ResidualKMeans(levels: config.levels, codebookSize: config.codebookSize, iterations: 15, seed: t.seed).build(embeddings)
            let codes = assignment.codes.map { Array($0.prefix(config.levels)) }
            let tokenizer: SemanticConfig.Tokenizer
            switch kind {
            case .unigram: tokenizer = .unigram
            case .prefix: tokenizer = .prefix(config.levels)
            default:
                // Items weighted by how often they are seen in train (+1 so unseen items still count).
                let popularity = Dictionary(uniqueKeysWithValues: data.itemIds.enumerated().map { ($1, split.itemPopularity[$0]) })
                let spm = try SentencePieceTokenizer.train(codes: codes, weights: embeddings.ids.map { 1 + (popularity[$0] ?? 0) },
                                                           levels: config.levels, codebookSize: config.codebookSize, vocabularySize: semRows)
                tokenizer = .sentencePiece(spm.model)
            }
            var spec = TableSpec(name: "\(t.run).items_semantic", dim: t.dim, optimizer: opt, initializer: initializer)
            spec.semantic = SemanticConfig(tokenizer: tokenizer, levels: config.levels, codebookSize: config.codebookSize, budget: UInt64(semRows))
            try await client.admin.createTable(spec)
            try await client.admin.registerItems(table: spec.name, items: embeddings.ids, codes: codes)
            let known = Set(embeddings.ids)
            if let missing = data.itemIds.first(where: { !known.contains($0) }) {
                throw DataError("item \(missing) of the interactions has no content embedding in \(ip)")
            }
            log(String(format: "item tower %@: %d items coded (%d levels x %d codes) in %.1f s, semantic table of %d rows", kind.rawValue,
                       embeddings.ids.count, config.levels, config.codebookSize, Date().timeIntervalSince(started), semRows))
            semanticTable = spec.name
            rows += semRows
        }
        return ItemTower(config: config, client: client, dim: t.dim, idTable: idTable, semanticTable: semanticTable, rows: rows)
    }

    /// Item vectors of `ids` into `out` (ids.count * dim).
    func pull(_ ids: [UInt64], into out: FloatBuffer) async throws {
        if let idTable { try await client.pull(table: idTable, ids: ids, into: out) }
        else { out.base.update(repeating: 0, count: ids.count * dim) }
        if let semanticTable {
            let pooled = try await client.pullPooled(table: semanticTable, items: ids)
            for i in 0..<pooled.count { out.base[i] += pooled[i] }
        }
    }

    /// Pushes item gradients (ids.count * dim) to every table of the tower.
    func push(_ ids: [UInt64], _ gradients: FloatBuffer) async throws {
        if let idTable { try await client.push(table: idTable, ids: ids, gradients: gradients) }
        if let semanticTable { try await client.pushPooled(table: semanticTable, items: ids, gradients: gradients.array) }
    }
}
