import Testing
import Foundation
import Engine
import Vocabulary
import SemanticTokenizers
import Client
import SemanticID

/// Semantic-ID tables across two real shards, with codes built by RQ-k-means from the goodbooks sample's
/// content embeddings.
@Suite(.serialized) struct SemanticTableTests {
    static func sampleCodes() throws -> SemanticIDAssignment {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Cluster/data/goodbooks-10k-sample")
        let e = try ContentEmbeddings.load(embeddingsPath: dir.appendingPathComponent("item_embeddings.f32").path,
                                           idsPath: dir.appendingPathComponent("item_ids.txt").path)
        return try ResidualKMeans(levels: 3, codebookSize: 16, iterations: 5, seed: 2).build(e)
    }

    @Test func prefixNgramTablePooledOpsEqualTheirPieceByPieceEquivalents() async throws {
        try await check(SemanticConfig(tokenizer: .prefix(3), levels: 3, codebookSize: 16, budget: 2000), piecesPerItem: 3)
    }

    @Test func sentencePieceTablePooledOpsEqualTheirPieceByPieceEquivalents() async throws {
        let codes = try Self.sampleCodes()
        let spm = try SentencePieceTokenizer.train(codes: codes.codes.map { Array($0.prefix(3)) }, levels: 3, codebookSize: 16, vocabularySize: 400)
        try await check(SemanticConfig(tokenizer: .sentencePiece(spm.model), levels: 3, codebookSize: 16, budget: 400), piecesPerItem: nil)
    }

    /// `piecesPerItem`: fixed piece count (n-gram layouts) or nil (SentencePiece: 1...levels per item).
    func check(_ config: SemanticConfig, piecesPerItem: Int?) async throws {
        let codes = try Self.sampleCodes()
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        var spec = TableSpec(name: "items_sem", dim: 8, optimizer: opt, initializer: .uniform(-0.1, 0.1, seed: 4))
        spec.semantic = config
        try await client.admin.createTable(spec)
        var twin = spec; twin.name = "items_twin"   // receives the same updates piece by piece
        try await client.admin.createTable(twin)
        let all = codes.ids.count
        #expect(try await client.admin.registerItems(table: "items_sem", items: codes.ids, codes: codes.codes.map { Array($0.prefix(3)) }) == all)
        let tokenizer = try config.makeTokenizer()
        let batch = Array(codes.ids.indices.prefix(500))
        let items = batch.map { codes.ids[$0] }
        let pieces = try batch.map { try tokenizer.pieces(codes.codes[$0]) }

        // Pooled pull = sum of the item's piece rows pulled one by one.
        let pooled = try await client.pullPooled(table: "items_sem", items: items)
        if let k = piecesPerItem { #expect(pieces.allSatisfy { $0.count == k }) }
        let flat = pieces.flatMap { $0 }
        let owner = pieces.indices.flatMap { n in pieces[n].map { _ in n } }  // item of each flat piece
        let rows = try await client.pull(table: "items_sem", ids: flat)
        var sums = [Float](repeating: 0, count: items.count * 8)
        for (k, n) in owner.enumerated() { for c in 0..<8 { sums[n * 8 + c] += rows[k * 8 + c] } }
        #expect(zip(pooled, sums).allSatisfy { abs($0 - $1) < 1e-5 }, "pooled pull equals the sum of the item's piece rows")
        // Pooled push = pushing each item's gradient to each of its pieces (duplicates summed) on the twin.
        var rng = SplitMix64(seed: 8)
        let grads = (0..<(items.count * 8)).map { _ in Float(rng.unit() - 0.5) }
        try await client.pushPooled(table: "items_sem", items: items, gradients: grads)
        var expanded: [Float] = []
        for n in owner { expanded += grads[(n * 8)..<(n * 8 + 8)] }
        try await client.push(table: "items_twin", ids: flat, gradients: expanded)
        let distinct = Array(Set(flat)).sorted()
        let a = try await client.pull(table: "items_sem", ids: distinct), b = try await client.pull(table: "items_twin", ids: distinct)
        #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-6 }, "pooled push equals the piece-by-piece pushes")
        #expect(try await client.admin.describeTable("items_sem").allSatisfy { $0.rows > 0 }, "pieces live on both shards")
        let described = try await client.admin.describeTable("items_sem")
        #expect(described.allSatisfy { $0.semantic?.items == UInt64(all) && ($0.semantic?.rowsUsed ?? 0) > 0 })
        if piecesPerItem == 3 { #expect(described[0].semantic?.piecesPerItem == 3) }
        // Items without codes are a clear error.
        await expectStatus(.notFound) { _ = try await client.pullPooled(table: "items_sem", items: [99_999_999]) }
        try await client.admin.createTable(TableSpec(name: "plain", dim: 8, optimizer: opt))
        await expectStatus(.failedPrecondition) { _ = try await client.pullPooled(table: "plain", items: [1]) }
    }
}
