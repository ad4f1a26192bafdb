import Testing
import Foundation
@testable import Training
import Vocabulary
import Client

@Suite struct BPRGradientTests {
    @Test func analyticGradientsMatchFiniteDifferences() {
        let dim = 5, l2: Float = 0.01
        var p: [Float] = [0.3, -0.2, 0.5, 0.1, -0.4], qi: [Float] = [0.2, 0.1, -0.3, 0.4, 0.05], qj: [Float] = [-0.1, 0.3, 0.2, -0.2, 0.15]
        var gu = [Float](repeating: 0, count: dim), gi = gu, gj = gu
        BPRModel.accumulateGradients(user: p, positive: qi, negative: qj, dim: dim, l2: l2, gu: &gu, gi: &gi, gj: &gj)
        func loss() -> Double { Double(BPRModel.loss(user: p, positive: qi, negative: qj, dim: dim, l2: l2)) }
        let h: Float = 1e-2
        for k in 0..<dim {
            for (vec, grad) in [(0, gu), (1, gi), (2, gj)] {
                func bump(_ d: Float) { if vec == 0 { p[k] += d } else if vec == 1 { qi[k] += d } else { qj[k] += d } }
                bump(h); let up = loss(); bump(-2 * h); let down = loss(); bump(h)
                let numeric = (up - down) / Double(2 * h)
                #expect(abs(numeric - Double(grad[k])) < 1e-3, "vector \(vec) coordinate \(k): numeric \(numeric) analytic \(grad[k])")
            }
        }
    }

    @Test func lossIsStableForLargeMargins() {
        let p: [Float] = [100], qi: [Float] = [100], qj: [Float] = [-100]
        let l = BPRModel.loss(user: p, positive: qi, negative: qj, dim: 1, l2: 0)
        #expect(l.isFinite && l >= 0 && l < 1e-6)
        let worst = BPRModel.loss(user: p, positive: qj, negative: qi, dim: 1, l2: 0)
        #expect(abs(worst - 20000) < 1)
    }
}

@Suite struct SplitAndMetricTests {
    static let data = InteractionData(interactions: [
        .init(user: 7, item: 1, rating: 5), .init(user: 7, item: 2, rating: 4), .init(user: 7, item: 3, rating: 3), .init(user: 7, item: 4, rating: 5),
        .init(user: 9, item: 2, rating: 5), .init(user: 9, item: 3, rating: 1), .init(user: 9, item: 1, rating: 2),
        .init(user: 11, item: 4, rating: 5),
    ])

    @Test func leaveLastOutUsesFileOrderPerUser() {
        let s = InteractionSplit(Self.data)
        // user 7 (index 0): train items 1,2; validation 3; test 4. user 9: train 2; validation 3; test 1. user 11: train only.
        #expect(s.test.map { [$0.user, $0.item] } == [[0, 3], [1, 0]])
        #expect(s.validation.map { [$0.user, $0.item] } == [[0, 2], [1, 2]])
        #expect(s.train.count == 4)
        #expect(s.trainItemsByUser[2] == [3])
        #expect(s.itemPopularity == [1, 2, 0, 1])
    }

    @Test func trainInFileOrderKeepsTheStreamOrderAndHoldsOutTheSamePairs() {
        // Users interleaved in time: 7 rates 1,2,3,4; 9 rates 2,3,1; 11 rates 4.
        let data = InteractionData(interactions: [
            .init(user: 7, item: 1, rating: 5), .init(user: 9, item: 2, rating: 5), .init(user: 7, item: 2, rating: 4), .init(user: 11, item: 4, rating: 5),
            .init(user: 9, item: 3, rating: 1), .init(user: 7, item: 3, rating: 3), .init(user: 9, item: 1, rating: 2), .init(user: 7, item: 4, rating: 5),
        ])
        let s = InteractionSplit(data)
        // Dense indices: users 7, 9, 11 -> 0, 1, 2; items 1..4 -> 0..3.
        #expect(s.trainInFileOrder.map { [$0.user, $0.item] } == [[0, 0], [1, 1], [0, 1], [2, 3]])
        #expect(s.trainInFileOrder.map { [$0.user, $0.item] }.sorted { $0.lexicographicallyPrecedes($1) }
                == s.train.map { [$0.user, $0.item] }.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(s.test.map { [$0.user, $0.item] } == [[0, 3], [1, 0]])
    }

    @Test func recallAndNdcgFollowTheHeldOutRank() {
        let s = InteractionSplit(Self.data)
        let e = RankingEvaluator(split: s)
        // One user, dim 1: item scores = item vector values; user 0's train items (0, 1) are masked.
        let users: [Float] = [1, 1, 1]
        let items: [Float] = [9, 8, 1, 5]
        let m = e.evaluate(model: "t", heldOut: [(0, 3)], userVectors: users, itemVectors: items, dim: 1, items: 4)
        // Unmasked: item 3 (5) and item 2 (1): item 3 ranks first.
        #expect(m.recallAt20 == 1 && abs(m.ndcgAt20 - 1) < 1e-12)
        let m2 = e.evaluate(model: "t", heldOut: [(0, 2)], userVectors: users, itemVectors: items, dim: 1, items: 4)
        #expect(m2.recallAt20 == 1 && abs(m2.ndcgAt20 - 1 / log2(3.0)) < 1e-12)
        // Item 2 (dense index 2) never occurs in train: it is a new item.
        #expect(m2.newItemUsers == 1 && m2.newItemRecallAt20 == 1 && m.newItemUsers == 0)
    }

    @Test func itemColdSplitHoldsOutWholeItemsInTwoDisjointHalves() {
        // 40 items, 12 users; user u rates items u, u+3, u+6, ... (every item has several users).
        var interactions: [Interaction] = []
        for u in 0..<12 { for i in stride(from: u % 40, to: 40, by: 3) { interactions.append(.init(user: UInt64(100 + u), item: UInt64(1000 + i), rating: 4)) } }
        interactions.append(interactions[0])  // a pair rated twice is held out once
        let data = InteractionData(interactions: interactions)
        let s = InteractionSplit(itemColdFrom: data, fraction: 0.2, seed: 3)
        #expect(s.kind == .itemCold)
        #expect(s.validationCandidates.count == 4 && s.testCandidates.count == 4)
        let held = Set(s.validationCandidates + s.testCandidates)
        #expect(Set(s.validationCandidates).isDisjoint(with: s.testCandidates))
        #expect(s.train.allSatisfy { !held.contains($0.item) })
        #expect(s.trainableItems == (0..<40).filter { !held.contains($0) })
        #expect(s.validation.allSatisfy { s.validationCandidates.contains($0.item) })
        #expect(s.test.allSatisfy { s.testCandidates.contains($0.item) })
        // Every interaction is in exactly one part, the duplicate pair counted once.
        let duplicateHeld = held.contains(data.itemIndex[1000]!)
        #expect(s.train.count + s.validation.count + s.test.count == interactions.count - (duplicateHeld ? 1 : 0))
        let heldPairs = s.validation.map { [$0.user, $0.item] } + s.test.map { [$0.user, $0.item] }
        #expect(Set(heldPairs).count == heldPairs.count)
        #expect(s.itemPopularity.enumerated().allSatisfy { held.contains($0.offset) ? $0.element == 0 : $0.element > 0 })
        // The same seed chooses the same items; another seed other items.
        #expect(InteractionSplit(itemColdFrom: data, fraction: 0.2, seed: 3).testCandidates == s.testCandidates)
        #expect(InteractionSplit(itemColdFrom: data, fraction: 0.2, seed: 4).testCandidates != s.testCandidates)
    }

    @Test func candidateRestrictedRecallCountsEveryHeldOutItemOfAUser() {
        let s = InteractionSplit(Self.data)
        let e = RankingEvaluator(split: s)
        // dim 1, user vector 1: a candidate's score is its item value. 25 candidates (items 0..<25), scores 25 - i.
        let items = (0..<30).map { Float(25 - $0) }
        let users: [Float] = [1, 1]
        let candidates = Array(0..<25)
        // User 0 holds out items 2 (rank 2) and 22 (rank 22, outside the top 20): recall 1/2.
        // User 1 holds out item 0 (rank 0): recall 1.
        let m = e.evaluate(model: "t", heldOut: [(0, 2), (0, 22), (1, 0)], candidates: candidates, userVectors: users, itemVectors: items, dim: 1)
        #expect(m.users == 2 && abs(m.recallAt20 - 0.75) < 1e-12)
        let ndcg0 = (1 / log2(4.0)) / (1 + 1 / log2(3.0))
        #expect(abs(m.ndcgAt20 - (ndcg0 + 1) / 2) < 1e-12)
        #expect(m.newItemUsers == 2 && m.tailUsers == 0)
        // Ties count against the held-out item: every score equal puts user 1's item last among 25.
        let flat = [Float](repeating: 0, count: 30)
        let tied = e.evaluate(model: "t", heldOut: [(1, 0)], candidates: candidates, userVectors: users, itemVectors: flat, dim: 1)
        #expect(tied.recallAt20 == 0)
    }

    @Test func popularityAmongHeldOutItemsLeavesTheUserOut() {
        let e = RankingEvaluator(split: InteractionSplit(Self.data))
        // Item 5 is held out by users 0, 1, 2; item 6 by users 3, 4; item 7 by user 0 only.
        let heldOut = [(0, 5), (1, 5), (2, 5), (3, 6), (4, 6), (0, 7)]
        let m = e.evaluatePopularity(heldOut: heldOut, candidates: [5, 6, 7])
        #expect(m.users == 5 && m.recallAt20 == 1)  // 3 candidates: everything is in the top 20
        // Users 1 and 2: item 5 scores 2 (the other two), tied with item 6 (2): ties count against it, rank 1.
        // Users 3 and 4: item 6 scores 1, below item 5 (3) and tied with item 7 (1): rank 2.
        // User 0: items 5 (2) and 7 (0) against 6 (2): the tie puts 5 after 6, so ranks 1 and 2.
        let user0 = (1 / log2(3.0) + 1 / log2(4.0)) / (1 + 1 / log2(3.0))
        let expected = (user0 + 2 / log2(3.0) + 2 / log2(4.0)) / 5
        #expect(abs(m.ndcgAt20 - expected) < 1e-12, "ndcg \(m.ndcgAt20) expected \(expected)")
    }

    @Test func userHistoryLeavesTheTargetOutAndItsGradientsMatchFiniteDifferences() {
        // Train items: user 0 -> {0, 1}, user 1 -> {1}, user 2 -> {3}. Rows of items 0, 1, 3 (dim 2).
        let s = InteractionSplit(Self.data)
        let dim = 2
        let rows = FloatBuffer([0.5, -1, 2, 0.25, -0.5, 3])
        func history() -> UserHistory { UserHistory(users: [0, 1, 2], split: s, dim: dim, items: [0, 1, 3], itemIds: [1, 2, 4], rows: rows) }
        // User 0 training on item 0: the mean of the other history rows = row of item 1.
        var v: [Float] = [0, 0]
        history().addLeavingOut(item: 0, user: 0, into: &v)
        #expect(v == [2, 0.25])
        // User 1 has one history item: training on it leaves the history as it is (nothing else to average).
        v = [0, 0]; history().addLeavingOut(item: 1, user: 1, into: &v)
        #expect(v == [2, 0.25])
        v = [0, 0]; history().addMean(user: 0, into: &v)
        #expect(v == [1.25, -0.375])
        // L = sum_b <w_b, userVector_b> is linear in the rows: the analytic gradient is exact.
        let examples = [0, 1, 1, 3], users = [0, 0, 1, 2]
        let w: [Float] = [1, 2, -1, 0.5, 0.25, -2, 3, 1]
        let g = w.withUnsafeBufferPointer { history().gradients(examples: examples, exampleUser: users, exampleGradients: $0.baseAddress!, l2: 0) }
        Self.expectExactLinearGradient(rows: rows, analytic: g, weights: w, vectors: examples.count, dim: dim) { b, u in
            history().addLeavingOut(item: examples[b], user: users[b], into: u)
        }
    }

    /// For L = sum_b <w_b, vector_b>, where `add(b, v)` adds vector b (linear in `rows`) to v: every entry of
    /// `analytic` equals L's change when that entry of `rows` grows by 1 (exact for a linear map).
    static func expectExactLinearGradient(rows: FloatBuffer, analytic g: FloatBuffer, weights w: [Float], vectors: Int, dim: Int,
                                          add: (Int, UnsafeMutablePointer<Float>) -> Void) {
        func loss() -> Float {
            var total: Float = 0
            for b in 0..<vectors {
                var u = [Float](repeating: 0, count: dim)
                add(b, &u)
                for k in 0..<dim { total += u[k] * w[dim * b + k] }
            }
            return total
        }
        for x in 0..<rows.count {
            let before = loss()
            rows.base[x] += 1
            let numeric = loss() - before
            rows.base[x] -= 1
            #expect(abs(numeric - g.base[x]) < 1e-5, "row entry \(x): numeric \(numeric) analytic \(g.base[x])")
        }
    }

    @Test func recencyContextsReadOnlyEarlierItemsAndTheirGradientsMatchFiniteDifferences() {
        // Train sequences (dense items): user 0 -> [0, 1] (items 3 and 4 held out), user 1 -> [1], user 2 -> [3].
        let s = InteractionSplit(Self.data)
        #expect(s.trainSequences == [[0, 1], [1], [3]])
        let r = RecencyWeights(decay: 0.5, window: 2)
        // Weights 1, 0.5, 0.25 ... from the latest item back, normalised; the window keeps the last 2.
        let five = [7, 8, 9, 10, 11]
        let c = r.context(of: five, before: 5)
        #expect(c.map(\.item) == [11, 10] && abs(c[0].weight - 2 / 3) < 1e-6 && abs(c[1].weight - 1 / 3) < 1e-6)
        #expect(r.context(of: five, before: 0).isEmpty)
        #expect(r.context(of: five, before: 1).map(\.item) == [7])
        #expect(RecencyWeights(decay: 1, window: 20).context(of: five, before: 4).map(\.weight) == [0.25, 0.25, 0.25, 0.25])
        // Positions: a pair's first position in its user's sequence, so its context holds only earlier items.
        let positions = SequencePositions(split: s, items: 4)
        #expect(positions.position(user: 0, item: 1) == 1 && positions.position(user: 0, item: 0) == 0)
        #expect(positions.position(user: 0, item: 2) == nil)
        let repeated = InteractionSplit(InteractionData(interactions: [
            .init(user: 1, item: 5, rating: 1), .init(user: 1, item: 6, rating: 1), .init(user: 1, item: 5, rating: 1),
            .init(user: 1, item: 7, rating: 1), .init(user: 1, item: 8, rating: 1), .init(user: 1, item: 9, rating: 1)]))
        #expect(repeated.trainSequences == [[0, 1, 0, 2]])
        #expect(SequencePositions(split: repeated, items: 5).position(user: 0, item: 0) == 0)
        // L = sum_c <w_c, context vector c> is linear in the rows: the analytic gradient is exact.
        let dim = 2
        let rows = FloatBuffer([0.5, -1, 2, 0.25, -0.5, 3])  // items 0, 1, 3
        let contexts = [r.context(of: [0, 1, 3], before: 3), r.context(of: [3, 0], before: 1), [], r.context(of: [1, 1], before: 2)]
        func history() -> RecentHistory { RecentHistory(contexts: contexts, dim: dim, items: [0, 1, 3], itemIds: [1, 2, 4], rows: rows) }
        var v: [Float] = [1, 1]
        history().add(context: 0, into: &v)  // 2/3 row(3) + 1/3 row(1)
        #expect(abs(v[0] - (1 + 2.0 / 3 * -0.5 + 1.0 / 3 * 2)) < 1e-6 && abs(v[1] - (1 + 2.0 / 3 * 3 + 1.0 / 3 * 0.25)) < 1e-6)
        v = [1, 1]; history().add(context: 2, into: &v)
        #expect(v == [1, 1])  // an empty context (a sequence's first item) adds nothing
        let w: [Float] = [1, 2, -1, 0.5, 0.25, -2, 3, 1]
        let g = w.withUnsafeBufferPointer { history().gradients(contextGradients: $0.baseAddress!, l2: 0) }
        Self.expectExactLinearGradient(rows: rows, analytic: g, weights: w, vectors: contexts.count, dim: dim) { c, u in
            history().add(context: c, into: u)
        }
        let withL2 = w.withUnsafeBufferPointer { history().gradients(contextGradients: $0.baseAddress!, l2: 0.5) }
        for x in 0..<6 { #expect(abs(withL2.base[x] - g.base[x] - rows.base[x]) < 1e-6) }
    }

    @Test func contentProjectionGradientMatchesFiniteDifferences() {
        // 3 items with 4-d content, dim 2. L = sum of <G_i, item_i> with item = C W: dL/dW = C^T G exactly.
        let c: [Float] = [0.1, -0.2, 0.3, 0.4, 0.5, 0.0, -0.1, 0.2, -0.3, 0.6, 0.2, -0.5]
        var w: [Float] = [0.3, -0.1, 0.2, 0.5, -0.4, 0.1, 0.05, -0.2]
        let g: [Float] = [1, -2, 0.5, 0.25, -1, 3]
        func loss() -> Float {
            var items = [Float](repeating: 0.7, count: 6)  // the projection adds to what is there
            ItemTower.addProjection(content: c, items: 3, contentDim: 4, weights: w, dim: 2, into: &items)
            return zip(items, g).reduce(0) { $0 + ($1.0 - 0.7) * $1.1 }
        }
        var gw = [Float](repeating: 9, count: 8)
        ItemTower.projectionGradient(content: c, items: 3, contentDim: 4, itemGradients: g, dim: 2, into: &gw)
        for x in 0..<8 {
            let before = loss()
            w[x] += 0.5
            let numeric = (loss() - before) / 0.5
            w[x] -= 0.5
            #expect(abs(numeric - gw[x]) < 1e-4, "weight \(x): numeric \(numeric) analytic \(gw[x])")
        }
    }

    @Test func gzipRatingsFileLoads() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("r.csv")
        try "user_id,book_id,rating\n1,10,5\n2,10,3\n".write(to: csv, atomically: true, encoding: .utf8)
        let p = Process(); p.executableURL = URL(fileURLWithPath: "/bin/gzip"); p.arguments = [csv.path]
        try p.run(); p.waitUntilExit()
        let d = try InteractionData.load(path: csv.path + ".gz")
        #expect(d.interactions == [.init(user: 1, item: 10, rating: 5), .init(user: 2, item: 10, rating: 3)])
        #expect(throws: DataError.self) { try InteractionData.load(path: dir.appendingPathComponent("missing.csv.gz").path) }
    }
}

@Suite struct TrainerMetricsTests {
    @Test func progressIsExposedInPrometheusText() throws {
        let m = TrainerMetrics(rank: 3)
        m.epoch.store(2, ordering: .relaxed); m.totalEpochs.store(20, ordering: .relaxed)
        m.batchDone(examples: 1024, rows: 3000, meanLoss: 0.5)
        m.batchDone(examples: 512, rows: 1000, meanLoss: 0.25)
        let text = m.text
        #expect(text.contains("embedps_trainer_epoch{rank=\"3\"} 2\n"))
        #expect(text.contains("embedps_trainer_examples_total{rank=\"3\"} 1536\n"))
        #expect(text.contains("embedps_trainer_rows_moved_total{rank=\"3\"} 4000\n"))
        #expect(text.contains("embedps_trainer_epoch_mean_loss{rank=\"3\"} 0.25\n"))
        #expect(text.contains("# TYPE embedps_trainer_batches_total counter"))
    }
}

@Suite struct SoftmaxModelTests {
    /// Deterministic small values in [-0.5, 0.5).
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in Float(rng.next() % 1000) / 1000 - 0.5 }
    }

    static func loss(_ users: [Float], _ cands: [Float], batch: Int, count: Int, dim: Int, positives: [Int], logQ: [Float], l2: Float) -> Double {
        var gu = [Float](repeating: 0, count: batch * dim), gc = [Float](repeating: 0, count: count * dim)
        var logits = [Float](repeating: 0, count: batch * count)
        return Double(SoftmaxModel.lossAndGradients(users: users, batch: batch, candidates: cands, count: count, dim: dim,
                                                    positives: positives, logQ: logQ, l2: l2, gu: &gu, gc: &gc, logits: &logits))
    }

    static func cosineLoss(_ users: [Float], _ cands: [Float], batch: Int, count: Int, dim: Int, positives: [Int], logQ: [Float], l2: Float, t: Float) -> Double {
        var gu = [Float](repeating: 0, count: batch * dim), gc = [Float](repeating: 0, count: count * dim)
        var logits = [Float](repeating: 0, count: batch * count)
        return Double(SoftmaxModel.cosineLossAndGradients(users: users, batch: batch, candidates: cands, count: count, dim: dim, positives: positives,
                                                          logQ: logQ, l2: l2, temperature: t, gu: &gu, gc: &gc, logits: &logits))
    }

    /// Cosine scores with a temperature: gradients through the normalisation match finite differences (in
    /// double-checked float: a coarse step and tolerance, the loss is steep at t = 0.2), and scaling a row
    /// changes no score (only the l2 term).
    @Test func cosineGradientsMatchFiniteDifferencesAndIgnoreRowLengths() {
        let batch = 3, count = 5, dim = 4, l2: Float = 0.02, t: Float = 0.2
        var users = Self.values(batch * dim, seed: 5), cands = Self.values(count * dim, seed: 6)
        let positives = [1, 4, 0], logQ: [Float] = [-1.2, -0.3, -2.0, -0.7, -1.5]
        var gu = [Float](repeating: 0, count: batch * dim), gc = [Float](repeating: 0, count: count * dim)
        var logits = [Float](repeating: 0, count: batch * count)
        SoftmaxModel.cosineLossAndGradients(users: users, batch: batch, candidates: cands, count: count, dim: dim, positives: positives,
                                            logQ: logQ, l2: l2, temperature: t, gu: &gu, gc: &gc, logits: &logits)
        let h: Float = 2e-3
        func numeric(_ bump: (Float) -> Void) -> Double {
            bump(h); let up = Self.cosineLoss(users, cands, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: l2, t: t)
            bump(-2 * h); let down = Self.cosineLoss(users, cands, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: l2, t: t)
            bump(h)
            return (up - down) / Double(2 * h)
        }
        for k in 0..<(batch * dim) {
            let n = numeric { users[k] += $0 }
            #expect(abs(n - Double(gu[k])) < 2e-2 * max(1, abs(n)), "user coordinate \(k): numeric \(n) analytic \(gu[k])")
        }
        for k in 0..<(count * dim) {
            let n = numeric { cands[k] += $0 }
            #expect(abs(n - Double(gc[k])) < 2e-2 * max(1, abs(n)), "candidate coordinate \(k): numeric \(n) analytic \(gc[k])")
        }
        let base = Self.cosineLoss(users, cands, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: 0, t: t)
        let longer = Self.cosineLoss(users.map { $0 * 3 }, cands.map { $0 * 0.5 }, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: 0, t: t)
        #expect(abs(base - longer) < 1e-4, "row lengths changed the loss: \(base) vs \(longer)")
    }

    @Test func analyticGradientsMatchFiniteDifferences() {
        let batch = 3, count = 5, dim = 4, l2: Float = 0.02
        var users = Self.values(batch * dim, seed: 1), cands = Self.values(count * dim, seed: 2)
        let positives = [0, 3, 3], logQ: [Float] = [-1.2, -0.3, -2.0, -0.7, -1.5]
        var gu = [Float](repeating: 0, count: batch * dim), gc = [Float](repeating: 0, count: count * dim)
        var logits = [Float](repeating: 0, count: batch * count)
        SoftmaxModel.lossAndGradients(users: users, batch: batch, candidates: cands, count: count, dim: dim,
                                      positives: positives, logQ: logQ, l2: l2, gu: &gu, gc: &gc, logits: &logits)
        let h: Float = 1e-2
        func numeric(_ bump: (Float) -> Void) -> Double {
            bump(h); let up = Self.loss(users, cands, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: l2)
            bump(-2 * h); let down = Self.loss(users, cands, batch: batch, count: count, dim: dim, positives: positives, logQ: logQ, l2: l2)
            bump(h)
            return (up - down) / Double(2 * h)
        }
        for k in 0..<(batch * dim) {
            let n = numeric { users[k] += $0 }
            #expect(abs(n - Double(gu[k])) < 2e-3, "user coordinate \(k): numeric \(n) analytic \(gu[k])")
        }
        for k in 0..<(count * dim) {
            let n = numeric { cands[k] += $0 }
            #expect(abs(n - Double(gc[k])) < 2e-3, "candidate coordinate \(k): numeric \(n) analytic \(gc[k])")
        }
    }

    @Test func lossIsLogOfCountForEqualScoresAndStableForLargeOnes() {
        // All-zero vectors: every logit is 0, each example's loss is log(count).
        let zeros = [Float](repeating: 0, count: 8)
        let l = Self.loss(zeros, zeros, batch: 2, count: 4, dim: 2, positives: [1, 2], logQ: [0, 0, 0, 0], l2: 0)
        #expect(abs(l - 2 * log(4.0)) < 1e-5)
        // A positive far ahead of the rest: loss near 0 and finite; far behind: loss near the margin.
        let u: [Float] = [50, 0], v: [Float] = [50, 0, -50, 0]
        let good = Self.loss(u, v, batch: 1, count: 2, dim: 2, positives: [0], logQ: [0, 0], l2: 0)
        let bad = Self.loss(u, v, batch: 1, count: 2, dim: 2, positives: [1], logQ: [0, 0], l2: 0)
        #expect(good.isFinite && good >= 0 && good < 1e-6)
        #expect(abs(bad - 5000) < 1)
    }

    @Test func candidatesAreSortedUniqueAndHoldEveryPositive() {
        let items = 200
        let popularity = (0..<items).map { ($0 % 7) + 1 }
        let sampler = SoftmaxCandidates(items: items, negatives: 30, popularity: popularity, batchSize: 16)
        #expect(!sampler.isFull)
        var rng = SplitMix64(seed: 42)
        var seen = Set<Int>()
        for round in 0..<50 {
            let positives = (0..<16).map { ($0 * 37 + round * 11) % items }
            let (candidates, logQ) = sampler.draw(positives: positives, rng: &rng)
            #expect(candidates == candidates.sorted() && Set(candidates).count == candidates.count)
            #expect(Set(positives).isSubset(of: Set(candidates)))
            // 30 distinct negatives, some possibly among the positives.
            #expect(candidates.count >= 30 && candidates.count <= 30 + Set(positives).count)
            #expect(logQ.count == candidates.count && logQ.allSatisfy { $0.isFinite && $0 < log(Float(items)) })
            seen.formUnion(candidates)
        }
        // Uniform negatives reach most of the catalogue over 50 rounds (expected coverage > 99%).
        #expect(seen.count > items * 9 / 10)
    }

    @Test func negativesComeOnlyFromEligibleItems() {
        let items = 50
        let eligible = (0..<items).filter { $0 % 5 != 0 }
        let sampler = SoftmaxCandidates(items: items, negatives: 20, popularity: (0..<items).map { $0 % 5 == 0 ? 0 : 2 }, batchSize: 4, eligible: eligible)
        var rng = SplitMix64(seed: 11)
        for _ in 0..<30 {
            let (candidates, _) = sampler.draw(positives: [1, 2], rng: &rng)
            #expect(candidates.allSatisfy { $0 % 5 != 0 })
        }
        let full = SoftmaxCandidates(items: items, negatives: 0, popularity: [Int](repeating: 1, count: items), batchSize: 4, eligible: eligible)
        #expect(full.isFull && full.draw(positives: [1], rng: &rng).candidates == eligible)
    }

    @Test func zeroOrTooManyNegativesMeanTheFullSoftmax() {
        let popularity = [3, 1, 4, 1, 5]
        var rng = SplitMix64(seed: 7)
        for negatives in [0, 5, 99] {
            let sampler = SoftmaxCandidates(items: 5, negatives: negatives, popularity: popularity, batchSize: 2)
            #expect(sampler.isFull)
            let (candidates, logQ) = sampler.draw(positives: [4, 1], rng: &rng)
            #expect(candidates == [0, 1, 2, 3, 4] && logQ == [0, 0, 0, 0, 0])
        }
    }
}

@Suite struct ItemCatalogueTests {
    static let csv = [
        "book_id,authors,original_publication_year,language_code,ratings_count,title",
        #"1,Suzanne Collins,2008.0,eng,4780653,"The Hunger Games (The Hunger Games, #1)""#,
        #"2,"J.K. Rowling, Mary GrandPré",1997.0,eng,4602479,"Harry Potter and the ""Stone""""#,
        "3,Suzanne Collins,,,0,Plain",
    ].joined(separator: "\n")

    @Test func quotedFieldsAuthorsDecadesAndPopularityBucketsAreRead() throws {
        let c = try ItemCatalogue.parse(Self.csv, source: "t.csv", features: [.author, .year, .language, .popularity])
        let k = ItemCatalogue.featureKey
        #expect(c.keys[1] == [.init(key: k("author", "Suzanne Collins"), weight: 1), .init(key: k("year", "2000"), weight: 1),
                              .init(key: k("language", "eng"), weight: 1), .init(key: k("popularity", "44"), weight: 1)])
        // Two authors share the author feature's weight; the quoted title with "" and commas keeps the columns aligned.
        #expect(c.keys[2]?.prefix(2).map(\.weight) == [0.5, 0.5])
        #expect(c.keys[2]?[1].key == k("author", "Mary GrandPré") && c.keys[2]?[2].key == k("year", "1990"))
        // Empty year and language are one "unknown" value each; a zero count is bucket 0.
        #expect(c.keys[3]?.suffix(3).map(\.key) == [k("year", "unknown"), k("language", "unknown"), k("popularity", "0")])
        #expect(c.ratingsCount == [1: 4780653, 2: 4602479, 3: 0])
        // Distinct keys: 3 authors (Collins shared), 3 years, 2 languages, 2 popularity buckets (4780653 and 4602479 share 44).
        #expect(c.distinctKeys == 3 + 3 + 2 + 2)
        // Keys are a stable hash (FNV-1a 64), the same in every process.
        #expect(Self.fnv("a") == 0xaf63_dc4c_8601_ec8c && k("a", "b") == Self.fnv("a:b"))
        let popularityOnly = try ItemCatalogue.parse(Self.csv, source: "t.csv", features: [.popularity])
        #expect(popularityOnly.keys[2] == [.init(key: k("popularity", "44"), weight: 1)])
    }

    static func fnv(_ s: String) -> UInt64 {
        s.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    @Test func malformedCataloguesNameTheLineAndTheFix() {
        func message(_ text: String) -> String {
            do { _ = try ItemCatalogue.parse(text, source: "b.csv", features: [.popularity]); return "" } catch { return "\(error)" }
        }
        let header = "book_id,authors,original_publication_year,language_code,ratings_count"
        #expect(message("book_id,authors\n1,x").contains("no 'original_publication_year' column"))
        #expect(message(header + "\n1,\"x,1,e,3").contains("b.csv:2: a quoted field is not closed"))
        #expect(message(header + "\n1,x,1,e").contains("b.csv:2: 4 fields, the header has 5"))
        #expect(message(header + "\nx,x,1,e,3").contains("book_id 'x' is not an id"))
        #expect(message(header + "\n1,x,1,e,3\n1,y,1,e,3").contains("b.csv:3: book_id 1 appears twice"))
        // Blank lines are skipped and still counted.
        #expect(message(header + "\n\n1,x,1,e,3\n\n1,y,1,e,3\n").contains("b.csv:5: book_id 1 appears twice"))
        #expect(message(header + "\n1,x,1,e,-3").contains("ratings_count '-3' is not a count"))
        #expect(message("").contains("is empty"))
        #expect(throws: DataError.self) { try CatalogueFeature.list("popularity,colour") }
        #expect(throws: DataError.self) { try CatalogueFeature.list("author,author") }
        #expect(throws: DataError.self) { try CatalogueFeature.list(",") }
        #expect((try? CatalogueFeature.list("author, popularity")) == [.author, .popularity])
    }

    @Test func towerNamesTakeTheCatalogueSuffix() {
        let f: [CatalogueFeature] = [.popularity]
        #expect(ItemTowerConfiguration.parse("content", features: f).map { [$0.0.rawValue] + $0.1.map(\.rawValue) } == ["content"])
        #expect(ItemTowerConfiguration.parse("id+spm+catalogue", features: f).map { [$0.0.rawValue] + $0.1.map(\.rawValue) } == ["id+spm", "popularity"])
        #expect(ItemTowerConfiguration.parse("catalogue", features: f).map { [$0.0.rawValue] + $0.1.map(\.rawValue) } == ["catalogue", "popularity"])
        #expect(ItemTowerConfiguration.parse("catalogue+catalogue", features: f) == nil)
        #expect(ItemTowerConfiguration.parse("ids+catalogue", features: f) == nil)
        var c = ItemTowerConfiguration(); c.kind = .unigram; c.catalogueFeatures = [.author, .popularity]
        #expect(c.label == "unigram + catalogue author+popularity")
    }

    /// A batch's catalogue rows: each key once, in the order its first item asks for it.
    @Test func catalogueKeysAreDistinctInFirstSeenOrder() throws {
        let c = try ItemCatalogue.parse(Self.csv, source: "t.csv", features: [.author, .popularity])
        let (keys, position) = ItemTower.catalogueKeys([2, 1, 2, 3], c)
        let k = ItemCatalogue.featureKey
        #expect(keys == [k("author", "J.K. Rowling"), k("author", "Mary GrandPré"), k("popularity", "44"), k("author", "Suzanne Collins"),
                         k("popularity", "0")])
        #expect(keys.enumerated().allSatisfy { position[$0.element] == $0.offset })
    }

    @Test func theCatalogueBaselineRanksCandidatesByTheirCount() {
        let e = RankingEvaluator(split: InteractionSplit(SplitAndMetricTests.data))
        // Counts put candidate 7 first, then 5, then 6; with 25 candidates, user 0's item 6 ranks third.
        let candidates = Array(5..<30)
        let count: (Int) -> Double = { [7: 100, 5: 50, 6: 10][$0] ?? 0 }
        let m = e.evaluateCatalogueCount(heldOut: [(0, 6), (1, 7)], candidates: candidates, count: count)
        #expect(m.model == "catalogue ratings count" && m.users == 2 && m.recallAt20 == 1)
        #expect(abs(m.ndcgAt20 - (1 / log2(4.0) + 1) / 2) < 1e-12, "ndcg \(m.ndcgAt20)")
    }
}
