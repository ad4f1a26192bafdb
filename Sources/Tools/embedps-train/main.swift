import Foundation
import CLI
import Client
import Training
import Vocabulary
import HTTP

let usage = """
usage: embedps-train --cluster SPEC.json --data RATINGS.csv[.gz] [options]

A trainer worker: trains a user tower and an item tower (matrix factorisation with the BPR loss, or a
two-tower model with a sampled-softmax loss) on goodbooks-format interactions (user_id,book_id,rating),
with the user and item embedding tables on the EmbedPS cluster. Start one process
per worker with --rank r --world-size w; each trains the users with index % w == r. Rank 0 evaluates
(full ranking, Recall@20 / NDCG@20, overall and long tail, vs. a popularity baseline) and prints the report.

options:
  --cluster PATH           cluster spec (JSON) with the shard addresses (required)
  --data PATH              ratings file, gzip or plain CSV (required)
  --rank N / --world-size N   this worker and the number of workers (default 0 / 1)
  --run NAME               run name; tables are NAME.user, NAME.item, NAME.progress (default goodbooks)
  --model KIND             bpr (default): pairwise BPR, one negative per example; softmax: sampled softmax
                           over negatives shared by the batch (plus its positives), log-Q corrected
  --sampled-negatives N    softmax: uniform negatives per batch (default 2048; 0 = every item, the full softmax)
  --temperature T          softmax: 0 (default) = dot-product scores; > 0 = cosine scores / T (e.g. 0.1)
  --user-tower KIND        softmax: id (default) = a row per user; id+history = that row plus the mean of a
                           history table's rows over the user's train items (the target left out in training);
                           id+recent = that row plus the recency-weighted mean of the history rows of the
                           items just before each example in the user's train sequence (file = time order)
  --recent-decay D         id+recent: weight per step back (default 0.5; 1 = equal weights)
  --recent-window N        id+recent: items read before each position (default 20)
  --split KIND             leave-last-out (default): per user the last interaction is test, the one before
                           validation, all items ranked; item-cold: --cold-fraction of the items (chosen by
                           --split-seed) held out with all their interactions, half validation, half test,
                           and each held-out user ranks only that half's items (none seen in training)
  --cold-fraction X        item-cold: share of items held out (default 0.1)
  --split-seed N           item-cold: seed choosing the held-out items (default 1; --seed does not change it)
  --dim N                  embedding dimension (default 32)
  --epochs N               epochs (default 20)
  --batch N                interactions per batch (default 1024)
  --lr X                   Adagrad learning rate on the shards (default 0.05)
  --l2 X                   L2 regularisation (default 1e-4)
  --max-inflight-pushes N  asynchronous pushes in flight; bounds staleness (default 2; 0 = synchronous)
  --seed N                 seed of initialisation, shuffles and negatives (default 1)
  --item-tower KIND        id (default) | unigram | prefix | spm | id+spm | content | id+content: how items
                           are represented (semantic kinds: an item is the sum of its semantic-ID sub-piece
                           rows; content: a learned projection of the item's content embedding, one row per
                           content dimension); KIND+catalogue adds the --item-features rows, catalogue alone
                           is those rows only
  --item-features LIST     catalogue features for KIND+catalogue towers, from --books: author, year, language,
                           popularity (Goodreads-wide ratings_count in half-octave buckets: popularity from
                           outside the interactions); one row per feature value, summed into the item vector
  --books PATH             goodbooks books.csv (the item catalogue the features are read from)
  --item-rows N            row budget of the item side (id: hashed into N rows; 0 = one row per item;
                           id+spm: N/2 each)
  --embeddings PATH        item content embeddings (float32) for semantic and content towers
  --item-ids PATH          ids of the embedding rows, one per line
  --levels N / --codes K   semantic-ID levels and codebook size (default 3 / 64)
  --compare-item-towers LIST   train once per item tower in LIST (e.g. id,unigram,prefix,spm,id+spm,content+catalogue) at the
                           same --item-rows for each seed of --seeds and print one comparison table of
                           means and spreads (one worker)
  --density D              dynamic sparsity (DSL) of the user and item id tables: D of each row's entries
                           active, moved by prune-and-regrow steps (default: dense)
  --regrow-interval N      global training steps between prune-and-regrow steps (default 100)
  --compare-densities LIST train once per density in LIST (e.g. 1,0.5,0.2; 1 = dense) and print quality,
                           parameters and bytes per row side by side (one worker)
  --dnis-blocks S           DNIS mixed dimensions on the user and item id tables with S frequency blocks:
                           --epochs of warm start, then blocks by frequency and the alpha search, then
                           pruning, then retraining (one worker)
  --dnis-search-epochs N   epochs of the bi-level alpha search (default 5)
  --dnis-prune R           share of all entries pruned (global percentile of |alpha*v|; default 0.5)
  --dnis-retrain-epochs N  epochs after pruning (default 5)
  --dnis-alpha-lr X        alpha learning rate (default 0.01)
  --compare-dnis LIST      a full-dimension baseline (same total epochs) and one DNIS run per prune ratio in
                           LIST (e.g. 0.5,0.75): quality, parameters, bytes and per-block dimensions (one worker)
  --time-ordered           train on the interactions in file order (goodbooks: upstream time order), no shuffle
  --admit-min-count N      admission on the user and item id tables: a row is created at its id's N-th push
  --item-ttl-updates N     eviction on the item id table: rows not updated in the table's last N pushes on a
                           shard (one push per batch) are deleted; rank 0 runs a pass every --evict-every
                           batches (default 30) and at the end of every epoch
  --user-ttl-updates N     the same on the user table
  --negatives KIND         uniform (default): BPR negatives uniform over all items (every item row is updated
                           often); in-batch: drawn from the batch's positives
  --compare-lifecycle LIST train once per ADMIT:USER_TTL:ITEM_TTL triple in LIST (e.g. 0:0:0,2:0:0,2:0:30;
                           0:0:0 = unbounded, first = baseline) for each seed of --seeds (default: --seed) and
                           print mean quality, rows, evicted and refused counts and bytes saved against the
                           first (one worker)
  --seeds LIST             seeds for --compare-lifecycle and --compare-item-towers (e.g. 1,2,3)
  --metrics-port N         serve Prometheus /metrics (epoch, batches, rows moved, loss, validation recall)
                           and /healthz on port N (0 = any free port)
  --auth-token-file PATH   send the shared-secret token on its first line (shards started with one)
  --tls-ca PEM             connect with TLS, trusting this CA certificate
  --json                   print the final report as JSON (rank 0)
"""
let o = Options(Array(CommandLine.arguments.dropFirst()), usage: usage, flagNames: ["json", "time-ordered"],
                known: ["cluster", "data", "rank", "world-size", "run", "dim", "epochs", "batch", "lr", "l2", "max-inflight-pushes", "seed",
                         "item-tower", "item-rows", "item-features", "books", "embeddings", "item-ids", "levels", "codes", "compare-item-towers",
                         "density", "regrow-interval", "compare-densities", "dnis-blocks", "dnis-search-epochs", "dnis-prune",
                         "dnis-retrain-epochs", "dnis-alpha-lr", "compare-dnis",
                         "admit-min-count", "item-ttl-updates", "user-ttl-updates", "evict-every", "negatives", "model", "sampled-negatives", "temperature", "compare-lifecycle", "seeds", "split", "cold-fraction", "split-seed", "user-tower", "recent-decay", "recent-window", "auth-token-file", "tls-ca", "metrics-port"])
var config = TrainerConfiguration(dataPath: o.required("data"))
config.rank = o.int("rank", default: 0); config.worldSize = o.int("world-size", default: 1)
guard config.worldSize >= 1, config.rank >= 0, config.rank < config.worldSize else { o.fail("need 0 <= --rank < --world-size") }
config.run = o.string("run", default: "goodbooks"); config.dim = o.int("dim", default: 32); config.epochs = o.int("epochs", default: 20)
config.batchSize = o.int("batch", default: 1024); config.learningRate = Float(o.double("lr", default: 0.05))
config.l2 = Float(o.double("l2", default: 1e-4)); config.maxInflightPushes = o.int("max-inflight-pushes", default: 2)
config.seed = UInt64(o.int("seed", default: 1))
config.itemTower.rowBudget = o.int("item-rows", default: 0)
config.itemTower.embeddingsPath = o.string("embeddings"); config.itemTower.embeddingIdsPath = o.string("item-ids")
config.itemTower.levels = o.int("levels", default: 3); config.itemTower.codebookSize = o.int("codes", default: 64)
let itemFeatures: [CatalogueFeature]
do { itemFeatures = try o.string("item-features").map { try CatalogueFeature.list($0) } ?? [] } catch { o.fail("\(error)") }
config.itemTower.cataloguePath = o.string("books")
if !itemFeatures.isEmpty && config.itemTower.cataloguePath == nil { o.fail("--item-features needs --books PATH (goodbooks books.csv)") }
/// The kind and catalogue features of a tower name (`ItemTowerConfiguration.parse`).
@MainActor func towerKind(_ name: String) -> (ItemTowerConfiguration.Kind, [CatalogueFeature]) {
    guard let k = ItemTowerConfiguration.parse(name, features: itemFeatures) else {
        o.fail("unknown item tower '\(name)': use id, unigram, prefix, spm, id+spm, content, id+content, any of them +catalogue, or catalogue")
    }
    if k.0 == .catalogue || name.hasSuffix("+catalogue") {
        guard !itemFeatures.isEmpty else { o.fail("item tower '\(name)' needs --item-features LIST and --books PATH") }
    }
    return k
}
(config.itemTower.kind, config.itemTower.catalogueFeatures) = towerKind(o.string("item-tower", default: "id"))
if !itemFeatures.isEmpty && o.string("compare-item-towers") == nil && config.itemTower.catalogueFeatures.isEmpty {
    o.fail("--item-features is used by item towers named KIND+catalogue or catalogue: e.g. --item-tower content+catalogue")
}
let json = o.flag("json")
config.timeOrdered = o.flag("time-ordered")
guard let negatives = NegativeSampling(rawValue: o.string("negatives", default: "uniform")) else { o.fail("--negatives takes uniform or in-batch") }
config.negatives = negatives
guard let model = TrainingModel(rawValue: o.string("model", default: "bpr")) else { o.fail("--model takes bpr or softmax") }
config.model = model
config.sampledNegatives = o.int("sampled-negatives", default: 2048)
config.temperature = Float(o.double("temperature", default: 0))
guard config.temperature >= 0, config.temperature.isFinite else { o.fail("--temperature must be >= 0 (0 = dot products), e.g. 0.1") }
guard config.temperature == 0 || config.model == .softmax else { o.fail("--temperature needs --model softmax") }
guard let split = SplitKind(rawValue: o.string("split", default: "leave-last-out")) else { o.fail("--split takes leave-last-out or item-cold") }
config.split = split
config.coldFraction = o.double("cold-fraction", default: 0.1)
guard config.coldFraction > 0, config.coldFraction < 1 else { o.fail("--cold-fraction must be in (0, 1), e.g. 0.1") }
config.splitSeed = UInt64(o.int("split-seed", default: 1))
guard let userTower = UserTowerKind(rawValue: o.string("user-tower", default: "id")) else { o.fail("--user-tower takes id, id+history or id+recent") }
guard userTower == .id || config.model == .softmax else { o.fail("--user-tower \(userTower.rawValue) needs --model softmax") }
config.userTower = userTower
config.recency = RecencyWeights(decay: Float(o.double("recent-decay", default: 0.5)), window: o.int("recent-window", default: 20))
guard config.recency.decay > 0, config.recency.decay <= 1 else { o.fail("--recent-decay must be in (0, 1], e.g. 0.5 (1 = equal weights)") }
guard config.recency.window >= 1 else { o.fail("--recent-window must be >= 1 (items read before each position), e.g. 20") }
@MainActor func seedList() -> [UInt64] {
    (o.string("seeds") ?? "\(config.seed)").split(separator: ",").map { s -> UInt64 in
        guard let v = UInt64(s) else { o.fail("--seeds takes integers, e.g. 1,2,3") }
        return v
    }
}
guard config.sampledNegatives >= 0 else { o.fail("--sampled-negatives must be >= 0 (0 = every item)") }
@MainActor func lifecycle(admit: Int, userTTL: Int, itemTTL: Int) -> LifecycleTraining? {
    guard admit >= 0, admit <= 65535, userTTL >= 0, itemTTL >= 0 else { o.fail("--admit-min-count must be in 0...65535 and TTLs >= 0") }
    guard admit > 1 || userTTL > 0 || itemTTL > 0 else { return nil }
    var l = LifecycleTraining()
    l.admitMinCount = admit; l.userTTLUpdates = UInt64(userTTL); l.itemTTLUpdates = UInt64(itemTTL)
    l.evictEveryBatches = o.int("evict-every", default: 30)
    guard l.evictEveryBatches >= 1 else { o.fail("--evict-every must be >= 1") }
    return l
}
config.lifecycle = lifecycle(admit: o.int("admit-min-count", default: 0), userTTL: o.int("user-ttl-updates", default: 0),
                             itemTTL: o.int("item-ttl-updates", default: 0))
@MainActor func sparsity(_ density: Double) -> SparsityConfig? {
    guard density < 1 else { return nil }
    guard density > 0 else { o.fail("densities must be in (0, 1]") }
    var c = SparsityConfig(density: Float(density))
    c.seed = config.seed; c.regrowInterval = o.int("regrow-interval", default: 100); c.rounds = 0
    return c
}
var dnis = DnisTraining()
dnis.blocks = o.int("dnis-blocks", default: 10); dnis.searchEpochs = o.int("dnis-search-epochs", default: 5)
dnis.pruneRatio = o.double("dnis-prune", default: 0.5); dnis.retrainEpochs = o.int("dnis-retrain-epochs", default: 5)
dnis.alphaLearningRate = Float(o.double("dnis-alpha-lr", default: 0.01))
guard dnis.pruneRatio >= 0, dnis.pruneRatio < 1, dnis.searchEpochs >= 0, dnis.retrainEpochs >= 0 else { o.fail("--dnis-prune must be in [0, 1) and epoch counts >= 0") }
if o.string("dnis-blocks") != nil { config.dnis = dnis }
if let d = o.string("density") {
    guard let v = Double(d) else { o.fail("--density must be a number in (0, 1]") }
    config.sparsity = sparsity(v)
}
do {
    let client = try EmbedPSClient(specPath: o.required("cluster"),
                                   options: try ClientOptions.from(tokenFile: o.string("auth-token-file"), tlsCAFile: o.string("tls-ca")))
    if let list = o.string("compare-dnis") {
        var base = config
        base.dnis = nil; base.epochs = config.epochs + dnis.searchEpochs + dnis.retrainEpochs
        base.run = "\(config.run)-full-dim"; base.rank = 0; base.worldSize = 1
        printFlush("== full-dimension baseline (\(base.epochs) epochs) ==")
        var reports: [TrainingReport] = []
        if let r = try await TrainerWorker(config: base, client: client, log: { printFlush($0) }).run() { reports.append(r) }
        for ratio in list.split(separator: ",").map(String.init) {
            guard let v = Double(ratio), v >= 0, v < 1 else { o.fail("--compare-dnis takes prune ratios in [0, 1), e.g. 0.5,0.75") }
            var c = config
            var d = dnis; d.pruneRatio = v
            c.dnis = d; c.run = "\(config.run)-dnis-\(ratio)"; c.rank = 0; c.worldSize = 1
            printFlush("== DNIS, prune \(ratio) ==")
            if let r = try await TrainerWorker(config: c, client: client, log: { printFlush($0) }).run() { reports.append(r) }
        }
        if json { print(jsonText(reports)) } else { print(renderDnisComparison(reports)) }
    } else if let list = o.string("compare-lifecycle") {
        let settings = list.split(separator: ",").map { p -> (Int, Int, Int) in
            let parts = p.split(separator: ":").map { Int($0) }
            guard parts.count == 3, let a = parts[0], let u = parts[1], let i = parts[2] else {
                o.fail("--compare-lifecycle takes ADMIT:USER_TTL:ITEM_TTL triples, e.g. 0:0:0,2:0:0,2:0:30")
            }
            return (a, u, i)
        }
        let seeds = seedList()
        var reports: [[TrainingReport]] = []
        for (admit, userTTL, itemTTL) in settings {
            var runs: [TrainingReport] = []
            for seed in seeds {
                var c = config
                c.lifecycle = lifecycle(admit: admit, userTTL: userTTL, itemTTL: itemTTL)
                c.seed = seed; c.run = "\(config.run)-admit\(admit)-ttl\(userTTL)-\(itemTTL)-seed\(seed)"; c.rank = 0; c.worldSize = 1
                printFlush("== admission \(admit), TTL users \(userTTL) / items \(itemTTL) updates, seed \(seed) ==")
                if let r = try await TrainerWorker(config: c, client: client, log: { printFlush($0) }).run() { runs.append(r) }
            }
            reports.append(runs)
        }
        if json { print(jsonText(reports)) } else { print(renderLifecycleComparison(reports)) }
    } else if let list = o.string("compare-densities") {
        var reports: [TrainingReport] = []
        for d in list.split(separator: ",").map(String.init) {
            guard let v = Double(d) else { o.fail("--compare-densities takes numbers, e.g. 1,0.5,0.2") }
            var c = config
            c.sparsity = sparsity(v)
            c.run = "\(config.run)-density-\(d)"
            c.rank = 0; c.worldSize = 1
            printFlush("== density \(d) ==")
            if let r = try await TrainerWorker(config: c, client: client, log: { printFlush($0) }).run() { reports.append(r) }
        }
        if json { print(jsonText(reports)) } else { print(renderDensityComparison(reports)) }
    } else if let list = o.string("compare-item-towers") {
        let seeds = seedList()
        var reports: [[TrainingReport]] = []
        for name in list.split(separator: ",").map(String.init) {
            var runs: [TrainingReport] = []
            for seed in seeds {
                var c = config
                (c.itemTower.kind, c.itemTower.catalogueFeatures) = towerKind(name)
                c.seed = seed
                c.run = "\(config.run)-\(name.replacingOccurrences(of: "+", with: "_"))" + (seeds.count > 1 ? "-seed\(seed)" : "")
                c.rank = 0; c.worldSize = 1
                printFlush("== item tower \(name)\(seeds.count > 1 ? ", seed \(seed)" : "") ==")
                if let r = try await TrainerWorker(config: c, client: client, log: { printFlush($0) }).run() { runs.append(r) }
            }
            reports.append(runs)
        }
        if json { print(jsonText(reports)) } else { print(renderComparison(reports)) }
    } else {
        let worker = TrainerWorker(config: config, client: client, log: { printFlush($0) })
        var metricsServer: HTTPServer? = nil
        if let port = o.string("metrics-port").flatMap(Int.init) {
            metricsServer = try worker.metrics.serve(port: port)
            printFlush("rank \(config.rank): Prometheus metrics on http://0.0.0.0:\(metricsServer!.port)/metrics")
        }
        defer { metricsServer?.stop() }
        if let report = try await worker.run() {
            if json { print(jsonText(report)) } else { print(renderReport(report)) }
        }
    }
} catch {
    printError("error: rank \(config.rank): \(error)")
    exitNow(1)
}
exitNow(0)
