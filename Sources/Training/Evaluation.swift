import Foundation
import COpenBLAS

/// Ranking quality of one model on one held-out set.
public struct RankingMetrics: Sendable, Codable {
    public var model: String
    public var split: String
    public var users: Int
    public var recallAt20: Double
    public var ndcgAt20: Double
    /// Users whose held-out item is in the long tail (not among the 20% most popular train items).
    public var tailUsers: Int
    public var tailRecallAt20: Double
    public var tailNdcgAt20: Double
    /// Users whose held-out item never occurs in train (a new item), and their Recall@20.
    public var newItemUsers: Int
    public var newItemRecallAt20: Double
}

/// Full-ranking evaluation: every item is scored for every evaluated user (scores = U * Q^T with OpenBLAS
/// sgemm, users in blocks), the user's train items (and, for test, the validation item) are excluded, and
/// the held-out item's rank decides Recall@20 and NDCG@20 (one held-out item per user).
public struct RankingEvaluator: Sendable {
    public let split: InteractionSplit
    public let tailItems: Set<Int>
    public static let k = 20

    public init(split: InteractionSplit) {
        self.split = split
        let byPopularity = split.itemPopularity.indices.sorted { split.itemPopularity[$0] > split.itemPopularity[$1] }
        let head = byPopularity.prefix(max(1, byPopularity.count / 5))
        tailItems = Set(byPopularity).subtracting(head)
    }

    /// Evaluates `userVectors` (users x dim, dense user order) against `itemVectors` (items x dim).
    public func evaluate(model: String, heldOut: [(user: Int, item: Int)], exclude: [(user: Int, item: Int)] = [],
                         userVectors: UnsafePointer<Float>, itemVectors: UnsafePointer<Float>, dim: Int, items: Int) -> RankingMetrics {
        let excluded = Self.byUser(exclude)
        let block = 256
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * items)
        let users = UnsafeMutablePointer<Float>.allocate(capacity: block * dim)
        defer { scores.deallocate(); users.deallocate() }
        var acc = Accumulator()
        var start = 0
        while start < heldOut.count {
            let part = heldOut[start..<min(heldOut.count, start + block)]
            for (r, h) in part.enumerated() { (users + r * dim).update(from: userVectors + h.user * dim, count: dim) }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(part.count), Int32(items), Int32(dim),
                        1, users, Int32(dim), itemVectors, Int32(dim), 0, scores, Int32(items))
            for (r, h) in part.enumerated() {
                acc.add(rank: rank(of: h.item, in: scores + r * items, items: items, masked: split.trainItemsByUser[h.user], extra: excluded[h.user] ?? []),
                        tail: tailItems.contains(h.item), new: split.itemPopularity[h.item] == 0)
            }
            start += block
        }
        return acc.metrics(model: model, split: "")
    }

    /// Popularity baseline: every user gets items ranked by train popularity.
    public func evaluatePopularity(heldOut: [(user: Int, item: Int)], exclude: [(user: Int, item: Int)] = [], items: Int) -> RankingMetrics {
        let excluded = Self.byUser(exclude)
        var scores = split.itemPopularity.map { Float($0) }
        var acc = Accumulator()
        scores.withUnsafeMutableBufferPointer { s in
            for h in heldOut {
                acc.add(rank: rank(of: h.item, in: s.baseAddress!, items: items, masked: split.trainItemsByUser[h.user], extra: excluded[h.user] ?? []),
                        tail: tailItems.contains(h.item), new: split.itemPopularity[h.item] == 0)
            }
        }
        return acc.metrics(model: "popularity", split: "")
    }

    /// Candidate-restricted evaluation (the item-cold split): each user of `heldOut` ranks only `candidates`
    /// (none of which is in train, so nothing is masked); Recall@20 = held-out items in the top 20 /
    /// min(20, held-out items of the user), NDCG@20 against the ideal ordering; ties count against the
    /// held-out items. Every held-out item is new, so the new-item columns repeat the totals and tail is 0.
    public func evaluate(model: String, heldOut: [(user: Int, item: Int)], candidates: [Int],
                         userVectors: UnsafePointer<Float>, itemVectors: UnsafePointer<Float>, dim: Int) -> RankingMetrics {
        let matrix = UnsafeMutablePointer<Float>.allocate(capacity: max(1, candidates.count * dim))
        defer { matrix.deallocate() }
        for (c, i) in candidates.enumerated() { (matrix + c * dim).update(from: itemVectors + i * dim, count: dim) }
        var scores = [Float](repeating: 0, count: candidates.count)
        return Self.rankRestricted(model: model, heldOut: heldOut, candidates: candidates) { user in
            scores.withUnsafeMutableBufferPointer { s in
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(candidates.count), Int32(dim), 1, matrix, Int32(dim),
                            userVectors + user * dim, 1, 0, s.baseAddress, 1)
            }
            return scores
        }
    }

    /// Popularity among the held-out items: a candidate's score for a user is the number of other held-out
    /// users who interacted with it (the user's own interactions are not counted). Only meaningful with
    /// `candidates`, the items of the item-cold split, which have no train popularity.
    public func evaluatePopularity(heldOut: [(user: Int, item: Int)], candidates: [Int]) -> RankingMetrics {
        let position = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($1, $0) })
        var counts = [Float](repeating: 0, count: candidates.count)
        for h in heldOut { if let c = position[h.item] { counts[c] += 1 } }
        let byUser = Self.byUser(heldOut)
        return Self.rankRestricted(model: "popularity among held-out items", heldOut: heldOut, candidates: candidates) { user in
            var s = counts
            for i in byUser[user] ?? [] { if let c = position[i] { s[c] -= 1 } }
            return s
        }
    }

    /// The catalogue baseline of the item-cold split: every user ranks `candidates` by `count` (the items'
    /// Goodreads-wide ratings count from the catalogue, known without any of this data's interactions).
    public func evaluateCatalogueCount(heldOut: [(user: Int, item: Int)], candidates: [Int], count: (Int) -> Double) -> RankingMetrics {
        let scores = candidates.map { Float(count($0)) }
        return Self.rankRestricted(model: "catalogue ratings count", heldOut: heldOut, candidates: candidates) { _ in scores }
    }

    /// Ranks `candidates` by `scores(user)` (one score per candidate) for every user of `heldOut`.
    static func rankRestricted(model: String, heldOut: [(user: Int, item: Int)], candidates: [Int],
                               scores: (Int) -> [Float]) -> RankingMetrics {
        let relevant = byUser(heldOut)
        var n = 0, recall = 0.0, ndcg = 0.0
        for user in relevant.keys.sorted() {
            let items = Set(relevant[user] ?? [])
            let s = scores(user)
            // Score descending; among equal scores a held-out item comes last (ties count against it).
            let order = candidates.indices.sorted { a, b in
                s[a] != s[b] ? s[a] > s[b] : (!items.contains(candidates[a]) && items.contains(candidates[b]))
            }
            var hits = 0, dcg = 0.0
            for (r, c) in order.prefix(k).enumerated() where items.contains(candidates[c]) {
                hits += 1; dcg += 1 / log2(Double(r) + 2)
            }
            let ideal = (0..<min(k, items.count)).reduce(0.0) { $0 + 1 / log2(Double($1) + 2) }
            n += 1
            recall += Double(hits) / Double(max(1, min(k, items.count)))
            ndcg += ideal == 0 ? 0 : dcg / ideal
        }
        let r = n == 0 ? 0 : recall / Double(n), g = n == 0 ? 0 : ndcg / Double(n)
        return RankingMetrics(model: model, split: "", users: n, recallAt20: r, ndcgAt20: g, tailUsers: 0, tailRecallAt20: 0, tailNdcgAt20: 0,
                              newItemUsers: n, newItemRecallAt20: r)
    }

    /// Extra items to exclude per user.
    static func byUser(_ pairs: [(user: Int, item: Int)]) -> [Int: [Int]] {
        var out = [Int: [Int]]()
        for (u, i) in pairs { out[u, default: []].append(i) }
        return out
    }

    /// 0-based rank of `target` among unmasked items (ties counted against the target).
    func rank(of target: Int, in scores: UnsafeMutablePointer<Float>, items: Int, masked: Set<Int>, extra: [Int]) -> Int {
        let t = scores[target]
        var better = 0
        for i in 0..<items where i != target && scores[i] >= t && !masked.contains(i) && !extra.contains(i) { better += 1 }
        return better
    }

    struct Accumulator {
        var n = 0, recall = 0.0, ndcg = 0.0, tailN = 0, tailRecall = 0.0, tailNdcg = 0.0, newN = 0, newRecall = 0.0
        mutating func add(rank: Int, tail: Bool, new: Bool) {
            n += 1
            let hit = rank < RankingEvaluator.k
            let gain = hit ? 1 / log2(Double(rank) + 2) : 0
            recall += hit ? 1 : 0; ndcg += gain
            if tail { tailN += 1; tailRecall += hit ? 1 : 0; tailNdcg += gain }
            if new { newN += 1; newRecall += hit ? 1 : 0 }
        }
        func metrics(model: String, split: String) -> RankingMetrics {
            RankingMetrics(model: model, split: split, users: n, recallAt20: n == 0 ? 0 : recall / Double(n), ndcgAt20: n == 0 ? 0 : ndcg / Double(n),
                           tailUsers: tailN, tailRecallAt20: tailN == 0 ? 0 : tailRecall / Double(tailN), tailNdcgAt20: tailN == 0 ? 0 : tailNdcg / Double(tailN),
                           newItemUsers: newN, newItemRecallAt20: newN == 0 ? 0 : newRecall / Double(newN))
        }
    }
}
