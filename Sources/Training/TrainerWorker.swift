import Foundation
import Client
import Vocabulary

/// Configuration of one trainer worker.
public struct TrainerConfiguration: Sendable {
    public var dataPath: String
    public var run: String = "goodbooks"
    public var rank = 0
    public var worldSize = 1
    public var dim = 32
    public var epochs = 20
    public var batchSize = 1024
    public var learningRate: Float = 0.05
    public var l2: Float = 1e-4
    public var seed: UInt64 = 1
    /// Pushes allowed in flight while the next batch is pulled (0 = synchronous). Bounds staleness.
    public var maxInflightPushes = 2
    public var minRating: Float = 1
    public var evaluateEveryEpoch = true
    /// How items are represented (hashed ids, semantic IDs, or both).
    public var itemTower = ItemTowerConfiguration()
    /// Dynamic sparsity of the user and item id tables (nil = dense). Rank 0 runs a prune-and-regrow step
    /// every `regrowInterval` global training steps; the update fraction decays over the whole run.
    public var sparsity: SparsityConfig? = nil
    /// DNIS mixed dimensions for the user and item id tables (nil = off); `epochs` is then the warm start.
    public var dnis: DnisTraining? = nil
    /// Row lifecycle of the user and item id tables (admission threshold, TTL); nil = unbounded tables.
    public var lifecycle: LifecycleTraining? = nil
    /// Train in the data file's order (upstream time order) instead of a seeded shuffle per epoch.
    public var timeOrdered = false
    /// Where BPR negatives come from: uniform over all items, or the positives of the same batch (only
    /// items seen in the stream recently get gradients, so a TTL can find stale item rows).
    public var negatives: NegativeSampling = .uniform
    /// The loss the model trains with.
    public var model: TrainingModel = .bpr
    /// Softmax model: uniform negatives drawn per batch and shared by its examples (with the batch's own
    /// positives); 0 or at least the item count = every item (the full softmax).
    public var sampledNegatives = 2048
    /// Softmax model: 0 = dot-product scores; > 0 = cosine scores divided by this temperature (training and
    /// evaluation both rank by cosine then).
    public var temperature: Float = 0
    /// How validation and test interactions are held out.
    public var split: SplitKind = .leaveLastOut
    /// Item-cold split: the fraction of items held out (half validation, half test) and the seed choosing them.
    public var coldFraction = 0.1
    public var splitSeed: UInt64 = 1
    /// Softmax model: how a user is represented (its id row alone, or that row plus a history part).
    public var userTower: UserTowerKind = .id
    /// `.idRecent`: which items before a position the user tower reads, and their weights.
    public var recency = RecencyWeights(decay: 0.5, window: 20)
    public init(dataPath: String) { self.dataPath = dataPath }
    /// Epochs of the whole run (DNIS adds search and retrain epochs after the warm start).
    public var totalEpochs: Int { epochs + (dnis.map { $0.searchEpochs + $0.retrainEpochs } ?? 0) }
}

/// How the softmax model represents a user. Every kind has the user's id row; the history kinds add rows of a
/// history table (one row per item, dim as the id tables).
public enum UserTowerKind: String, Sendable, Codable {
    /// The id row alone.
    case id
    /// Plus the mean history row over all the user's train items, the example's target left out while
    /// training on it (FISM-style, order-blind).
    case idHistory = "id+history"
    /// Plus the recency-weighted mean history row over the items just before the example in the user's train
    /// sequence (`RecencyWeights`); evaluation and serving read the end of the whole train sequence.
    case idRecent = "id+recent"
}

/// The DNIS schedule of a run: `epochs` of warm start (alpha fixed at 1), frequency blocks assigned, then
/// `searchEpochs` of the bi-level loop (each train batch updates the rows, then a validation batch updates
/// alpha on the shards), then pruning of `pruneRatio` of all entries (global percentile of |alpha * v|) and
/// `retrainEpochs` of training the pruned rows.
public struct DnisTraining: Sendable {
    public var blocks = 10
    public var searchEpochs = 5
    public var pruneRatio = 0.5
    public var retrainEpochs = 5
    public var alphaLearningRate: Float = 0.01
    public init() {}
}

/// The loss a run trains the user and item towers with. Both score a (user, item) pair by the dot product of
/// their vectors, so evaluation and serving are the same for both.
public enum TrainingModel: String, Sendable, Codable, CaseIterable {
    /// Matrix factorisation with the pairwise BPR loss, one negative per example (`BPRModel`).
    case bpr
    /// A two-tower model with a sampled-softmax loss over negatives shared by the batch (`SoftmaxModel`).
    case softmax

    /// Name in reports.
    public var label: String { self == .bpr ? "mf-bpr" : "two-tower softmax" }
}

/// Source of the negative item of each BPR example.
public enum NegativeSampling: String, Sendable, Codable {
    case uniform
    case inBatch = "in-batch"
}

/// Admission and eviction on the user and item id tables of a run. Rank 0 runs an eviction pass on the
/// tables with a TTL every `evictEveryBatches` of its batches and at the end of every epoch; the tables' own
/// background passes are set to the longest interval so that a single-worker run evicts at the same points
/// every time.
public struct LifecycleTraining: Sendable {
    /// Pushes of an id before its row is created (0 = no threshold); both tables.
    public var admitMinCount = 0
    /// Rows not updated in the table's last N pushes on a shard are evicted (0 = no TTL), per table.
    public var userTTLUpdates: UInt64 = 0
    public var itemTTLUpdates: UInt64 = 0
    public var evictEveryBatches = 30
    public init() {}

    var admission: AdmissionConfig? { admitMinCount > 1 ? AdmissionConfig(minCount: admitMinCount) : nil }
    static func eviction(ttl: UInt64) -> EvictionConfig? {
        guard ttl > 0 else { return nil }
        var e = EvictionConfig()
        e.ttlUpdates = ttl; e.intervalSeconds = 86_400
        return e
    }
    var evicts: Bool { userTTLUpdates > 0 || itemTTLUpdates > 0 }
}

/// Rows and lifecycle counters of the user and item id tables at the end of a run (sums over shards).
public struct LifecycleSummary: Sendable, Codable {
    public var admitMinCount: Int
    public var userTTLUpdates: UInt64
    public var itemTTLUpdates: UInt64
    public var rows: UInt64
    public var rowsAdmitted: UInt64
    public var pushesRefused: UInt64
    public var rowsEvicted: UInt64
    public var evictionPasses: UInt64
}

/// Size of the embedding tables at the end of a run: parameters (active entries for sparse tables) and the
/// bytes of their stored rows.
public struct EmbeddingFootprint: Sendable, Codable {
    public var density: Double
    public var rows: UInt64
    public var parameters: UInt64
    /// rows * round(density * dim) for sparse tables; rows * dim for dense ones.
    public var budget: UInt64
    public var storedBytes: UInt64
    public var denseBytes: UInt64
    public var firedFraction: Double
    public var regrowRounds: UInt32
}

/// Final report of a training run (what rank 0 prints).
public struct TrainingReport: Sendable, Codable {
    public var run: String
    public var workers: Int
    public var shards: Int
    public var epochs: Int
    public var dim: Int
    public var trainInteractions: Int
    public var users: Int
    public var items: Int
    public var seconds: Double
    public var finalLoss: Double
    public var itemTower: String
    public var itemRows: Int
    public var test: [RankingMetrics]
    public var validation: [RankingMetrics]
    public var footprint: EmbeddingFootprint? = nil
    /// DNIS runs: per-table block summaries after pruning.
    public var dnis: [DnisSummary]? = nil
    /// Runs with admission or eviction: rows and counters of the id tables.
    public var lifecycle: LifecycleSummary? = nil
    public var seed: UInt64? = nil
    /// How validation and test were held out (nil in reports written before the item-cold split existed).
    public var split: SplitKind? = nil
}

/// A trainer worker: trains MF-BPR whose user and item tables live on EmbedPS, on the users assigned to its
/// rank (user index mod world size). Pulls the rows of a batch, computes exact gradients, pushes them
/// asynchronously (at most `maxInflightPushes` outstanding). Workers coordinate through a progress table on
/// the cluster (row r = epochs completed by rank r): an epoch ends with a barrier, and a restarted worker
/// resumes after its last completed epoch. Rank 0 evaluates. Not thread-safe: one `run()` per instance.
public final class TrainerWorker: @unchecked Sendable {
    public private(set) var config: TrainerConfiguration
    let client: EmbedPSClient
    let log: @Sendable (String) -> Void
    var userTable: String { "\(config.run).user" }
    /// Item rows of the history part of the user tower (`config.userTower` other than `.id`).
    var historyTable: String { "\(config.run).history" }
    var progressTable: String { "\(config.run).progress" }
    /// Set by `run()` before training.
    var tower: ItemTower!
    /// The softmax model's candidate sampler (made at the first batch).
    var softmaxSampler: SoftmaxCandidates?
    /// Train examples' positions in their users' sequences (`.idRecent`, made at the first batch).
    var sequencePositions: SequencePositions?
    /// Live progress for the worker's /metrics endpoint.
    public let metrics: TrainerMetrics

    public init(config: TrainerConfiguration, client: EmbedPSClient, log: @escaping @Sendable (String) -> Void) {
        self.config = config; self.client = client; self.log = log
        metrics = TrainerMetrics(rank: config.rank)
    }

    func createTables() async throws {
        var opt = OptimizerConfig(kind: .adagrad, learningRate: config.learningRate)
        opt.initialAccumulator = 0.1
        let initializer = InitializerConfig.normal(mean: 0, stddev: 0.1, seed: config.seed)
        var spec = TableSpec(name: userTable, dim: config.dim, optimizer: opt, initializer: initializer)
        spec.sparsity = config.sparsity
        spec.dnis = config.dnisTableConfig
        spec.admission = config.lifecycle?.admission
        spec.eviction = LifecycleTraining.eviction(ttl: config.lifecycle?.userTTLUpdates ?? 0)
        try await client.admin.createTable(spec)
        if config.userTower != .id {
            try await client.admin.createTable(TableSpec(name: historyTable, dim: config.dim, optimizer: opt,
                                                         initializer: .normal(mean: 0, stddev: 0.1, seed: config.seed &+ 2)))
        }
        try await client.admin.createTable(TableSpec(name: progressTable, dim: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
    }

    func progress() async throws -> [Int] {
        try await client.pull(table: progressTable, ids: (0..<config.worldSize).map { UInt64($0) }).map { Int($0.rounded()) }
    }

    /// Waits until every worker completed `epochs` epochs.
    func barrier(_ epochs: Int) async throws {
        var waited = 0.0
        while true {
            let p = try await progress()
            if p.allSatisfy({ $0 >= epochs }) { return }
            if waited >= 10, Int(waited * 10) % 100 == 0 {
                log("rank \(config.rank): waiting for workers \(p.enumerated().filter { $0.element < epochs }.map { "\($0.offset)" }.joined(separator: ",")) to finish epoch \(epochs)")
            }
            try await Task.sleep(nanoseconds: 100_000_000)
            waited += 0.1
        }
    }

    /// Runs training to the configured epoch count; returns the report on rank 0 (nil elsewhere).
    public func run() async throws -> TrainingReport? {
        let started = Date()
        let data = try InteractionData.load(path: config.dataPath, minRating: config.minRating)
        let split = config.split == .itemCold ? InteractionSplit(itemColdFrom: data, fraction: config.coldFraction, seed: config.splitSeed)
                                              : InteractionSplit(data)
        let nItems = data.itemIds.count
        try await client.waitUntilHealthy(timeoutSeconds: 60)
        if var sp = config.sparsity, sp.rounds == 0 {
            // The update fraction decays over the whole run: one round per regrow interval of global steps.
            let steps = config.epochs * ((split.train.count + config.batchSize * config.worldSize - 1) / (config.batchSize * config.worldSize)) * config.worldSize
            sp.rounds = max(1, steps / max(1, sp.regrowInterval))
            config.sparsity = sp
        }
        if config.dnis != nil {
            guard config.worldSize == 1, config.itemTower.kind == .id else {
                throw DataError("DNIS runs with one worker (--world-size 1) and the id item tower for now")
            }
        }
        try await createTables()
        let tower = try await ItemTower.setUp(config.itemTower, trainer: config, client: client, data: data, split: split, log: log)
        self.tower = tower
        let mine = (config.timeOrdered ? split.trainInFileOrder : split.train).filter { $0.user % config.worldSize == config.rank }
        let startEpoch = try await progress()[config.rank]
        if config.rank == 0 && startEpoch == 0 {
            log("data: \(data.interactions.count) interactions, \(data.userIds.count) users, \(nItems) items; split \(config.split.rawValue)" +
                (config.split == .itemCold ? " (\(split.validationCandidates.count) validation and \(split.testCandidates.count) test items held out with their interactions) " : " per user ") +
                "(train \(split.train.count), validation \(split.validation.count), test \(split.test.count))")
        }
        if startEpoch > 0 { log("rank \(config.rank): resuming after epoch \(startEpoch) (from the cluster's progress table)") }
        log("rank \(config.rank)/\(config.worldSize): \(mine.count) train interactions, epochs \(startEpoch + 1)...\(config.totalEpochs)")
        let evaluator = RankingEvaluator(split: split)
        var validation: [RankingMetrics] = []
        var lastLoss = 0.0
        for epoch in startEpoch..<config.totalEpochs {
            let searching = try await dnisPhaseChange(before: epoch)
            metrics.epoch.store(epoch + 1, ordering: .relaxed); metrics.totalEpochs.store(config.totalEpochs, ordering: .relaxed)
            lastLoss = try await trainEpoch(epoch, examples: mine, data: data, split: split, searching: searching)
            try await client.push(table: progressTable, ids: [UInt64(config.rank)], gradients: [-1])
            try await barrier(epoch + 1)
            if config.rank == 0 && (config.evaluateEveryEpoch || epoch + 1 == config.totalEpochs) {
                var m = try await evaluate(evaluator, data: data, heldOut: split.validation, exclude: [], candidates: split.validationCandidates)
                m.split = "validation"
                validation.append(m)
                metrics.recallBits.store(m.recallAt20.bitPattern, ordering: .relaxed)
                log(String(format: "epoch %d/%d done: loss %.4f  validation Recall@20 %.4f  NDCG@20 %.4f", epoch + 1, config.totalEpochs, lastLoss, m.recallAt20, m.ndcgAt20))
            }
        }
        guard config.rank == 0 else { return nil }
        let footprint = try await embeddingFootprint()
        var dnisSummaries: [DnisSummary]? = nil
        if config.dnis != nil {
            dnisSummaries = []
            for table in sparseTables { dnisSummaries?.append(try await client.admin.dnisSummary(table: table)) }
        }
        var test = try await evaluate(evaluator, data: data, heldOut: split.test, exclude: split.validation, candidates: split.testCandidates)
        test.split = "test"
        var pop = split.kind == .itemCold ? evaluator.evaluatePopularity(heldOut: split.test, candidates: split.testCandidates)
                                          : evaluator.evaluatePopularity(heldOut: split.test, exclude: split.validation, items: nItems)
        pop.split = "test"
        // The model's row first, then the baselines.
        var testRows = [test, pop]
        if split.kind == .itemCold, let catalogue = tower.catalogue {
            var c = evaluator.evaluateCatalogueCount(heldOut: split.test, candidates: split.testCandidates,
                                                     count: { catalogue.ratingsCount[data.itemIds[$0]] ?? 0 })
            c.split = "test"
            testRows.append(c)
        }
        return TrainingReport(run: config.run, workers: config.worldSize, shards: client.shardCount, epochs: config.epochs, dim: config.dim,
                              trainInteractions: split.train.count, users: data.userIds.count, items: nItems,
                              seconds: Date().timeIntervalSince(started), finalLoss: lastLoss, itemTower: config.itemTower.label,
                              itemRows: tower.rows, test: testRows, validation: validation, footprint: footprint, dnis: dnisSummaries,
                              lifecycle: try await lifecycleSummary(), seed: config.seed, split: config.split)
    }

    /// Rows and lifecycle counters of the user and item id tables (nil without a lifecycle).
    func lifecycleSummary() async throws -> LifecycleSummary? {
        guard let l = config.lifecycle else { return nil }
        var s = LifecycleSummary(admitMinCount: l.admitMinCount, userTTLUpdates: l.userTTLUpdates, itemTTLUpdates: l.itemTTLUpdates, rows: 0, rowsAdmitted: 0, pushesRefused: 0, rowsEvicted: 0, evictionPasses: 0)
        for table in sparseTables {
            for t in try await client.admin.describeTable(table) {
                s.rows += t.rows; s.rowsAdmitted += t.rowsAdmitted; s.pushesRefused += t.pushesRefused
                s.rowsEvicted += t.rowsEvicted; s.evictionPasses += t.evictionPasses
            }
        }
        return s
    }

    /// Rank 0 with a TTL: an eviction pass on the tables with one every `evictEveryBatches` batches
    /// and at the end of the epoch (`force`). Waits for this worker's pushes in flight first, so that a pass
    /// sees the same updates in every run of a single worker.
    func maybeEvict(batch: Int, force: Bool, pending: inout [Task<Void, Error>]) async throws {
        guard let l = config.lifecycle, l.evicts, config.rank == 0 else { return }
        guard force || (batch > 0 && batch % max(1, l.evictEveryBatches) == 0) else { return }
        for t in pending { try await t.value }
        pending.removeAll()
        if l.userTTLUpdates > 0 { _ = try await client.admin.evict(table: userTable) }
        if l.itemTTLUpdates > 0, let itemTable = tower.idTable { _ = try await client.admin.evict(table: itemTable) }
    }

    /// Tables whose rows are sparse when `config.sparsity` or `config.dnis` is set.
    var sparseTables: [String] { [userTable] + (tower.idTable.map { [$0] } ?? []) }

    /// Parameters and stored bytes of the user and item id tables (exact counts from the shards).
    func embeddingFootprint() async throws -> EmbeddingFootprint {
        var f = EmbeddingFootprint(density: 1, rows: 0, parameters: 0, budget: 0, storedBytes: 0, denseBytes: 0, firedFraction: 1, regrowRounds: 0)
        var fired: UInt64 = 0
        for table in sparseTables {
            if config.dnis != nil {
                let s = try await client.admin.dnisSummary(table: table)
                f.rows += s.rows; f.parameters += s.parameters; f.budget += s.parameters; f.storedBytes += s.storedBytes; f.denseBytes += s.denseBytes
                fired += s.parameters
            } else if config.sparsity != nil {
                let s = try await client.admin.sparsitySummary(table: table)
                f.rows += s.rows; f.parameters += s.active; f.budget += s.budget; f.storedBytes += s.storedBytes; f.denseBytes += s.denseBytes
                fired += s.fired; f.regrowRounds = max(f.regrowRounds, s.round)
            } else {
                let rows = try await client.admin.describeTable(table).reduce(0) { $0 + $1.rows }
                let rowBytes = UInt64(16 + 4 * config.dim * 2)  // Adagrad: weights + accumulator
                f.rows += rows; f.parameters += rows * UInt64(config.dim); f.budget += rows * UInt64(config.dim)
                f.storedBytes += rows * rowBytes; f.denseBytes += rows * rowBytes; fired += rows * UInt64(config.dim)
            }
        }
        let entries = Double(max(1, f.rows * UInt64(config.dim)))
        f.density = Double(f.parameters) / entries; f.firedFraction = Double(fired) / entries
        return f
    }

    /// Rank 0: a prune-and-regrow step on every sparse table when `step` (global steps so far) crosses a
    /// multiple of the regrow interval.
    func maybeRegrow(step: Int) async throws {
        guard let sp = config.sparsity, config.rank == 0, step > 0, step % max(1, sp.regrowInterval / config.worldSize) == 0 else { return }
        for table in sparseTables {
            let r = try await client.admin.sparsityStep(table: table)
            log(String(format: "prune-and-regrow %@ round %d: moved %llu of %llu active entries (fraction %.3f), active == budget: %@, %.2f s",
                       table, r.round, r.moved, r.activeBefore, r.fraction, r.activeAfter == r.budgetAfter ? "yes" : "NO", r.seconds))
        }
    }

    /// DNIS phase changes at the start of `epoch`: blocks are assigned after the warm start and the tables
    /// pruned after the search (each done once: a resumed run finds them done on the shards). Returns whether
    /// `epoch` is a search epoch.
    func dnisPhaseChange(before epoch: Int) async throws -> Bool {
        guard let d = config.dnis, config.rank == 0 else { return false }
        if epoch == config.epochs || (epoch > config.epochs && epoch < config.epochs + d.searchEpochs) {
            for table in sparseTables where try await client.admin.dnisReports(table: table).allSatisfy({ $0.assignmentRound == 0 }) {
                let rows = try await client.admin.dnisAssignBlocks(table: table)
                log("DNIS \(table): \(d.blocks) frequency blocks assigned (rows per block \(rows.map(String.init).joined(separator: " "))); alpha search starts")
            }
        }
        if epoch >= config.epochs + d.searchEpochs {
            for table in sparseTables where try await !client.dnisAlpha(table: table).pruned {
                let r = try await client.admin.dnisPrune(table: table, ratio: d.pruneRatio)
                log(String(format: "DNIS %@: pruned %.0f%% of %llu entries (threshold |alpha*v| < %.2e), %llu left, %.2f s", table, d.pruneRatio * 100,
                           r.entriesBefore, r.threshold, r.entriesAfter, r.seconds))
            }
        }
        return epoch >= config.epochs && epoch < config.epochs + d.searchEpochs
    }

    /// The rows and exact gradients of one batch of (user, positive item) with its negatives.
    struct BatchGradients {
        let userIds: [UInt64], itemIds: [UInt64]
        let gu: FloatBuffer, gi: FloatBuffer
        let loss: Float
        /// Rows of the history table and their gradients (user towers with a history part).
        var historyIds: [UInt64] = [], gh: FloatBuffer? = nil
    }

    /// Draws the batch's negatives and computes the configured model's loss and gradients with respect to
    /// the pulled rows. `heldOut`: the batch is validation pairs (a recency tower then reads the end of each
    /// user's train sequence, as at evaluation).
    func gradients(_ batch: [(user: Int, item: Int)], rng: inout SplitMix64, data: InteractionData, split: InteractionSplit, l2: Float,
                   heldOut: Bool = false) async throws -> BatchGradients {
        let nItems = data.itemIds.count
        switch config.model {
        case .bpr:
            // Negatives: trainable items the user has not interacted with in train, uniform or from the batch's positives.
            let pool = split.trainableItems
            let draw: (inout SplitMix64) -> Int = config.negatives == .uniform
                ? { pool[Int($0.next() % UInt64(pool.count))] } : { batch[Int($0.next() % UInt64(batch.count))].item }
            let negatives = TrainingSampling.negatives(for: batch, trainItemsByUser: split.trainItemsByUser, rng: &rng, draw: draw)
            return try await bprGradients(batch, negatives: negatives, data: data, l2: l2)
        case .softmax:
            let sampler = softmaxSampler ?? SoftmaxCandidates(items: nItems, negatives: config.sampledNegatives, popularity: split.itemPopularity, batchSize: config.batchSize,
                                                                 eligible: split.trainableItems)
            softmaxSampler = sampler
            let (candidates, logQ) = sampler.draw(positives: batch.map(\.item), rng: &rng)
            return try await softmaxGradients(batch, candidates: candidates, logQ: logQ, data: data, split: split, l2: l2, heldOut: heldOut)
        }
    }

    /// Pulls the user and item rows a batch touches and computes the BPR loss and its gradients with respect
    /// to those (pulled) rows.
    func bprGradients(_ batch: [(user: Int, item: Int)], negatives: [Int], data: InteractionData, l2: Float) async throws -> BatchGradients {
        let dim = config.dim
        let r = try await pullRows(users: batch.map(\.user), items: batch.map(\.item) + negatives, data: data)
        let gu = FloatBuffer(count: r.users.count * dim), gi = FloatBuffer(count: r.items.count * dim)
        var loss: Float = 0
        for (n, ex) in batch.enumerated() {
            let u = r.userPos[ex.user]!, i = r.itemPos[ex.item]!, j = r.itemPos[negatives[n]]!
            loss += BPRModel.accumulateGradients(user: r.userRows.base + u * dim, positive: r.itemRows.base + i * dim, negative: r.itemRows.base + j * dim,
                                                 dim: dim, l2: l2, gu: gu.base + u * dim, gi: gi.base + i * dim, gj: gi.base + j * dim)
        }
        return BatchGradients(userIds: r.userIds, itemIds: r.itemIds, gu: gu, gi: gi, loss: loss)
    }

    /// The rows one batch touches: sorted distinct user and item indices, their ids, positions and pulled rows.
    struct BatchRows {
        let users: [Int], items: [Int]
        let userIds: [UInt64], itemIds: [UInt64]
        let userPos: [Int: Int], itemPos: [Int: Int]
        let userRows: FloatBuffer, itemRows: FloatBuffer
    }

    /// Pulls the rows of the distinct `users` (user table) and `items` (item tower) concurrently.
    func pullRows(users batchUsers: [Int], items batchItems: [Int], data: InteractionData) async throws -> BatchRows {
        let dim = config.dim
        let users = Array(Set(batchUsers)).sorted(), items = Array(Set(batchItems)).sorted()
        let userIds = users.map { data.userIds[$0] }, itemIds = items.map { data.itemIds[$0] }
        let userRows = FloatBuffer(count: users.count * dim), itemRows = FloatBuffer(count: items.count * dim)
        async let pu: Void = client.pull(table: userTable, ids: userIds, into: userRows)
        async let pi: Void = tower.pull(itemIds, into: itemRows)
        _ = try await (pu, pi)
        return BatchRows(users: users, items: items, userIds: userIds, itemIds: itemIds,
                         userPos: Dictionary(uniqueKeysWithValues: users.enumerated().map { ($1, $0) }),
                         itemPos: Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1, $0) }),
                         userRows: userRows, itemRows: itemRows)
    }

    /// The history rows of `users` when the user tower has a history part (nil otherwise).
    func pullHistory(users: [Int], split: InteractionSplit, data: InteractionData) async throws -> UserHistory? {
        guard config.userTower == .idHistory else { return nil }
        return try await UserHistory.pull(users: users, split: split, data: data, dim: config.dim, client: client, table: historyTable)
    }

    /// The recency contexts of a batch's examples (`.idRecent`; nil otherwise), their history rows pulled: the
    /// items before each train example, or for `heldOut` pairs the end of the user's train sequence.
    func pullRecent(_ batch: [(user: Int, item: Int)], split: InteractionSplit, data: InteractionData, heldOut: Bool) async throws -> RecentHistory? {
        guard config.userTower == .idRecent else { return nil }
        let positions = sequencePositions ?? SequencePositions(split: split, items: data.itemIds.count)
        sequencePositions = positions
        let recency = config.recency
        let contexts = try batch.map { ex -> [(item: Int, weight: Float)] in
            let sequence = split.trainSequences[ex.user]
            if heldOut { return recency.context(of: sequence, before: sequence.count) }
            guard let k = positions.position(user: ex.user, item: ex.item) else {
                throw DataError("internal: example (\(ex.user), \(ex.item)) is not in its user's train sequence")
            }
            return recency.context(of: sequence, before: k)
        }
        return try await RecentHistory.pull(contexts: contexts, data: data, dim: config.dim, client: client, table: historyTable)
    }

    /// Pulls the rows of the batch's users and of its candidate items (sorted item indices) and computes the
    /// sampled-softmax loss; a user's gradient is the sum over its examples.
    func softmaxGradients(_ batch: [(user: Int, item: Int)], candidates: [Int], logQ: [Float], data: InteractionData, split: InteractionSplit,
                          l2: Float, heldOut: Bool = false) async throws -> BatchGradients {
        let dim = config.dim
        let users = Array(Set(batch.map(\.user))).sorted()
        async let pulledHistory = pullHistory(users: users, split: split, data: data)
        async let pulledRecent = pullRecent(batch, split: split, data: data, heldOut: heldOut)
        let r = try await pullRows(users: users, items: candidates, data: data)
        let history = try await pulledHistory, recent = try await pulledRecent
        let userPos = r.userPos, itemPos = r.itemPos, userRows = r.userRows, itemRows = r.itemRows
        let exampleUsers = FloatBuffer(count: batch.count * dim), exampleGradients = FloatBuffer(count: batch.count * dim)
        var positives = [Int](repeating: 0, count: batch.count), exampleUser = positives
        for (b, ex) in batch.enumerated() {
            guard let u = userPos[ex.user], let i = itemPos[ex.item] else { throw DataError("internal: example (\(ex.user), \(ex.item)) missing from its batch's rows") }
            (exampleUsers.base + b * dim).update(from: userRows.base + u * dim, count: dim)
            history?.addLeavingOut(item: ex.item, user: u, into: exampleUsers.base + b * dim)
            recent?.add(context: b, into: exampleUsers.base + b * dim)
            positives[b] = i
            exampleUser[b] = u
        }
        let gu = FloatBuffer(count: users.count * dim), gi = FloatBuffer(count: candidates.count * dim)
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: batch.count * candidates.count)
        defer { logits.deallocate() }
        let temperature = config.temperature
        let loss = logQ.withUnsafeBufferPointer { q in
            temperature > 0
                ? SoftmaxModel.cosineLossAndGradients(users: exampleUsers.base, batch: batch.count, candidates: itemRows.base, count: candidates.count, dim: dim,
                                                      positives: positives, logQ: q.baseAddress!, l2: l2, temperature: temperature,
                                                      gu: exampleGradients.base, gc: gi.base, logits: logits)
                : SoftmaxModel.lossAndGradients(users: exampleUsers.base, batch: batch.count, candidates: itemRows.base, count: candidates.count, dim: dim,
                                                positives: positives, logQ: q.baseAddress!, l2: l2, gu: exampleGradients.base, gc: gi.base, logits: logits)
        }
        for b in 0..<batch.count {
            let g = gu.base + exampleUser[b] * dim, e = exampleGradients.base + b * dim
            for k in 0..<dim { g[k] += e[k] }
        }
        var out = BatchGradients(userIds: r.userIds, itemIds: r.itemIds, gu: gu, gi: gi, loss: loss)
        if let history {
            out.gh = history.gradients(examples: batch.map(\.item), exampleUser: exampleUser, exampleGradients: exampleGradients.base, l2: l2)
            out.historyIds = history.itemIds
        }
        if let recent {
            out.gh = recent.gradients(contextGradients: exampleGradients.base, l2: l2)
            out.historyIds = recent.itemIds
        }
        return out
    }

    /// One validation batch of the DNIS bi-level loop: BPR gradients of the validation loss with respect to the
    /// pulled (alpha-scaled) rows go to the shards as alpha gradients.
    func alphaStep(_ split: InteractionSplit, data: InteractionData, rng: inout SplitMix64) async throws {
        let batch = (0..<min(config.batchSize, split.validation.count)).map { _ in split.validation[Int(rng.next() % UInt64(split.validation.count))] }
        let g: BatchGradients
        if config.model == .bpr {
            let pool = split.trainableItems
            let negatives = batch.map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
            g = try await bprGradients(batch, negatives: negatives, data: data, l2: 0)
        } else {
            g = try await gradients(batch, rng: &rng, data: data, split: split, l2: 0, heldOut: true)
        }
        guard let itemTable = tower.idTable else { return }
        async let a = client.dnisPushAlphaGradient(table: userTable, ids: g.userIds, gradients: g.gu)
        async let b = client.dnisPushAlphaGradient(table: itemTable, ids: g.itemIds, gradients: g.gi)
        _ = try await (a, b)
    }

    /// One pass over this worker's examples in a seeded shuffle (in file order with `timeOrdered`); returns the mean loss. With `searching`, every
    /// train batch is followed by a DNIS validation batch.
    func trainEpoch(_ epoch: Int, examples: [(user: Int, item: Int)], data: InteractionData, split: InteractionSplit, searching: Bool = false) async throws -> Double {
        var rng = TrainingSampling.epochGenerator(seed: config.seed, rank: config.rank, epoch: epoch)
        let order = config.timeOrdered ? Array(examples.indices) : TrainingSampling.shuffledIndices(examples.count, rng: &rng)
        var totalLoss = 0.0
        var rowsMoved = 0
        let started = Date()
        let phase = config.dnis == nil ? "" : (epoch < config.epochs ? " (warm start)" : (searching ? " (alpha search)" : " (pruned)"))
        let progress = ProgressLine(label: "rank \(config.rank) epoch \(epoch + 1)/\(config.totalEpochs)\(phase)", total: order.count, log: log)
        var pending: [Task<Void, Error>] = []
        var done = 0
        while done < order.count {
            let batch = order[done..<min(order.count, done + config.batchSize)].map { examples[$0] }
            let g = try await gradients(batch, rng: &rng, data: data, split: split, l2: config.l2)
            let loss = g.loss, userIds = g.userIds, itemIds = g.itemIds, gu = g.gu, gi = g.gi, historyIds = g.historyIds, gh = g.gh
            totalLoss += Double(loss)
            // Asynchronous push, bounded: wait for the oldest when too many are in flight.
            let client = self.client, ut = userTable, ht = historyTable, tower = self.tower!
            pending.append(Task {
                async let a = client.push(table: ut, ids: userIds, gradients: gu)
                async let b: Void = tower.push(itemIds, gi)
                if let gh, !historyIds.isEmpty { _ = try await client.push(table: ht, ids: historyIds, gradients: gh) }
                _ = try await (a, b)
            })
            while pending.count > config.maxInflightPushes { try await pending.removeFirst().value }
            rowsMoved += 2 * (userIds.count + itemIds.count + historyIds.count)
            done += batch.count
            if searching { try await alphaStep(split, data: data, rng: &rng) }
            try await maybeRegrow(step: epoch * ((examples.count + config.batchSize - 1) / config.batchSize) + (done + config.batchSize - 1) / config.batchSize)
            try await maybeEvict(batch: (done + config.batchSize - 1) / config.batchSize, force: false, pending: &pending)
            metrics.batchDone(examples: batch.count, rows: 2 * (userIds.count + itemIds.count), meanLoss: totalLoss / Double(done))
            progress.update(done: done, detail: String(format: "loss %.4f  %.0f rows/s", totalLoss / Double(done), Double(rowsMoved) / max(1e-3, Date().timeIntervalSince(started))))
        }
        for t in pending { try await t.value }
        pending.removeAll()
        try await maybeEvict(batch: 0, force: true, pending: &pending)
        progress.finish(detail: String(format: "loss %.4f  %.0f rows/s  %.1f s", totalLoss / Double(max(1, done)), Double(rowsMoved) / max(1e-3, Date().timeIntervalSince(started)), Date().timeIntervalSince(started)))
        return totalLoss / Double(max(1, done))
    }

    /// Pulls every user and item vector and ranks all items (or only `candidates`, when not empty) for the
    /// held-out users.
    func evaluate(_ evaluator: RankingEvaluator, data: InteractionData, heldOut: [(user: Int, item: Int)], exclude: [(user: Int, item: Int)],
                  candidates: [Int] = []) async throws -> RankingMetrics {
        let dim = config.dim
        let users = FloatBuffer(count: data.userIds.count * dim), items = FloatBuffer(count: data.itemIds.count * dim)
        let client = self.client, userTable = self.userTable, tower = self.tower!
        try await pullChunked(data.userIds, into: users) { try await client.pull(table: userTable, ids: $0, into: $1) }
        try await pullChunked(data.itemIds, into: items) { try await tower.pull($0, into: $1) }
        if config.userTower != .id {
            // The user tower at serving time: the id row plus the history part over the user's train items
            // (the mean of all of them, or the recency-weighted mean of the end of the sequence).
            let rows = FloatBuffer(count: data.itemIds.count * dim), ht = historyTable
            try await pullChunked(data.itemIds, into: rows) { try await client.pull(table: ht, ids: $0, into: $1) }
            let everyUser = Array(0..<data.userIds.count), every = Array(data.itemIds.indices)
            if config.userTower == .idRecent {
                let recency = config.recency, sequences = evaluator.split.trainSequences
                let contexts = everyUser.map { recency.context(of: sequences[$0], before: sequences[$0].count) }
                let all = RecentHistory(contexts: contexts, dim: dim, items: every, itemIds: data.itemIds, rows: rows)
                for u in everyUser { all.add(context: u, into: users.base + u * dim) }
            } else {
                let all = UserHistory(users: everyUser, split: evaluator.split, dim: dim, itemIds: data.itemIds, rows: rows)
                for u in everyUser { all.addMean(user: u, into: users.base + u * dim) }
            }
        }
        if config.model == .softmax && config.temperature > 0 {
            // Cosine scores: rank by unit vectors (a user's length does not change its ranking; an item's does).
            SoftmaxModel.normalise(users.base, rows: data.userIds.count, dim: dim)
            SoftmaxModel.normalise(items.base, rows: data.itemIds.count, dim: dim)
        }
        let model = "\(config.model.label)\(config.model == .softmax && config.temperature > 0 ? " cos/\(config.temperature)" : "") (EmbedPS, items: \(config.itemTower.label)\(config.userTower == .id ? "" : ", users: \(config.userTower.rawValue)"))"
        if !candidates.isEmpty {
            return evaluator.evaluate(model: model, heldOut: heldOut, candidates: candidates, userVectors: users.base, itemVectors: items.base, dim: dim)
        }
        return evaluator.evaluate(model: model, heldOut: heldOut, exclude: exclude, userVectors: users.base, itemVectors: items.base,
                                  dim: dim, items: data.itemIds.count)
    }

    /// Fills `out` (ids.count * dim) by calling `pull` on chunks of 4096 ids, each into its own buffer.
    func pullChunked(_ ids: [UInt64], into out: FloatBuffer, _ pull: ([UInt64], FloatBuffer) async throws -> Void) async throws {
        let chunk = 4096
        var start = 0
        while start < ids.count {
            let part = Array(ids[start..<min(ids.count, start + chunk)])
            let buf = FloatBuffer(count: part.count * config.dim)
            try await pull(part, buf)
            (out.base + start * config.dim).update(from: buf.base, count: part.count * config.dim)
            start += chunk
        }
    }
}

/// A progress line: redrawn in place on a terminal, otherwise printed at every 25%.
final class ProgressLine: @unchecked Sendable {
    let label: String, total: Int
    let log: @Sendable (String) -> Void
    private var lastDraw = Date.distantPast
    private var lastQuarter = 0
    private let tty = isatty(STDERR_FILENO) != 0

    init(label: String, total: Int, log: @escaping @Sendable (String) -> Void) { self.label = label; self.total = total; self.log = log }

    func bar(_ done: Int) -> String {
        let width = 24, filled = total == 0 ? width : width * done / total
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
    func update(done: Int, detail: String) {
        let pct = total == 0 ? 100 : 100 * done / total
        if tty {
            guard Date().timeIntervalSince(lastDraw) > 0.2 else { return }
            lastDraw = Date()
            FileHandle.standardError.write(Data("\r\(label) \(bar(done)) \(pct)%  \(detail)   ".utf8))
        } else if pct / 25 > lastQuarter && done < total {
            lastQuarter = pct / 25
            log("\(label) \(bar(done)) \(pct)%  \(detail)")
        }
    }
    func finish(detail: String) {
        if tty { FileHandle.standardError.write(Data("\r".utf8)) }
        log("\(label) \(bar(total)) 100%  \(detail)")
    }
}

extension TrainerConfiguration {
    /// The DnisConfig of the user and item id tables of a DNIS run.
    var dnisTableConfig: DnisConfig? {
        dnis.map { d in var c = DnisConfig(blocks: d.blocks); c.alphaLearningRate = d.alphaLearningRate; return c }
    }
}

/// The trainer's seeded draws, shared with anything that must reproduce its batches (the single-process
/// twin of the tests): one generator per (seed, rank, epoch), the epoch's shuffle, then each batch's negatives
/// from the same generator.
public enum TrainingSampling {
    public static func epochGenerator(seed: UInt64, rank: Int, epoch: Int) -> SplitMix64 {
        SplitMix64(seed: seed &* 1_000_003 &+ UInt64(rank) &* 7919 &+ UInt64(epoch))
    }

    /// 0..<count in a Fisher-Yates shuffle.
    public static func shuffledIndices(_ count: Int, rng: inout SplitMix64) -> [Int] {
        var order = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return order
    }

    /// One negative per example from `draw`, redrawn (at most 10 times) while it is one of the user's train items.
    public static func negatives(for batch: [(user: Int, item: Int)], trainItemsByUser: [Set<Int>], rng: inout SplitMix64,
                                 draw: (inout SplitMix64) -> Int) -> [Int] {
        batch.map { ex -> Int in
            var j = draw(&rng)
            var tries = 0
            while trainItemsByUser[ex.user].contains(j) && tries < 10 { j = draw(&rng); tries += 1 }
            return j
        }
    }
}
