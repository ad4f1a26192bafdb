import Foundation
import Client

/// Where a recency-aware user tower looks: the `window` items just before a position of a user's train
/// sequence, weighted by `decay` per step back (the latest item weighs 1) and normalised to sum 1.
/// Invariant: 0 < decay <= 1 and window >= 1 (checked where the configuration is parsed).
public struct RecencyWeights: Sendable, Equatable {
    public var decay: Float
    public var window: Int
    public init(decay: Float, window: Int) { self.decay = decay; self.window = window }

    /// The context of position `k` of `sequence` (items strictly before it): (item, weight) pairs, weights
    /// summing to 1; empty at position 0.
    public func context(of sequence: [Int], before k: Int) -> [(item: Int, weight: Float)] {
        let start = max(0, k - window)
        guard k > start else { return [] }
        var out: [(item: Int, weight: Float)] = []
        out.reserveCapacity(k - start)
        var w: Float = 1, total: Float = 0
        for j in stride(from: k - 1, through: start, by: -1) { out.append((sequence[j], w)); total += w; w *= decay }
        let scale = 1 / total
        for n in out.indices { out[n].weight *= scale }
        return out
    }
}

/// The recency part of a user tower (sequence-aware, in the spirit of FPMC / SASRec with a fixed attention):
/// for an example at position k of user u's train sequence, the user vector gets the weighted mean of a
/// history table's rows over the items before k (`RecencyWeights`); for evaluation and serving, over the end of
/// the whole train sequence. Holds the rows of every item some held context names. Invariant: every item of
/// `contexts` has a row at `position[item]` of `rows`, and each context's weights sum to 1 (or it is empty).
struct RecentHistory {
    let dim: Int
    /// Dense item indices whose rows are held, sorted, and their ids on the history table.
    let items: [Int]
    let itemIds: [UInt64]
    let rows: FloatBuffer
    /// Per context: (row position in `items`, weight).
    let contexts: [[(row: Int, weight: Float)]]

    /// `rows` holds the history rows of `items` (items.count * dim), in that order; `contexts` names items by
    /// dense index.
    init(contexts itemContexts: [[(item: Int, weight: Float)]], dim: Int, items: [Int], itemIds: [UInt64], rows: FloatBuffer) {
        self.dim = dim; self.items = items; self.itemIds = itemIds; self.rows = rows
        let position = Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1, $0) })
        contexts = itemContexts.map { c in c.compactMap { x in position[x.item].map { (row: $0, weight: x.weight) } } }
    }

    /// Pulls from `table` the history rows every one of `contexts` names.
    static func pull(contexts: [[(item: Int, weight: Float)]], data: InteractionData, dim: Int, client: EmbedPSClient, table: String) async throws -> RecentHistory {
        var union = Set<Int>()
        for c in contexts { for x in c { union.insert(x.item) } }
        let p = try await HistoryRows.pull(union, data: data, dim: dim, client: client, table: table)
        return RecentHistory(contexts: contexts, dim: dim, items: p.items, itemIds: p.itemIds, rows: p.rows)
    }

    /// Adds context `c`'s weighted mean row to `v`.
    func add(context c: Int, into v: UnsafeMutablePointer<Float>) {
        for x in contexts[c] {
            let r = rows.base + x.row * dim
            for k in 0..<dim { v[k] += x.weight * r[k] }
        }
    }

    /// Gradients with respect to the held rows (items.count * dim) given, per context c, the gradient of the
    /// loss with respect to the vector it was added to (`contextGradients`, contexts x dim), plus
    /// 2 * l2 * row for every held row.
    func gradients(contextGradients: UnsafePointer<Float>, l2: Float) -> FloatBuffer {
        let g = FloatBuffer(count: items.count * dim)
        for (c, context) in contexts.enumerated() {
            let e = contextGradients + c * dim
            for x in context {
                let r = g.base + x.row * dim
                for k in 0..<dim { r[k] += x.weight * e[k] }
            }
        }
        if l2 > 0 { for x in 0..<(items.count * dim) { g.base[x] += 2 * l2 * rows.base[x] } }
        return g
    }
}

/// Each train example's position in its user's train sequence, so a recency-aware tower can read the items
/// before it. A (user, item) pair in the sequence more than once maps to its first position (its context
/// then holds only earlier interactions). Invariant: `position(user:item:)` is defined for every train pair.
struct SequencePositions {
    private let first: [Int: Int]
    private let items: Int

    init(split: InteractionSplit, items: Int) {
        self.items = items
        var first: [Int: Int] = [:]
        for (u, sequence) in split.trainSequences.enumerated() {
            for (k, i) in sequence.enumerated() where first[u * items + i] == nil { first[u * items + i] = k }
        }
        self.first = first
    }

    func position(user: Int, item: Int) -> Int? { first[user * items + item] }
}
