import Foundation
import Vocabulary

/// Quality of a semantic-ID assignment. Mean cosine similarity of item pairs sharing the first `l` codes
/// (l = 0 is random pairs), estimated from sampled pairs: for each sampled item, a random other item of its
/// prefix group; it must rise with l if codes carry meaning (Singh et al. report 0.41/0.68/0.91/0.97 for
/// l = 1..4 on their data). Codebook utilisation per level: share of codes used, and perplexity
/// (exp of the code-usage entropy; K means perfectly balanced).
public struct SemanticIDQuality: Sendable, Codable {
    public struct PrefixRow: Sendable, Codable {
        public var prefixLength: Int
        public var pairs: Int
        public var meanCosine: Double
    }
    public struct LevelRow: Sendable, Codable {
        public var level: Int
        public var codesUsed: Int
        public var utilisation: Double
        public var perplexity: Double
    }
    public var prefixes: [PrefixRow]
    public var levels: [LevelRow]

    public init(_ a: SemanticIDAssignment, embeddings e: ContentEmbeddings, samples: Int = 20_000, seed: UInt64 = 7) {
        let n = e.ids.count, d = e.dim
        var rng = SplitMix64(seed: seed)
        let norms = (0..<n).map { i in max(1e-12, (0..<d).reduce(Float(0)) { $0 + e.vectors[i * d + $1] * e.vectors[i * d + $1] }.squareRoot()) }
        func cosine(_ i: Int, _ j: Int) -> Double {
            var s: Float = 0
            for k in 0..<d { s += e.vectors[i * d + k] * e.vectors[j * d + k] }
            return Double(s / (norms[i] * norms[j]))
        }
        var rows: [PrefixRow] = []
        for l in 0...a.levels {
            var groups: [[Int]: [Int]] = [:]
            for i in 0..<n { groups[Array(a.codes[i].prefix(l)), default: []].append(i) }
            var total = 0.0, pairs = 0
            for _ in 0..<samples {
                let i = Int(rng.next() % UInt64(n))
                let g = groups[Array(a.codes[i].prefix(l))]!
                guard g.count > 1 else { continue }
                var j = g[Int(rng.next() % UInt64(g.count))]
                if j == i { j = g[(g.firstIndex(of: i)! + 1) % g.count] }
                total += cosine(i, j); pairs += 1
            }
            rows.append(PrefixRow(prefixLength: l, pairs: pairs, meanCosine: pairs == 0 ? 0 : total / Double(pairs)))
        }
        prefixes = rows
        levels = (0..<a.levels).map { level in
            var counts = [Int](repeating: 0, count: a.codebookSize)
            for c in a.codes { counts[c[level]] += 1 }
            let used = counts.filter { $0 > 0 }.count
            let entropy = counts.filter { $0 > 0 }.reduce(0.0) { acc, c in let p = Double(c) / Double(n); return acc - p * log(p) }
            return LevelRow(level: level + 1, codesUsed: used, utilisation: Double(used) / Double(a.codebookSize), perplexity: exp(entropy))
        }
    }
}
