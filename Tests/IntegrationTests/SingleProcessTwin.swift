import Foundation
import Engine
import Vocabulary
import Training

/// The trainer's MF-BPR run in one process without shards: the same split, batch order, negatives
/// (`TrainingSampling`, the trainer's own draws), BPR gradients, row initializer and the shard's Adagrad code
/// (`SparseOptimizer`), applied synchronously to in-memory rows. What it leaves out is exactly what the PS
/// adds: the wire, sharding, the cache and storage tier. Used to check that training through EmbedPS does
/// not cost model quality.
struct SingleProcessTwin {
    var dim = 32, epochs = 20, batchSize = 1024
    var learningRate: Float = 0.05, l2: Float = 1e-4
    var seed: UInt64 = 1

    /// Trains on `data` and returns test Recall@20 and the final validation Recall@20 (as the PS report has them).
    func run(_ data: InteractionData) -> (test: Double, validation: Double) {
        let split = InteractionSplit(data)
        var opt = OptimizerConfig(kind: .adagrad, learningRate: learningRate)
        opt.initialAccumulator = 0.1
        let optimizer = SparseOptimizer(config: opt, dim: dim)
        let stride = 2 * dim  // weights, then the Adagrad accumulator
        func table(_ ids: [UInt64], seed: UInt64) -> [Float] {
            let initializer = RowInitializer(config: .normal(mean: 0, stddev: 0.1, seed: seed), dim: dim)
            var rows = [Float](repeating: 0, count: ids.count * stride)
            rows.withUnsafeMutableBufferPointer { r in
                for (n, id) in ids.enumerated() {
                    initializer.fill(r.baseAddress! + n * stride, rowKey: id)
                    optimizer.initializeState(r.baseAddress! + n * stride)
                }
            }
            return rows
        }
        // The trainer seeds the user table with `seed` and the item table with `seed + 1`.
        var users = table(data.userIds, seed: seed), items = table(data.itemIds, seed: seed &+ 1)
        let examples = split.train, pool = split.trainableItems
        var step: UInt32 = 0
        let gu = UnsafeMutablePointer<Float>.allocate(capacity: data.userIds.count * dim), gi = UnsafeMutablePointer<Float>.allocate(capacity: data.itemIds.count * dim)
        gu.initialize(repeating: 0, count: data.userIds.count * dim); gi.initialize(repeating: 0, count: data.itemIds.count * dim)
        defer { gu.deallocate(); gi.deallocate() }
        forEachTrainerBatch(examples, seed: seed, epochs: epochs, batchSize: batchSize) { batch, rng in
            let negatives = TrainingSampling.negatives(for: batch, trainItemsByUser: split.trainItemsByUser, rng: &rng) {
                pool[Int($0.next() % UInt64(pool.count))]
            }
            // Gradients against the rows as they were before the batch (what a pull returns), summed per row;
            // a negative equal to the positive accumulates into the same row, as in the trainer.
            var touchedUsers = Set<Int>(), touchedItems = Set<Int>()
            users.withUnsafeBufferPointer { u in
                items.withUnsafeBufferPointer { q in
                    for (n, ex) in batch.enumerated() {
                        let j = negatives[n]
                        touchedUsers.insert(ex.user); touchedItems.insert(ex.item); touchedItems.insert(j)
                        BPRModel.accumulateGradients(user: u.baseAddress! + ex.user * stride, positive: q.baseAddress! + ex.item * stride,
                                                     negative: q.baseAddress! + j * stride, dim: dim, l2: l2,
                                                     gu: gu + ex.user * dim, gi: gi + ex.item * dim, gj: gi + j * dim)
                    }
                }
            }
            users.withUnsafeMutableBufferPointer { u in
                for row in touchedUsers { optimizer.apply(u.baseAddress! + row * stride, gradient: gu + row * dim, step: &step); (gu + row * dim).update(repeating: 0, count: dim) }
            }
            items.withUnsafeMutableBufferPointer { q in
                for row in touchedItems { optimizer.apply(q.baseAddress! + row * stride, gradient: gi + row * dim, step: &step); (gi + row * dim).update(repeating: 0, count: dim) }
            }
        }
        // Evaluate on the weights (the first `dim` floats of each row).
        func weights(_ rows: [Float], count: Int) -> [Float] {
            (0..<count).flatMap { rows[$0 * stride..<$0 * stride + dim] }
        }
        let u = weights(users, count: data.userIds.count), q = weights(items, count: data.itemIds.count)
        let evaluator = RankingEvaluator(split: split)
        let validation = evaluator.evaluate(model: "twin", heldOut: split.validation, userVectors: u, itemVectors: q, dim: dim, items: data.itemIds.count)
        let test = evaluator.evaluate(model: "twin", heldOut: split.test, exclude: split.validation, userVectors: u, itemVectors: q, dim: dim, items: data.itemIds.count)
        return (test.recallAt20, validation.recallAt20)
    }
}

/// The trainer's batches for one worker of one (rank 0 of 1): per epoch the seeded shuffle of `examples`, then
/// batches of `batchSize` in that order; `body` gets each batch and the epoch's generator, for the draws the
/// trainer makes after the shuffle.
func forEachTrainerBatch(_ examples: [(user: Int, item: Int)], seed: UInt64, epochs: Int, batchSize: Int,
                         _ body: ([(user: Int, item: Int)], inout SplitMix64) -> Void) {
    for epoch in 0..<epochs {
        var rng = TrainingSampling.epochGenerator(seed: seed, rank: 0, epoch: epoch)
        let order = TrainingSampling.shuffledIndices(examples.count, rng: &rng)
        var done = 0
        while done < order.count {
            body(order[done..<min(order.count, done + batchSize)].map { examples[$0] }, &rng)
            done += batchSize
        }
    }
}
