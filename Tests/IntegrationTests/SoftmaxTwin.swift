import Foundation
import Engine
import Vocabulary
import Training

/// The trainer's best model, the two-tower sampled softmax with the recency user tower (`--model softmax
/// --user-tower id+recent`), run in one process without shards: the same split, batch order, candidate draws
/// (`SoftmaxCandidates`), loss (`SoftmaxModel`), recency contexts (`RecencyWeights`, positions worked out here
/// independently of the trainer's), row initializers and the shard's Adagrad code, applied synchronously to
/// in-memory rows. What it leaves out is what the PS adds: the wire, sharding, the cache and storage tier.
struct SoftmaxTwin {
    var dim = 32, epochs = 5, batchSize = 1024, negatives = 2048
    var learningRate: Float = 0.1, l2: Float = 1e-4
    var recency = RecencyWeights(decay: 0.5, window: 5)
    var seed: UInt64 = 1

    /// In-memory rows of one table (weights then the Adagrad accumulator per row) and the batch's gradients,
    /// in raw buffers so the twin stays quick in a debug build.
    final class Rows {
        let dim: Int, stride: Int, count: Int
        let rows: UnsafeMutablePointer<Float>
        let gradients: UnsafeMutablePointer<Float>
        init(ids: [UInt64], dim: Int, seed: UInt64, optimizer: SparseOptimizer) {
            self.dim = dim; stride = 2 * dim; count = ids.count
            rows = .allocate(capacity: ids.count * 2 * dim); rows.initialize(repeating: 0, count: ids.count * 2 * dim)
            gradients = .allocate(capacity: ids.count * dim); gradients.initialize(repeating: 0, count: ids.count * dim)
            let initializer = RowInitializer(config: .normal(mean: 0, stddev: 0.1, seed: seed), dim: dim)
            for (n, id) in ids.enumerated() {
                initializer.fill(rows + n * stride, rowKey: id)
                optimizer.initializeState(rows + n * stride)
            }
        }
        deinit { rows.deallocate(); gradients.deallocate() }
        func weights(_ n: Int) -> UnsafeMutablePointer<Float> { rows + n * stride }
        func gradient(_ n: Int) -> UnsafeMutablePointer<Float> { gradients + n * dim }
        /// Applies and clears the gradients of `touched` rows.
        func apply(_ touched: Set<Int>, _ optimizer: SparseOptimizer) {
            var step: UInt32 = 0
            for row in touched {
                optimizer.apply(weights(row), gradient: gradient(row), step: &step)
                gradient(row).update(repeating: 0, count: dim)
            }
        }
    }

    /// Trains on `data` and returns test Recall@20 and the final validation Recall@20.
    func run(_ data: InteractionData) -> (test: Double, validation: Double) {
        let split = InteractionSplit(data)
        var opt = OptimizerConfig(kind: .adagrad, learningRate: learningRate)
        opt.initialAccumulator = 0.1
        let optimizer = SparseOptimizer(config: opt, dim: dim)
        // The trainer seeds the user table with `seed`, the item table with `seed + 1`, the history table with `seed + 2`.
        let users = Rows(ids: data.userIds, dim: dim, seed: seed, optimizer: optimizer)
        let items = Rows(ids: data.itemIds, dim: dim, seed: seed &+ 1, optimizer: optimizer)
        let history = Rows(ids: data.itemIds, dim: dim, seed: seed &+ 2, optimizer: optimizer)
        // Each train pair's first position in its user's sequence.
        var position: [Int: Int] = [:]
        let nItems = data.itemIds.count
        for (u, s) in split.trainSequences.enumerated() {
            for (k, i) in s.enumerated() where position[u * nItems + i] == nil { position[u * nItems + i] = k }
        }
        let sampler = SoftmaxCandidates(items: nItems, negatives: negatives, popularity: split.itemPopularity, batchSize: batchSize,
                                        eligible: split.trainableItems)
        let examples = split.train
        forEachTrainerBatch(examples, seed: seed, epochs: epochs, batchSize: batchSize) { batch, rng in
            let (candidates, logQ) = sampler.draw(positives: batch.map(\.item), rng: &rng)
            let candidatePosition = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($1, $0) })
            // Example vectors: the user's row plus its context's weighted history rows (rows as before the batch).
            let exampleUsers = UnsafeMutablePointer<Float>.allocate(capacity: batch.count * dim)
            let candidateRows = UnsafeMutablePointer<Float>.allocate(capacity: candidates.count * dim)
            let gu = UnsafeMutablePointer<Float>.allocate(capacity: batch.count * dim), gc = UnsafeMutablePointer<Float>.allocate(capacity: candidates.count * dim)
            let logits = UnsafeMutablePointer<Float>.allocate(capacity: batch.count * candidates.count)
            defer { exampleUsers.deallocate(); candidateRows.deallocate(); gu.deallocate(); gc.deallocate(); logits.deallocate() }
            let contexts = batch.map { ex in recency.context(of: split.trainSequences[ex.user], before: position[ex.user * nItems + ex.item]!) }
            for (b, ex) in batch.enumerated() {
                let v = exampleUsers + b * dim
                v.update(from: users.weights(ex.user), count: dim)
                for x in contexts[b] {
                    let h = history.weights(x.item)
                    for k in 0..<dim { v[k] += x.weight * h[k] }
                }
            }
            for (c, i) in candidates.enumerated() { (candidateRows + c * dim).update(from: items.weights(i), count: dim) }
            SoftmaxModel.lossAndGradients(users: exampleUsers, batch: batch.count, candidates: candidateRows, count: candidates.count, dim: dim,
                                          positives: batch.map { candidatePosition[$0.item]! }, logQ: logQ, l2: l2,
                                          gu: gu, gc: gc, logits: logits)
            // Back to the rows: users sum their examples, history rows their weighted share (+ 2 l2 row once
            // per batch), items their candidate gradient.
            var touchedUsers = Set<Int>(), touchedHistory = Set<Int>()
            for (b, ex) in batch.enumerated() {
                touchedUsers.insert(ex.user)
                let e = gu + b * dim, g = users.gradient(ex.user)
                for k in 0..<dim { g[k] += e[k] }
                for x in contexts[b] {
                    touchedHistory.insert(x.item)
                    let h = history.gradient(x.item)
                    for k in 0..<dim { h[k] += x.weight * e[k] }
                }
            }
            for row in touchedHistory {
                let w = history.weights(row), g = history.gradient(row)
                for k in 0..<dim { g[k] += 2 * l2 * w[k] }
            }
            for (c, i) in candidates.enumerated() {
                let g = items.gradient(i), e = gc + c * dim
                for k in 0..<dim { g[k] += e[k] }
            }
            users.apply(touchedUsers, optimizer)
            items.apply(Set(candidates), optimizer)
            history.apply(touchedHistory, optimizer)
        }
        // Serving vectors: the user row plus the context at the end of the train sequence.
        var u = [Float](repeating: 0, count: data.userIds.count * dim)
        for user in 0..<data.userIds.count {
            let w = users.weights(user)
            for k in 0..<dim { u[user * dim + k] = w[k] }
            let s = split.trainSequences[user]
            for x in recency.context(of: s, before: s.count) {
                let h = history.weights(x.item)
                for k in 0..<dim { u[user * dim + k] += x.weight * h[k] }
            }
        }
        let q = (0..<nItems).flatMap { Array(UnsafeBufferPointer(start: items.weights($0), count: dim)) }
        let evaluator = RankingEvaluator(split: split)
        let validation = evaluator.evaluate(model: "twin", heldOut: split.validation, userVectors: u, itemVectors: q, dim: dim, items: nItems)
        let test = evaluator.evaluate(model: "twin", heldOut: split.test, exclude: split.validation, userVectors: u, itemVectors: q, dim: dim, items: nItems)
        return (test.recallAt20, validation.recallAt20)
    }
}
