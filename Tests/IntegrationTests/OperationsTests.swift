import Testing
import Foundation
import Engine
import Vocabulary
import Client

@Suite(.serialized) struct OperationsTests {
    @Test func asyncModeSurvivesKillNineOfTheProcessAndFlushTrimsTheLog() async throws {
        let cluster = try LocalCluster(shards: 2, durability: "async")
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = ShardClusterTests.adagradSpec("async", dim: 8)
        try await client.admin.createTable(spec)
        var ref = ReferenceTable(spec)
        let ids = (0..<300).map { UInt64($0) * 3 }
        for round in 0..<3 {
            let g = gradients(ids.count, 8, seed: 50 + UInt64(round))
            try await client.push(table: "async", ids: ids, gradients: g)
            ref.push(ids, g)
        }
        var stats = try await client.admin.describeTable("async")
        #expect(stats.allSatisfy { $0.dirtyRows > 0 && $0.logBytes > 0 }, "updates live in the cache and the log")
        try await client.admin.flush(table: "async")
        stats = try await client.admin.describeTable("async")
        #expect(stats.allSatisfy { $0.dirtyRows == 0 && $0.logBytes == 0 && $0.checkpoints >= 1 })
        // More updates after the checkpoint, then a process crash: the OS still holds the written log.
        let g = gradients(ids.count, 8, seed: 77)
        try await client.push(table: "async", ids: ids, gradients: g)
        ref.push(ids, g)
        cluster.kill9(0); cluster.kill9(1)
        try cluster.restart(0); try cluster.restart(1)
        try await client.waitUntilHealthy(timeoutSeconds: 20)
        #expect(try await client.pull(table: "async", ids: ids) == ref.weights(ids))
        #expect(try await client.admin.describeTable("async").reduce(0) { $0 + $1.rows } == UInt64(ids.count))
    }

    /// `--log-segment-mb` sets where the update log switches segment files: with 1 MiB, ~3.4 MiB of pushes
    /// fill several segments, a kill -9 loses none of their updates, and a value outside 1-4096 is refused at
    /// start, naming the option.
    @Test func theLogSegmentSizeIsASettingAndAKillAcrossSegmentsLosesNothing() async throws {
        let cluster = try LocalCluster(shards: 1, extraArgs: ["--log-segment-mb", "1"])
        defer { cluster.stop() }
        let client = try cluster.client()
        let spec = ShardClusterTests.adagradSpec("seg", dim: 64)
        try await client.admin.createTable(spec)
        var ref = ReferenceTable(spec)
        let ids = (0..<1_000).map { UInt64($0) * 7 }
        for round in 0..<13 {   // 13 records of ~264 KB
            let g = gradients(ids.count, 64, seed: 300 + UInt64(round))
            try await client.push(table: "seg", ids: ids, gradients: g)
            ref.push(ids, g)
        }
        let logRoot = cluster.dataDir(0) + "/updatelog"
        let segments = (FileManager.default.enumerator(atPath: logRoot)?.allObjects as? [String] ?? [])
            .filter { ($0 as NSString).lastPathComponent.hasPrefix("seg-") }
        #expect(segments.count >= 3, "segments under \(logRoot): \(segments)")
        cluster.kill9(0)
        try cluster.restart(0)
        try await client.waitUntilHealthy(timeoutSeconds: 20)
        #expect(try await client.pull(table: "seg", ids: ids) == ref.weights(ids))

        for bad in ["0", "4097", "x"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: LocalCluster.binary("embedps-server"))
            p.arguments = ["--cluster", cluster.serverSpecPath, "--shard-index", "0", "--listen", "127.0.0.1:0",
                           "--data-dir", cluster.root.appendingPathComponent("refused").path, "--log-segment-mb", bad]
            let err = Pipe()
            p.standardError = err; p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus != 0 && text.contains("--log-segment-mb"), "--log-segment-mb \(bad): \(text)")
        }
    }

    /// A periodic checkpoint writes a snapshot file (the default for a plain table); DescribeTable reports
    /// its bytes, and an admin flush (a checkpoint into RocksDB) ends it, leaving every row readable.
    @Test func describeReportsTheCheckpointSnapshotAndAFlushEndsIt() async throws {
        let cluster = try LocalCluster(shards: 1, extraArgs: ["--checkpoint-seconds", "1"])
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "t", dim: 8, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        let ids = (0..<UInt64(500)).map { $0 }
        try await client.push(table: "t", ids: ids, gradients: [Float](repeating: -1, count: 500 * 8))
        var stats = try await client.admin.describeTable("t")[0]
        for _ in 0..<100 where stats.snapshotBytes == 0 {   // polled for up to ~10 s
            try await Task.sleep(nanoseconds: 100_000_000)
            stats = try await client.admin.describeTable("t")[0]
        }
        #expect(stats.snapshotBytes > 500 * 8 * 4 && stats.checkpoints >= 1, "a snapshot of 500 rows: \(stats.snapshotBytes) bytes")
        try await client.admin.flush(table: "t")
        let after = try await client.admin.describeTable("t")[0]
        #expect(after.snapshotBytes == 0 && after.dirtyRows == 0 && after.rows == 500)
        #expect(try await client.pull(table: "t", ids: ids) == [Float](repeating: 1, count: 500 * 8))
    }

    @Test func adminToolReportsStatusAndManagesTablesAsJSON() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        func admin(_ args: [String]) throws -> (Int32, String) { try cluster.admin(args) }
        let created = try admin(["table", "create", "items", "--dim", "16", "--optimizer", "adam", "--lr", "0.01"])
        #expect(created.0 == 0, "\(created.1)")
        let (code, text) = try admin(["table", "describe", "items", "--json"])
        #expect(code == 0)
        struct Row: Decodable { var shard: Int; var table: String; var dim: Int; var optimizer: String }
        let rows = try JSONDecoder().decode([Row].self, from: Data(text.utf8))
        #expect(rows.map(\.shard) == [0, 1] && rows.allSatisfy { $0.table == "items" && $0.dim == 16 && $0.optimizer == "adam" })
        let status = try admin(["status", "--json"])
        struct Shard: Decodable { var ownedSlots: Int; var durability: String }
        #expect(try JSONDecoder().decode([Shard].self, from: Data(status.1.utf8)).map(\.ownedSlots) == [2048, 2048])
        let bad = try admin(["table", "create", "bad", "--dim", "0"])
        #expect(bad.0 != 0 && bad.1.contains("dim 0"), "errors name the field: \(bad.1)")
        #expect(try admin(["table", "drop", "items"]).0 == 0)
        #expect(try JSONDecoder().decode([String].self, from: Data(admin(["table", "list", "--json"]).1.utf8)) == [])

        // Operator flow for a semantic table: build codes, create the table, register the codes, describe.
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Cluster/data/goodbooks-10k-sample")
        let codesFile = cluster.root.appendingPathComponent("codes.tsv").path
        let built = try admin(["semantic-ids", "build", "--embeddings", sample.appendingPathComponent("item_embeddings.f32").path,
                               "--ids", sample.appendingPathComponent("item_ids.txt").path, "--levels", "2", "--codes", "16",
                               "--iterations", "5", "--out", codesFile, "--json"])
        #expect(built.0 == 0, "\(built.1.suffix(300))")
        let made = try admin(["table", "create", "books", "--dim", "8", "--semantic", "prefix", "--levels", "2", "--codes", "16", "--rows", "300"])
        #expect(made.0 == 0, "\(made.1)")
        let registered = try admin(["semantic-ids", "register", "--table", "books", "--codes-file", codesFile])
        #expect(registered.0 == 0 && registered.1.contains("registered 6020 items"), "\(registered.1)")
        struct SemRow: Decodable { var semanticItems: Int?; var piecesPerItem: Double?; var pieceRowsUsed: Int? }
        let sem = try JSONDecoder().decode([SemRow].self, from: Data(admin(["table", "describe", "books", "--json"]).1.utf8))
        #expect(sem.allSatisfy { $0.semanticItems == 6020 && $0.piecesPerItem == 2 && ($0.pieceRowsUsed ?? 0) > 16 })

        // A shard down: with --retry-seconds 0 a command makes one attempt and names the shard (the default
        // retries for 30 s, as a client does while a shard restarts); a bad value is refused before any call.
        var downSpec = cluster.clientSpec
        downSpec.shards[1] = .init(address: "127.0.0.1:1")   // nothing listens there
        let asked = Date()
        let down = try cluster.admin(["flush", "--retry-seconds", "0"], spec: downSpec)
        #expect(down.0 != 0 && down.1.contains("shard 1") && down.1.contains("UNAVAILABLE"), "\(down.1)")
        #expect(Date().timeIntervalSince(asked) < 20, "one attempt, not the default 30 s of retries")
        let badRetry = try admin(["status", "--retry-seconds", "-1"])
        #expect(badRetry.0 != 0 && badRetry.1.contains("--retry-seconds"), "\(badRetry.1)")
    }
}
