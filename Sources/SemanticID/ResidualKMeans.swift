import Foundation
import Vocabulary

/// Semantic IDs of a catalogue: per item, `levels` codes in 0..<codebookSize from residual k-means, then one
/// disambiguation code (0 for an item whose full code is unique; items sharing a full code get 0, 1, 2, ...
/// in ascending item-id order), so every item's code sequence is unique.
public struct SemanticIDAssignment: Sendable {
    public let ids: [UInt64]
    public let levels: Int
    public let codebookSize: Int
    /// codes[i] has levels + 1 entries (the last is the disambiguation code).
    public let codes: [[Int]]
    /// Mean squared residual norm after each level (falls level by level).
    public let residualMeanSquare: [Double]
    /// Items whose first `levels` codes collided with another item's.
    public let collidingItems: Int
    public let largestCollision: Int
}

/// RQ-k-means (the residual k-means alternative to RQ-VAE described in techniques.md section 2): k-means on
/// the vectors, then k-means on the residuals, level by level; each level's codebook has `codebookSize`
/// centroids. Deterministic for a seed.
public struct ResidualKMeans: Sendable {
    public let levels: Int
    public let codebookSize: Int
    public let iterations: Int
    public let seed: UInt64

    public init(levels: Int, codebookSize: Int, iterations: Int = 20, seed: UInt64 = 1) {
        self.levels = levels; self.codebookSize = codebookSize; self.iterations = iterations; self.seed = seed
    }

    /// `progress(level)` is called before each level.
    public func build(_ e: ContentEmbeddings, progress: (Int) -> Void = { _ in }) throws(SemanticIDError) -> SemanticIDAssignment {
        guard levels >= 1, codebookSize >= 2 else { throw SemanticIDError("need --levels >= 1 and --codes >= 2") }
        let n = e.ids.count, d = e.dim
        guard n >= codebookSize else { throw SemanticIDError("\(n) items cannot fill a codebook of \(codebookSize) codes: lower --codes") }
        var residual = e.vectors
        var codes = [[Int]](repeating: [], count: n)
        var msq: [Double] = []
        for level in 0..<levels {
            progress(level)
            let km = KMeans(k: codebookSize, iterations: iterations, seed: seed &+ UInt64(level) &* 0x9E37)
            let r = try km.fit(residual, count: n, dim: d)
            for i in 0..<n {
                let c = r.assignment[i]
                codes[i].append(c)
                for j in 0..<d { residual[i * d + j] -= r.centroids[c * d + j] }
            }
            msq.append(r.inertia / Double(n))
        }
        // Disambiguation level.
        var groups: [[Int]: [Int]] = [:]
        for i in 0..<n { groups[codes[i], default: []].append(i) }
        var colliding = 0, largest = 1
        for (_, members) in groups {
            let ordered = members.sorted { e.ids[$0] < e.ids[$1] }
            for (rank, i) in ordered.enumerated() { codes[i].append(rank) }
            if members.count > 1 { colliding += members.count; largest = max(largest, members.count) }
        }
        return SemanticIDAssignment(ids: e.ids, levels: levels, codebookSize: codebookSize, codes: codes,
                                    residualMeanSquare: msq, collidingItems: colliding, largestCollision: largest)
    }
}

extension SemanticIDAssignment {
    /// Writes `item_id<TAB>c1 c2 ... cL d` lines after a header naming L and K.
    public func write(to path: String) throws {
        var text = "# semantic ids: levels=\(levels) codebook=\(codebookSize) (last code disambiguates)\nitem_id\tcodes\n"
        for (i, id) in ids.enumerated() { text += "\(id)\t\(codes[i].map(String.init).joined(separator: " "))\n" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}
