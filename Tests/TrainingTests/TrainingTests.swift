import Testing
import Foundation
@testable import Training

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
        let s = LeaveLastOutSplit(Self.data)
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
        let s = LeaveLastOutSplit(data)
        // Dense indices: users 7, 9, 11 -> 0, 1, 2; items 1..4 -> 0..3.
        #expect(s.trainInFileOrder.map { [$0.user, $0.item] } == [[0, 0], [1, 1], [0, 1], [2, 3]])
        #expect(s.trainInFileOrder.map { [$0.user, $0.item] }.sorted { $0.lexicographicallyPrecedes($1) }
                == s.train.map { [$0.user, $0.item] }.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(s.test.map { [$0.user, $0.item] } == [[0, 3], [1, 0]])
    }

    @Test func recallAndNdcgFollowTheHeldOutRank() {
        let s = LeaveLastOutSplit(Self.data)
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
