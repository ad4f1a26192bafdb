import Foundation
import COpenBLAS
import Vocabulary

/// A two-tower retrieval loss: sampled softmax over a candidate set shared by the whole batch (Jean et al.
/// 2015; the log-Q correction of Yi et al. 2019). score(u, i) = <u, v_i>. Each example b (a user vector u_b
/// and the index p_b of its positive among the candidates) has the logits
///     z_bj = <u_b, v_j> - (j == p_b ? 0 : logQ_j)
/// where logQ_j is the log of the expected number of times candidate j is drawn as a negative for one
/// example relative to the whole catalogue (for S uniform negatives out of N items: log(S / N); 0 when the
/// candidates are the whole catalogue, i.e. the full softmax). loss_b = logsumexp_j z_bj - z_bp_b.
/// Gradients (exact, checked against finite differences in the tests), with P the row-wise softmax of z
/// and G = P - onehot(p):  dL/du_b = sum_j G_bj v_j;  dL/dv_j = sum_b G_bj u_b;  plus l2 * row for every
/// row of the batch (users once per example, candidates once per batch).
/// Pure functions over caller-owned memory; matrix products through OpenBLAS sgemm.
public enum SoftmaxModel {
    /// Loss summed over the batch. Writes (overwrites) `gu` (batch x dim) and `gc` (count x dim).
    /// `logits` is scratch of batch x count floats. `positives[b]` must be in 0..<count.
    @discardableResult
    public static func lossAndGradients(users: UnsafePointer<Float>, batch: Int, candidates: UnsafePointer<Float>, count: Int, dim: Int,
                                        positives: [Int], logQ: UnsafePointer<Float>, l2: Float,
                                        gu: UnsafeMutablePointer<Float>, gc: UnsafeMutablePointer<Float>,
                                        logits: UnsafeMutablePointer<Float>) -> Float {
        precondition(positives.count == batch, "one positive per example")
        guard batch > 0, count > 0 else { return 0 }
        // z = U V^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(count), Int32(dim),
                    1, users, Int32(dim), candidates, Int32(dim), 0, logits, Int32(count))
        var loss: Double = 0
        for b in 0..<batch {
            let z = logits + b * count, p = positives[b]
            for j in 0..<count where j != p { z[j] -= logQ[j] }
            var m = -Float.infinity
            for j in 0..<count where z[j] > m { m = z[j] }
            let zPositive = z[p]
            var sum: Float = 0
            for j in 0..<count { let e = expf(z[j] - m); z[j] = e; sum += e }
            // loss = logsumexp(z) - z_p = log(sum) + m - z_p: exact even when the positive's probability
            // underflows.
            loss += Double(logf(sum)) + Double(m) - Double(zPositive)
            let inv = 1 / sum
            for j in 0..<count { z[j] *= inv }
            z[p] -= 1
        }
        // dL/dU = G V;  dL/dV = G^T U
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(dim), Int32(count),
                    1, logits, Int32(count), candidates, Int32(dim), 0, gu, Int32(dim))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(count), Int32(dim), Int32(batch),
                    1, logits, Int32(count), users, Int32(dim), 0, gc, Int32(dim))
        if l2 != 0 {
            var reg: Double = 0
            for k in 0..<(batch * dim) { gu[k] += l2 * users[k]; reg += Double(users[k] * users[k]) }
            for k in 0..<(count * dim) { gc[k] += l2 * candidates[k]; reg += Double(candidates[k] * candidates[k]) }
            loss += Double(l2 / 2) * reg
        }
        return Float(loss)
    }

    /// Scales each of `rows` rows of `dim` floats to unit length in place (an all-zero row stays zero);
    /// returns the lengths they had (at least 1e-12).
    @discardableResult
    public static func normalise(_ x: UnsafeMutablePointer<Float>, rows: Int, dim: Int) -> [Float] {
        var lengths = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let v = x + r * dim
            var sq: Float = 0
            for k in 0..<dim { sq += v[k] * v[k] }
            let n = max(sqrtf(sq), 1e-12)
            lengths[r] = n
            for k in 0..<dim { v[k] /= n }
        }
        return lengths
    }

    /// The same loss on cosine scores: score(u, i) = <u/|u|, v_i/|v_i|> / temperature (temperature > 0), so
    /// item popularity cannot grow a vector's length to win every user. Gradients go through the
    /// normalisation (for x^ = x/|x| and upstream g: dL/dx = (g - <g, x^> x^) / |x|); `l2` applies to the raw
    /// rows. Same buffers and contract as `lossAndGradients`.
    @discardableResult
    public static func cosineLossAndGradients(users: UnsafePointer<Float>, batch: Int, candidates: UnsafePointer<Float>, count: Int, dim: Int,
                                              positives: [Int], logQ: UnsafePointer<Float>, l2: Float, temperature: Float,
                                              gu: UnsafeMutablePointer<Float>, gc: UnsafeMutablePointer<Float>,
                                              logits: UnsafeMutablePointer<Float>) -> Float {
        precondition(temperature > 0, "temperature must be positive")
        guard batch > 0, count > 0 else { return 0 }
        let nu = UnsafeMutablePointer<Float>.allocate(capacity: batch * dim), nc = UnsafeMutablePointer<Float>.allocate(capacity: count * dim)
        defer { nu.deallocate(); nc.deallocate() }
        nu.update(from: users, count: batch * dim); nc.update(from: candidates, count: count * dim)
        let lu = normalise(nu, rows: batch, dim: dim), lc = normalise(nc, rows: count, dim: dim)
        // Users scaled by 1/temperature: z = <u^/t, v^>.
        let scaled = UnsafeMutablePointer<Float>.allocate(capacity: batch * dim)
        defer { scaled.deallocate() }
        for k in 0..<(batch * dim) { scaled[k] = nu[k] / temperature }
        var loss = lossAndGradients(users: scaled, batch: batch, candidates: nc, count: count, dim: dim, positives: positives,
                                    logQ: logQ, l2: 0, gu: gu, gc: gc, logits: logits)
        // Back through u~ = u^/t and the two normalisations.
        func backThrough(_ g: UnsafeMutablePointer<Float>, _ unit: UnsafePointer<Float>, rows: Int, _ lengths: [Float], scale: Float) {
            for r in 0..<rows {
                var dot: Float = 0
                for k in 0..<dim { dot += g[r * dim + k] * scale * unit[r * dim + k] }
                for k in 0..<dim { g[r * dim + k] = (g[r * dim + k] * scale - dot * unit[r * dim + k]) / lengths[r] }
            }
        }
        backThrough(gu, nu, rows: batch, lu, scale: 1 / temperature)
        backThrough(gc, nc, rows: count, lc, scale: 1)
        if l2 != 0 {
            var reg: Double = 0
            for k in 0..<(batch * dim) { gu[k] += l2 * users[k]; reg += Double(users[k] * users[k]) }
            for k in 0..<(count * dim) { gc[k] += l2 * candidates[k]; reg += Double(candidates[k] * candidates[k]) }
            loss += Float(Double(l2 / 2) * reg)
        }
        return loss
    }
}

/// The candidate items of one softmax batch and their log-Q corrections. Candidates are the batch's
/// positives plus `negatives` items drawn uniformly without replacement from the eligible items (every item
/// unless a split holds some out), deduplicated and sorted; an item's expected count among a batch's
/// candidates is q_j = batchSize * popularity_j / trainCount (as a positive of the batch) + negatives /
/// eligible (as a uniform draw), and logQ_j = log(q_j). With `negatives` 0 or at least the eligible count
/// every eligible item is a candidate and logQ is 0 (the full softmax). Items outside `eligible` are never
/// candidates.
public struct SoftmaxCandidates: Sendable {
    public let items: Int
    public let negatives: Int
    /// Items negatives are drawn from (sorted).
    public let eligible: [Int]
    /// log(q_j) per item (empty for the full softmax).
    let logQ: [Float]

    public init(items: Int, negatives: Int, popularity: [Int], batchSize: Int, eligible: [Int]? = nil) {
        precondition(popularity.count == items, "one popularity count per item")
        self.items = items
        let pool = (eligible ?? Array(0..<items)).sorted()
        self.eligible = pool
        self.negatives = negatives <= 0 || negatives >= pool.count ? pool.count : negatives
        if self.negatives == pool.count { logQ = []; return }
        let total = Double(max(1, popularity.reduce(0, +)))
        let uniform = Double(self.negatives) / Double(max(1, pool.count))
        logQ = popularity.map { Float(log(Double(batchSize) * Double($0) / total + uniform)) }
    }

    /// Whether every eligible item is a candidate.
    public var isFull: Bool { negatives == eligible.count }

    /// Sorted candidate item indices (each once) and their log-Q corrections.
    public func draw(positives: [Int], rng: inout SplitMix64) -> (candidates: [Int], logQ: [Float]) {
        var chosen = [Bool](repeating: false, count: items)
        for p in positives { chosen[p] = true }
        if isFull {
            for j in eligible { chosen[j] = true }
            let all = (0..<items).filter { chosen[$0] }
            return (all, [Float](repeating: 0, count: all.count))
        }
        // Partial Fisher-Yates: the first `negatives` entries of a uniform permutation of the eligible items.
        var order = eligible
        for k in 0..<negatives {
            order.swapAt(k, k + Int(rng.next() % UInt64(order.count - k)))
            chosen[order[k]] = true
        }
        var candidates: [Int] = []
        candidates.reserveCapacity(negatives + positives.count)
        for j in 0..<items where chosen[j] { candidates.append(j) }
        return (candidates, candidates.map { logQ[$0] })
    }
}
