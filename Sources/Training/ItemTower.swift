import Foundation
import Client
import Vocabulary
import SemanticTokenizers
import SemanticID
import COpenBLAS

/// How a model represents items on EmbedPS: a hashed-id table, a semantic-ID table (an item is the sum of
/// its sub-piece rows; codes from RQ-k-means over content embeddings), an id table plus a SentencePiece
/// semantic table, summed (Singh et al.: ids and semantic pieces together), or a projection of the content
/// embedding (a table with one row per content dimension: item = sum_k content_k * row_k), alone or plus
/// an id table.
public struct ItemTowerConfiguration: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case id, unigram, prefix, spm
        case idSpm = "id+spm"
        case content
        case idContent = "id+content"
        /// No item table of its own: the item is its catalogue features alone (needs `catalogueFeatures`).
        case catalogue
        var usesIds: Bool { self == .id || self == .idSpm || self == .idContent }
        var usesSemantic: Bool { self == .unigram || self == .prefix || self == .spm || self == .idSpm }
        var usesContent: Bool { self == .content || self == .idContent }
    }
    /// A tower name of `--item-tower` / `--compare-item-towers`: a kind, or a kind + "+catalogue" for the kind
    /// plus `features` (which "catalogue" alone uses too). Nil for an unknown name.
    public static func parse(_ name: String, features: [CatalogueFeature]) -> (Kind, [CatalogueFeature])? {
        if name == "catalogue" { return (.catalogue, features) }
        if name.hasSuffix("+catalogue"), let k = Kind(rawValue: String(name.dropLast("+catalogue".count))), k != .catalogue { return (k, features) }
        return Kind(rawValue: name).map { ($0, []) }
    }
    public var kind: Kind = .id
    /// Rows of the item side; 0 = a collision-free id table (one row per item). With id+spm, half each;
    /// with id+content, the id table gets what the projection (one row per content dimension) leaves.
    public var rowBudget = 0
    /// Content embeddings (float32 file + ids file) for semantic and content towers.
    public var embeddingsPath: String? = nil
    public var embeddingIdsPath: String? = nil
    public var levels = 3
    public var codebookSize = 64
    /// Catalogue features added to every item's vector (`ItemCatalogue`, read from `cataloguePath`): a
    /// table of one row per feature value, an item adding the weighted sum of its values' rows.
    public var catalogueFeatures: [CatalogueFeature] = []
    /// The goodbooks `books.csv` the catalogue features come from.
    public var cataloguePath: String? = nil
    public init() {}

    /// The tower's name in reports: the kind, plus the catalogue features.
    public var label: String {
        let features = catalogueFeatures.map(\.rawValue).joined(separator: "+")
        if kind == .catalogue { return "catalogue \(features)" }
        return catalogueFeatures.isEmpty ? kind.rawValue : "\(kind.rawValue) + catalogue \(features)"
    }
}

/// The item side of a model: pulls item vectors and pushes item gradients through the configured tables.
final class ItemTower: @unchecked Sendable {
    let config: ItemTowerConfiguration
    let client: EmbedPSClient
    let dim: Int
    let idTable: String?
    let semanticTable: String?
    /// The content projection table (one row per content dimension) and the content vectors it projects.
    let contentTable: String?
    let content: ContentEmbeddings?
    let contentRow: [UInt64: Int]
    /// The catalogue feature table and the items' feature keys (nil without `catalogueFeatures`).
    let catalogueTable: String?
    let catalogue: ItemCatalogue?
    /// Rows the item side may use (reported).
    let rows: Int

    private init(config: ItemTowerConfiguration, client: EmbedPSClient, dim: Int, idTable: String?, semanticTable: String?,
                 contentTable: String?, content: ContentEmbeddings?, catalogueTable: String?, catalogue: ItemCatalogue?, rows: Int) {
        self.config = config; self.client = client; self.dim = dim; self.idTable = idTable; self.semanticTable = semanticTable; self.rows = rows
        self.contentTable = contentTable; self.content = content
        self.catalogueTable = catalogueTable; self.catalogue = catalogue
        contentRow = content.map { c in Dictionary(c.ids.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a }) } ?? [:]
    }

    /// Creates the tables (and, for semantic towers, builds codes, trains SentencePiece and registers items).
    static func setUp(_ config: ItemTowerConfiguration, trainer t: TrainerConfiguration, client: EmbedPSClient, data: InteractionData,
                      split: InteractionSplit, log: (String) -> Void) async throws -> ItemTower {
        var opt = OptimizerConfig(kind: .adagrad, learningRate: t.learningRate)
        opt.initialAccumulator = 0.1
        let initializer = InitializerConfig.normal(mean: 0, stddev: 0.1, seed: t.seed &+ 1)
        let kind = config.kind
        let budget = config.rowBudget
        var idTable: String? = nil, semanticTable: String? = nil
        var rows = 0
        var content: ContentEmbeddings? = nil
        if kind.usesContent {
            guard let ep = config.embeddingsPath, let ip = config.embeddingIdsPath else {
                throw DataError("item tower \(kind.rawValue) needs --embeddings F32 and --item-ids TXT (content embeddings of the items)")
            }
            let embeddings = try ContentEmbeddings.load(embeddingsPath: ep, idsPath: ip)
            let known = Set(embeddings.ids)
            if let missing = data.itemIds.first(where: { !known.contains($0) }) {
                throw DataError("item \(missing) of the interactions has no content embedding in \(ip)")
            }
            content = embeddings
        }
        if kind.usesIds {
            var spec = TableSpec(name: "\(t.run).item", dim: t.dim, optimizer: opt, initializer: initializer)
            spec.sparsity = t.sparsity
            spec.dnis = t.dnisTableConfig
            let idRows = kind == .idSpm ? budget / 2 : (kind == .idContent && budget > 0 ? max(1, budget - (content?.dim ?? 0)) : budget)
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
        var contentTable: String? = nil
        if let embeddings = content {
            let spec = TableSpec(name: "\(t.run).items_content", dim: t.dim, optimizer: opt, initializer: initializer)
            try await client.admin.createTable(spec)
            log("item tower \(kind.rawValue): content projection of \(embeddings.dim) rows (one per content dimension) over \(embeddings.ids.count) items")
            contentTable = spec.name
            rows += embeddings.dim
        }
        var catalogueTable: String? = nil, catalogue: ItemCatalogue? = nil
        if kind == .catalogue && config.catalogueFeatures.isEmpty {
            throw DataError("item tower catalogue needs --item-features LIST and --books PATH (it has no table besides the catalogue's)")
        }
        if !config.catalogueFeatures.isEmpty {
            guard let path = config.cataloguePath else {
                throw DataError("--item-features needs --books PATH (the goodbooks books.csv the features are read from)")
            }
            let c = try ItemCatalogue.load(path: path, features: config.catalogueFeatures)
            if let missing = data.itemIds.first(where: { c.keys[$0] == nil }) {
                throw DataError("item \(missing) of the interactions has no row in \(path)")
            }
            let spec = TableSpec(name: "\(t.run).items_catalogue", dim: t.dim, optimizer: opt, initializer: initializer)
            try await client.admin.createTable(spec)
            let distinct = c.distinctKeys
            log("item tower \(config.label): catalogue table of \(distinct) rows (one per feature value)")
            catalogueTable = spec.name; catalogue = c
            rows += distinct
        }
        return ItemTower(config: config, client: client, dim: t.dim, idTable: idTable, semanticTable: semanticTable,
                         contentTable: contentTable, content: content, catalogueTable: catalogueTable, catalogue: catalogue, rows: rows)
    }

    /// Item vectors of `ids` into `out` (ids.count * dim).
    func pull(_ ids: [UInt64], into out: FloatBuffer) async throws {
        if let idTable { try await client.pull(table: idTable, ids: ids, into: out) }
        else { out.base.update(repeating: 0, count: ids.count * dim) }
        if let semanticTable {
            let pooled = try await client.pullPooled(table: semanticTable, items: ids)
            for i in 0..<pooled.count { out.base[i] += pooled[i] }
        }
        if let contentTable, let content {
            let w = FloatBuffer(count: content.dim * dim)
            try await client.pull(table: contentTable, ids: (0..<content.dim).map { UInt64($0) }, into: w)
            // The matrix is kept alive across the call: a temporary's buffer would be freed before BLAS reads it.
            let c = contentMatrix(ids)
            withExtendedLifetime((c, w)) {
                Self.addProjection(content: c.base, items: ids.count, contentDim: content.dim, weights: w.base, dim: dim, into: out.base)
            }
        }
        if let catalogueTable, let catalogue {
            let (keys, position) = Self.catalogueKeys(ids, catalogue)
            let rows = try await client.pull(table: catalogueTable, ids: keys)
            for (n, id) in ids.enumerated() {
                let o = out.base + n * dim
                for wk in catalogue.keys[id] ?? [] {
                    guard let p = position[wk.key] else { continue }
                    for d in 0..<dim { o[d] += wk.weight * rows[p * dim + d] }
                }
            }
        }
    }

    /// The distinct catalogue keys of `ids` (in first-seen order) and each key's position among them.
    static func catalogueKeys(_ ids: [UInt64], _ catalogue: ItemCatalogue) -> (keys: [UInt64], position: [UInt64: Int]) {
        var keys: [UInt64] = [], position: [UInt64: Int] = [:]
        for id in ids {
            for wk in catalogue.keys[id] ?? [] where position[wk.key] == nil {
                position[wk.key] = keys.count; keys.append(wk.key)
            }
        }
        return (keys, position)
    }

    /// out (items x dim) += C (items x contentDim) * W (contentDim x dim): item vectors of the content tower.
    static func addProjection(content c: UnsafePointer<Float>, items: Int, contentDim: Int, weights w: UnsafePointer<Float>, dim: Int,
                              into out: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(items), Int32(dim), Int32(contentDim),
                    1, c, Int32(contentDim), w, Int32(dim), 1, out, Int32(dim))
    }

    /// gw (contentDim x dim) = C^T G: the projection rows' gradient given the item vectors' gradients G
    /// (items x dim), since d item / d row_k = content_k.
    static func projectionGradient(content c: UnsafePointer<Float>, items: Int, contentDim: Int, itemGradients g: UnsafePointer<Float>, dim: Int,
                                   into gw: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(contentDim), Int32(dim), Int32(items),
                    1, c, Int32(contentDim), g, Int32(dim), 0, gw, Int32(dim))
    }

    /// Content vectors of `ids` (ids.count * content dim; zeros for an id without one).
    func contentMatrix(_ ids: [UInt64]) -> FloatBuffer {
        guard let content else { return FloatBuffer(count: 0) }
        let d = content.dim
        let c = FloatBuffer(count: ids.count * d)
        content.vectors.withUnsafeBufferPointer { v in
            for (n, id) in ids.enumerated() {
                if let r = contentRow[id] { (c.base + n * d).update(from: v.baseAddress! + r * d, count: d) }
            }
        }
        return c
    }

    /// Pushes item gradients (ids.count * dim) to every table of the tower.
    func push(_ ids: [UInt64], _ gradients: FloatBuffer) async throws {
        if let idTable { try await client.push(table: idTable, ids: ids, gradients: gradients) }
        if let semanticTable { try await client.pushPooled(table: semanticTable, items: ids, gradients: gradients.array) }
        if let contentTable, let content {
            let gw = FloatBuffer(count: content.dim * dim)
            let c = contentMatrix(ids)
            withExtendedLifetime((c, gradients)) {
                Self.projectionGradient(content: c.base, items: ids.count, contentDim: content.dim, itemGradients: gradients.base, dim: dim, into: gw.base)
            }
            try await client.push(table: contentTable, ids: (0..<content.dim).map { UInt64($0) }, gradients: gw)
        }
        if let catalogueTable, let catalogue {
            // d item / d row_key = the key's weight: each key's gradient sums its items' gradients, weighted.
            let (keys, position) = Self.catalogueKeys(ids, catalogue)
            guard !keys.isEmpty else { return }
            var g = [Float](repeating: 0, count: keys.count * dim)
            for (n, id) in ids.enumerated() {
                let src = gradients.base + n * dim
                for wk in catalogue.keys[id] ?? [] {
                    guard let p = position[wk.key] else { continue }
                    for d in 0..<dim { g[p * dim + d] += wk.weight * src[d] }
                }
            }
            try await client.push(table: catalogueTable, ids: keys, gradients: g)
        }
    }
}
