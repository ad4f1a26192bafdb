import Testing
import Foundation
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Seeded fuzzing of a real shard and a real lookup service through their public methods: random bytes and
/// mutated valid requests (bit flips, truncations, insertions, duplicated or spliced fields) to every
/// method of `embedps.v1.Shard` and `embedps.v1.Lookup`. Passes when no call got INTERNAL (or any status
/// without an ErrorDetail), both servers still answer health, and the rows of a control table nobody may
/// touch are byte-identical afterwards.
@Suite(.serialized) struct FuzzTests {
    static let messages = Int(ProcessInfo.processInfo.environment["EMBEDPS_FUZZ_MESSAGES"] ?? "") ?? 24_000

    /// A valid request per method (targeting table "fz", never the control table).
    static func templates(specJSON: String) -> [String: [UInt8]] {
        let spec = TableSpec(name: "fz", dim: 4, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1)).wire
        let push = Wire.PushRequest(table: "fz", ids: [1, 2, 3], gradients: [Float](repeating: 0.5, count: 12).withUnsafeBytes { Array($0) }).encoded()
        let pull = Wire.PullRequest(table: "fz", ids: [1, 2, 3, 1 << 40]).encoded()
        let name = Wire.DescribeTableRequest(table: "fz").encoded()
        let cp = Wire.CheckpointRequest(name: "fzcp", freezeSeconds: 2).encoded()
        var t: [String: [UInt8]] = [:]
        for m in ShardRPC.all { t[m.path] = name }
        t[ShardRPC.pull.path] = pull; t[ShardRPC.pullPooled.path] = pull; t[ShardRPC.pullCompact.path] = pull
        t[ShardRPC.push.path] = push; t[ShardRPC.pushPooled.path] = push; t[ShardRPC.importRows.path] = push; t[ShardRPC.dnisAlphaGradient.path] = push
        t[ShardRPC.createTable.path] = Wire.CreateTableRequest(spec: spec).encoded()
        t[ShardRPC.listTables.path] = []; t[ShardRPC.shardStatus.path] = []; t[ShardRPC.listCheckpoints.path] = []; t[ShardRPC.getShardMap.path] = []
        t[ShardRPC.registerItems.path] = Wire.RegisterItemsRequest(table: "fz", items: [1, 2], codes: [1, 2, 3, 4]).encoded()
        t[ShardRPC.sparsityStep.path] = Wire.SparsityStepRequest(table: "fz", prune: 3, grow: 3, round: 1).encoded()
        t[ShardRPC.dnisAssignBlocks.path] = Wire.DnisAssignRequest(table: "fz", take: [1, 2]).encoded()
        t[ShardRPC.dnisAlpha.path] = Wire.DnisAlphaRequest(table: "fz", gradient: [1, 2]).encoded()
        t[ShardRPC.dnisPrune.path] = Wire.DnisPruneRequest(table: "fz", prune: 2, threshold: 0.1).encoded()
        for path in [ShardRPC.freeze.path, ShardRPC.thaw.path, ShardRPC.createCheckpoint.path, ShardRPC.restoreCheckpoint.path] { t[path] = cp }
        t[ShardRPC.exportRows.path] = Wire.ExportRowsRequest(table: "fz", hasCursor: true, afterSlot: 7, afterKey: 9, limit: 3).encoded()
        t[ShardRPC.setShardMap.path] = Wire.ShardMapRequest(specJson: specJSON).encoded()
        t[ShardRPC.beginMigration.path] = Wire.SlotsRequest(slots: [7, 4096]).encoded()
        t[ShardRPC.endMigration.path] = Wire.SlotsRequest(slots: [7]).encoded()
        t[ShardRPC.exportSlotRows.path] = Wire.SlotRowsRequest(table: "fz", slot: 7, limit: 2).encoded()
        t[ShardRPC.exportItems.path] = Wire.SlotRowsRequest(table: "fz", slot: 7, limit: 2).encoded()
        t[ShardRPC.importSlotRows.path] = Wire.SlotRows(table: "fz", keys: [5], rows: [[UInt8](repeating: 1, count: 20)]).encoded()
        t[ShardRPC.setDnisState.path] = Wire.DnisState(table: "fz", alphaVersion: 2, alpha: [1]).encoded()
        t[HealthRPC.check.path] = Wire.HealthCheckRequest(service: "").encoded()
        return t
    }

    /// One mutated or random message.
    static func mutate(_ template: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = template
        switch rng.next() % 8 {
        case 0: return (0..<Int(rng.next() % 48)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }   // random bytes
        case 1: if !b.isEmpty { let i = Int(rng.next() % UInt64(b.count)); b[i] ^= UInt8(1 << (rng.next() % 8)) }   // bit flip
        case 2: b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1))))                                  // truncation
        case 3: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(b.count + 1)))  // insertion
        case 4: b += b                                                                                         // duplicated fields
        case 5: if !b.isEmpty { b[Int(rng.next() % UInt64(b.count))] = [0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12][Int(rng.next() % 6)] }
        case 6: b += [0x0a, UInt8(rng.next() % 8)] + (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }  // spliced field
        default: for _ in 0..<3 where !b.isEmpty { b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        return b
    }

    @Test func randomAndMutatedMessagesNeverCrashOrFailInternallyAndTouchNothingElse() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let client = try cluster.client()
        // The control table: rows written before, compared byte for byte after.
        try await client.admin.createTable(TableSpec(name: "control_rows_keep_out", dim: 8, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1)))
        let controlIDs = (0..<500).map { UInt64($0) * 7919 }
        try await client.push(table: "control_rows_keep_out", ids: controlIDs, gradients: (0..<4000).map { Float($0 % 17) - 8 })
        let before = try await client.pull(table: "control_rows_keep_out", ids: controlIDs)
        try await client.admin.createTable(TableSpec(name: "fz", dim: 4, optimizer: OptimizerConfig(kind: .adagrad, learningRate: 0.1)))
        let (lookup, lookupPort, _) = try cluster.startLookup(extraArgs: ["--cache-rows", "0"])
        defer { lookup.terminate(); lookup.waitUntilExit() }

        let shardSpec = String(decoding: try client.spec.encoded(), as: UTF8.self)
        let templates = Self.templates(specJSON: shardSpec)
        let shardPaths = (ShardRPC.all + HealthRPC.all).map(\.path)
        let lookupPaths = (LookupRPC.all + HealthRPC.all).map(\.path)
        let shardChannel = try await LocalCluster.connectedChannel(port: cluster.ports[0])
        let lookupChannel = Channel(ChannelConfiguration(target: "127.0.0.1:\(lookupPort)"))
        defer { shardChannel.close(); lookupChannel.close() }
        let bad = Violations()
        let counts = AckedCounts()
        let workers = 8, perWorker = Self.messages / workers
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<workers {
                group.addTask {
                    var rng = SplitMix64(seed: 0xF022 + UInt64(w))
                    for _ in 0..<perWorker {
                        let toLookup = rng.next() % 5 == 0
                        let paths = toLookup ? lookupPaths : shardPaths
                        let path = paths[Int(rng.next() % UInt64(paths.count))]
                        let template = toLookup && path != HealthRPC.check.path ? templates[ShardRPC.pull.path]! : templates[path] ?? []
                        let bytes = Self.mutate(template, &rng)
                        let (code, detail, _) = await HardeningTests.send(toLookup ? lookupChannel : shardChannel, path, bytes)
                        counts.add([UInt64(code.rawValue)])
                        if code == .internalError || code == .unknown || (code != .ok && detail == nil) {
                            bad.add("\(path) <- \(bytes.map { String(format: "%02x", $0) }.joined()): \(code) \(String(describing: detail))")
                        }
                    }
                }
            }
        }
        let byCode = counts.snapshot.sorted { $0.key < $1.key }.map { "\(StatusCode(rawValue: Int32($0.key))!)=\($0.value)" }
        print("fuzz: \(perWorker * workers) messages: \(byCode.joined(separator: " "))")
        #expect(bad.all.isEmpty, "\(bad.all)")
        #expect(cluster.allRunning && lookup.isRunning, "a server died: \(cluster.logTail())")
        // Thaw in case a fuzzed Freeze landed, then compare the control rows.
        _ = try? await shardChannel.unary(ShardRPC.thaw.path, OutgoingMessage(bytes: Wire.CheckpointRequest(name: "fzcp").encoded()))
        #expect(await client.health() == [true])
        let after = try await client.pull(table: "control_rows_keep_out", ids: controlIDs)
        #expect(after.withUnsafeBytes { Array($0) } == before.withUnsafeBytes { Array($0) }, "control rows changed")
        #expect(counts.snapshot[UInt64(StatusCode.ok.rawValue)] ?? 0 > 100, "mutations should leave some valid requests")
    }
}
