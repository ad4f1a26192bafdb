import Testing
import Foundation
import Engine
import Vocabulary
import SemanticTokenizers
@testable import SemanticID

@Suite struct KMeansTests {
    /// Four well-separated blobs in 8 dimensions: k-means with k=4 puts each blob in its own cluster.
    @Test func kMeansRecoversSeparatedClusters() throws {
        var rng = SplitMix64(seed: 3)
        let d = 8, perBlob = 50
        var points: [Float] = []
        for b in 0..<4 {
            for _ in 0..<perBlob {
                for j in 0..<d { points.append((j == b ? 10 : 0) + Float(rng.unit() - 0.5) * 0.5) }
            }
        }
        let r = try KMeans(k: 4, iterations: 20, seed: 1).fit(points, count: 4 * perBlob, dim: d)
        for b in 0..<4 {
            let labels = Set(r.assignment[(b * perBlob)..<((b + 1) * perBlob)])
            #expect(labels.count == 1, "blob \(b) split over \(labels)")
        }
        #expect(Set(r.assignment).count == 4)
    }

    @Test func blasAssignmentAgreesWithBruteForce() {
        var rng = SplitMix64(seed: 9)
        let n = 300, d = 5, k = 7
        let points = (0..<(n * d)).map { _ in Float(rng.unit()) }
        let centroids = (0..<(k * d)).map { _ in Float(rng.unit()) }
        let (a, _) = KMeans(k: k).assign(points, n: n, d: d, centroids: centroids)
        for i in 0..<n {
            let brute = (0..<k).min { c1, c2 in
                func dist(_ c: Int) -> Float { (0..<d).reduce(0) { $0 + pow(points[i * d + $1] - centroids[c * d + $1], 2) } }
                return dist(c1) < dist(c2)
            }!
            #expect(a[i] == brute)
        }
    }
}

@Suite struct ResidualKMeansTests {
    @Test func codesAreUniqueAfterDisambiguationAndResidualsShrink() throws {
        // 40 items, 20 of them exact duplicates of others: duplicates must share codes and be disambiguated.
        var rng = SplitMix64(seed: 5)
        var vectors = (0..<(20 * 6)).map { _ in Float(rng.unit()) }
        vectors += vectors
        let e = try ContentEmbeddings(ids: (0..<40).map { UInt64(100 + $0) }, dim: 6, vectors: vectors)
        let a = try ResidualKMeans(levels: 2, codebookSize: 4, iterations: 10).build(e)
        #expect(Set(a.codes).count == 40, "every item's code sequence is unique")
        #expect(a.codes.allSatisfy { $0.count == 3 })
        #expect(a.codes[0].prefix(2) == a.codes[20].prefix(2), "duplicates share their codes")
        var groups: [[Int]: [Int]] = [:]
        for i in 0..<40 { groups[Array(a.codes[i].prefix(2)), default: []].append(i) }
        for (_, members) in groups {
            let byId = members.sorted { a.ids[$0] < a.ids[$1] }
            #expect(byId.map { a.codes[$0][2] } == Array(0..<members.count), "disambiguation codes count up in id order")
        }
        #expect(a.collidingItems >= 40 - 2 * 16 && a.residualMeanSquare[1] < a.residualMeanSquare[0])
    }

    /// On the real goodbooks sample (MiniLM embeddings of "title by authors"), items sharing longer code
    /// prefixes are more similar, and the codebooks are used.
    @Test func goodbooksSampleCodesCarryMeaning() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Cluster/data/goodbooks-10k-sample")
        let e = try ContentEmbeddings.load(embeddingsPath: dir.appendingPathComponent("item_embeddings.f32").path,
                                           idsPath: dir.appendingPathComponent("item_ids.txt").path)
        #expect(e.ids.count == 6020 && e.dim == 384)
        let a = try ResidualKMeans(levels: 3, codebookSize: 32, iterations: 8, seed: 1).build(e)
        let q = SemanticIDQuality(a, embeddings: e, samples: 4000)
        let cos = q.prefixes.map(\.meanCosine)
        #expect(cos[0] < cos[1] && cos[1] < cos[2] && cos[2] < cos[3], "mean cosine must rise with the shared prefix: \(cos)")
        #expect(q.levels.allSatisfy { $0.utilisation > 0.9 }, "\(q.levels)")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("codes-\(UUID().uuidString).tsv").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try a.write(to: out)
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6020 + 2 && lines[2].hasPrefix("1\t"))
    }
}

@Suite struct SentencePieceTokenizerTests {
    /// 3 levels x 8 codes; a "popular" family of items shares the code run (1, 2) and should get it as one piece.
    @Test func frequentCodeRunsBecomeSinglePiecesAndRareOnesFallBack() throws {
        var codes: [[Int]] = []
        var weights: [Int] = []
        for c3 in 0..<8 { codes.append([1, 2, c3]); weights.append(50) }           // head items
        for c1 in 0..<8 { for c2 in 0..<8 { codes.append([c1, c2, (c1 + c2) % 8]); weights.append(1) } }  // tail
        let t = try SentencePieceTokenizer.train(codes: codes, weights: weights, levels: 3, codebookSize: 8, vocabularySize: 60)
        #expect(t.vocabularySize <= 60 && t.vocabularySize > 24)
        let head = try t.pieces([1, 2, 5])
        let tail = try t.pieces([6, 3, 1])
        #expect(head.count < 3, "the frequent run (1,2) is one piece: \(head)")
        #expect(tail.count >= 1 && tail.count <= 3)
        #expect(codes.allSatisfy { (try? t.pieces($0))?.allSatisfy { $0 > 0 && $0 < UInt64(t.vocabularySize) } == true }, "no unknown pieces")
        // The serialized model reproduces the same segmentation.
        let again = try SentencePieceTokenizer(model: t.model, levels: 3, codebookSize: 8)
        #expect(try again.pieces([1, 2, 5]) == head && again.pieces([6, 3, 1]) == tail)
        #expect(throws: TokenizerError.self) { try t.pieces([1, 9, 0]) }
    }

    @Test func aVocabularyLargerThanTheCorpusSupportsShrinksAndImpossibleRenderingsAreRejected() throws {
        let t = try SentencePieceTokenizer.train(codes: [[0, 1], [1, 0], [1, 1]], levels: 2, codebookSize: 2, vocabularySize: 5000)
        #expect(t.vocabularySize < 5000, "the real vocabulary is what the table needs: \(t.vocabularySize)")
        #expect(throws: TokenizerError.self) {
            _ = try SentencePieceTokenizer.train(codes: [[0, 1]], levels: 40, codebookSize: 2048, vocabularySize: 100)
        }
    }
}
