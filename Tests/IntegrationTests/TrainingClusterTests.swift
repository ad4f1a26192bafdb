import Testing
import Foundation
import Engine
import Vocabulary
import Client
import Training

/// Runs `embedps-train` workers as real processes against real shards and reads rank 0's JSON report.
struct TrainerProcess {
    let process = Process()
    let output = Pipe()

    init(spec: String, data: String, rank: Int, world: Int, run: String, extra: [String]) throws {
        process.executableURL = URL(fileURLWithPath: LocalCluster.binary("embedps-train"))
        process.arguments = ["--cluster", spec, "--data", data, "--rank", "\(rank)", "--world-size", "\(world)", "--run", run, "--json"] + extra
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    /// Waits for exit and returns stdout.
    func finish() -> String {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

struct Metrics: Decodable { var model: String; var recallAt20: Double; var ndcgAt20: Double }
struct LifecycleCounts: Decodable { var rows: UInt64; var rowsAdmitted: UInt64; var pushesRefused: UInt64; var rowsEvicted: UInt64; var evictionPasses: UInt64 }
struct Report: Decodable {
    var test: [Metrics]; var validation: [Metrics]; var epochs: Int; var workers: Int; var shards: Int
    var users: Int; var items: Int
    var lifecycle: LifecycleCounts?
    /// Recall@20 averaged over the test and final validation held-outs (1,238 users on the sample).
    var recall: Double { (test[0].recallAt20 + (validation.last?.recallAt20 ?? test[0].recallAt20)) / 2 }
}

func parseReport(_ text: String) throws -> Report {
    // Progress lines precede the JSON document, which starts at the first line that is exactly "{".
    guard let start = text.range(of: "\n{\n") ?? (text.hasPrefix("{") ? text.range(of: "{") : nil) else {
        throw ClusterSpecError("no JSON report in trainer output: \(text.suffix(500))")
    }
    return try JSONDecoder().decode(Report.self, from: Data(text[start.lowerBound...].utf8))
}

@Suite(.serialized) struct TrainingClusterTests {
    static var sample: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Cluster/data/goodbooks-10k-sample/ratings.csv.gz").path
    }
    static let trainArgs = ["--epochs", "20", "--max-inflight-pushes", "0"]

    func train(shards: Int, workers: Int, seed: Int, args: [String] = Self.trainArgs) throws -> Report {
        let cluster = try LocalCluster(shards: shards)
        defer { cluster.stop() }
        let spec = cluster.root.appendingPathComponent("client.json").path
        try cluster.clientSpec.encoded().write(to: URL(fileURLWithPath: spec))
        let procs = try (0..<workers).map { try TrainerProcess(spec: spec, data: Self.sample, rank: $0, world: workers, run: "t", extra: args + ["--seed", "\(seed)"]) }
        let outputs = procs.map { $0.finish() }
        for (r, p) in procs.enumerated() { #expect(p.process.terminationStatus == 0, "worker \(r) failed") }
        return try parseReport(outputs[0])
    }

    /// On the sample one run's Recall@20 varies by about 7% between seeds (619 test users, ~37 hits), so
    /// each configuration is measured as the mean over 3 seeds of its test and final-validation Recall@20.
    /// The single-process twin (same split, batches, negatives, initial rows and Adagrad code, no shards)
    /// is the reference: the PS-trained means must be within seed noise of it, taken as the larger of the
    /// spreads (max - min over seeds) and 12% of the twin's mean (about two standard deviations of a
    /// difference of two 3-seed means at 7% per run).
    @Test func trainingThroughShardsMatchesTheSingleProcessTwinWithinSeedNoise() throws {
        let seeds = [11, 12, 13]
        let single = try seeds.map { try train(shards: 1, workers: 1, seed: $0) }
        let multi = try seeds.map { try train(shards: 2, workers: 2, seed: $0) }
        let data = try InteractionData.load(path: Self.sample)
        let twin = seeds.map { SingleProcessTwin(seed: UInt64($0)).run(data) }.map { ($0.test + $0.validation) / 2 }
        func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
        func spread(_ xs: [Double]) -> Double { (xs.max() ?? 0) - (xs.min() ?? 0) }
        let r1 = mean(single.map(\.recall)), r2 = mean(multi.map(\.recall)), rt = mean(twin)
        let noise = max(spread(single.map(\.recall)), spread(multi.map(\.recall)), spread(twin), 0.12 * rt)
        let pop = single[0].test[1].recallAt20
        #expect(single[0].test[1].model == "popularity" && multi[0].workers == 2 && multi[0].shards == 2)
        #expect(r2 >= 0.95 * r1, "2x2 mean Recall@20 \(r2) is more than 5% below 1x1 \(r1)")
        #expect(abs(r1 - rt) <= noise, "1x1 mean Recall@20 \(r1) vs single-process twin \(rt): more than the seed noise \(noise)")
        #expect(abs(r2 - rt) <= noise, "2x2 mean Recall@20 \(r2) vs single-process twin \(rt): more than the seed noise \(noise)")
        #expect(r1 >= 1.2 * pop && r2 >= 1.2 * pop && rt >= 1.2 * pop, "MF-BPR \(r1) / \(r2) / twin \(rt) vs popularity \(pop)")
    }

    /// The recency-aware user tower trained through 2 shards by 2 workers: reading the items just before each
    /// example (the sample's file order is its time order) lifts Recall@20 far past the id-only tower trained
    /// the same way (measured 0.116 against 0.066 on test, 0.192 against 0.087 on validation, seed 1: a 1.3x
    /// margin is several times one run's seed noise of about 7%).
    @Test func aRecencyAwareUserTowerBeatsTheIdTowerThroughShards() throws {
        let args = ["--model", "softmax", "--dim", "32", "--lr", "0.1", "--epochs", "5"]
        let id = try train(shards: 2, workers: 2, seed: 1, args: args + ["--user-tower", "id"])
        let recent = try train(shards: 2, workers: 2, seed: 1, args: args + ["--user-tower", "id+recent"])
        #expect(recent.test[0].model.contains("users: id+recent") && !id.test[0].model.contains("users:"))
        #expect(recent.recall >= 1.3 * id.recall, "id+recent Recall@20 \(recent.recall) vs id \(id.recall)")
        #expect(id.recall > id.test[1].recallAt20, "the id tower \(id.recall) beats popularity \(id.test[1].recallAt20)")
    }

    /// The best model (softmax, recency user tower) trained through a shard matches its single-process twin
    /// (`SoftmaxTwin`: same split, batches, candidates, contexts, initial rows and Adagrad code, no shards)
    /// within seed noise, taken as in the MF-BPR twin test; pushes are synchronous so both see the same rows.
    @Test func theRecencyModelThroughAShardMatchesItsSingleProcessTwin() throws {
        let seeds = [1, 2, 3]
        let args = ["--model", "softmax", "--user-tower", "id+recent", "--recent-window", "5", "--dim", "32", "--lr", "0.1", "--epochs", "5",
                    "--max-inflight-pushes", "0"]
        let ps = try seeds.map { try train(shards: 1, workers: 1, seed: $0, args: args) }
        let data = try InteractionData.load(path: Self.sample)
        let twin = seeds.map { SoftmaxTwin(seed: UInt64($0)).run(data) }.map { ($0.test + $0.validation) / 2 }
        func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
        func spread(_ xs: [Double]) -> Double { (xs.max() ?? 0) - (xs.min() ?? 0) }
        let rp = mean(ps.map(\.recall)), rt = mean(twin)
        let noise = max(spread(ps.map(\.recall)), spread(twin), 0.12 * rt)
        #expect(ps.allSatisfy { $0.test[0].model.contains("users: id+recent") })
        #expect(abs(rp - rt) <= noise, "PS mean Recall@20 \(rp) vs single-process twin \(rt): more than the seed noise \(noise)")
        #expect(rt >= 2 * ps[0].test[1].recallAt20, "twin \(rt) vs popularity \(ps[0].test[1].recallAt20)")
    }

    /// The item-cold split of the sample (301 test items never seen in training): a semantic-ID tower (unigram
    /// pieces of RQ-k-means codes) plus the catalogue's popularity feature (Goodreads-wide ratings count in
    /// half-octave buckets, from the bundled books.csv) beats popularity among the held-out items, a reference
    /// told the other users' held-out interactions, and the catalogue feature alone: the semantic rows carry
    /// what each user likes on top of how popular a book is. Measured 0.556 against 0.464 and 0.402 on test
    /// (seed 1, 575 users); the 1.1x and 1.15x margins are above one run's seed noise of about 7%.
    @Test func aSemanticTowerWithTheCatalogueBeatsPopularityOnColdItems() throws {
        let dir = URL(fileURLWithPath: Self.sample).deletingLastPathComponent()
        let args = ["--split", "item-cold", "--model", "softmax", "--dim", "32", "--lr", "0.1", "--epochs", "5", "--max-inflight-pushes", "0",
                    "--item-rows", "1000", "--item-features", "popularity", "--books", dir.appendingPathComponent("books.csv").path,
                    "--embeddings", dir.appendingPathComponent("item_embeddings.f32").path, "--item-ids", dir.appendingPathComponent("item_ids.txt").path]
        let semantic = try train(shards: 1, workers: 1, seed: 1, args: args + ["--item-tower", "unigram+catalogue"])
        let alone = try train(shards: 1, workers: 1, seed: 1, args: args + ["--item-tower", "catalogue"])
        #expect(semantic.test.map(\.model) == ["two-tower softmax (EmbedPS, items: unigram + catalogue popularity)",
                                               "popularity among held-out items", "catalogue ratings count"])
        let reference = semantic.test[1].recallAt20, catalogueCount = semantic.test[2].recallAt20
        #expect(semantic.test[0].recallAt20 >= 1.1 * reference, "unigram + catalogue \(semantic.test[0].recallAt20) vs popularity among held-out items \(reference)")
        #expect(semantic.test[0].recallAt20 >= 1.1 * catalogueCount, "unigram + catalogue \(semantic.test[0].recallAt20) vs catalogue ratings count \(catalogueCount)")
        #expect(semantic.recall >= 1.15 * alone.recall, "unigram + catalogue \(semantic.recall) vs the catalogue alone \(alone.recall)")
    }

    /// A streaming run (file order, one pass) with admission 2 and an item TTL: the trainer's own eviction
    /// passes delete stale item rows, the first push of every id is refused, and the model still beats
    /// popularity; the report's counters are the shards' (rows at the end below users + items).
    @Test func aStreamingRunWithAdmissionAndAnItemTTLBoundsTheTables() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let spec = cluster.root.appendingPathComponent("client.json").path
        try cluster.clientSpec.encoded().write(to: URL(fileURLWithPath: spec))
        let args = ["--time-ordered", "--epochs", "1", "--batch", "256", "--lr", "0.2", "--admit-min-count", "2", "--item-ttl-updates", "10",
                    "--evict-every", "10", "--seed", "3"]
        let p = try TrainerProcess(spec: spec, data: Self.sample, rank: 0, world: 1, run: "life", extra: args)
        let out = p.finish()
        #expect(p.process.terminationStatus == 0, "\(out.suffix(300))")
        let report = try parseReport(out)
        let l = try #require(report.lifecycle, "no lifecycle in the report")
        #expect(l.rowsEvicted > 0 && l.evictionPasses > 0, "TTL evicted nothing: \(l)")
        #expect(l.pushesRefused >= UInt64(report.users + report.items) / 2, "admission refused too few first pushes: \(l)")
        #expect(l.rows < UInt64(report.users + report.items), "rows \(l.rows) not below users + items")
        #expect(report.test[0].recallAt20 > report.test[1].recallAt20, "streaming model \(report.test[0].recallAt20) vs popularity \(report.test[1].recallAt20)")
        // The counters are the shards': the user table (no TTL) evicted nothing, the item table all of it.
        let client = try EmbedPSClient(spec: cluster.clientSpec)
        let users = try await client.admin.describeTable("life.user"), items = try await client.admin.describeTable("life.item")
        #expect(users.reduce(0) { $0 + $1.rowsEvicted } == 0)
        #expect(items.reduce(0) { $0 + $1.rowsEvicted } == l.rowsEvicted)
        #expect(users.reduce(0) { $0 + $1.rows } + items.reduce(0) { $0 + $1.rows } == l.rows)
    }

    @Test func aWorkerKilledMidEpochAndRestartedLetsTrainingFinish() throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let spec = cluster.root.appendingPathComponent("client.json").path
        try cluster.clientSpec.encoded().write(to: URL(fileURLWithPath: spec))
        let args = ["--epochs", "8", "--batch", "256"]
        let rank0 = try TrainerProcess(spec: spec, data: Self.sample, rank: 0, world: 2, run: "k", extra: args)
        var rank1 = try TrainerProcess(spec: spec, data: Self.sample, rank: 1, world: 2, run: "k", extra: args)
        // Let worker 1 get into training, then kill it without warning and start a replacement.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(rank1.process.isRunning, "worker 1 finished before it could be killed: make the run longer")
        kill(rank1.process.processIdentifier, SIGKILL)
        rank1.process.waitUntilExit()
        rank1 = try TrainerProcess(spec: spec, data: Self.sample, rank: 1, world: 2, run: "k", extra: args)
        let out0 = rank0.finish(), out1 = rank1.finish()
        #expect(rank0.process.terminationStatus == 0 && rank1.process.terminationStatus == 0, "\(out1.suffix(300))")
        let report = try parseReport(out0)
        #expect(report.epochs == 8)
        #expect(report.test[0].recallAt20 > report.test[1].recallAt20, "trained model beats popularity")
    }
}
