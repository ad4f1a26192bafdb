import Foundation
import CLI
import Client
import Vocabulary
import EmbedPSWire

func formatBytes(_ b: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[u])
}

struct TableStatsJSON: Codable {
    var shard: Int, table: String, dim: Int, optimizer: String, rows: UInt64, cachedRows: UInt64, dirtyRows: UInt64
    var cacheCapacityRows: UInt64, bytesOnDisk: UInt64, logBytes: UInt64, pulls: UInt64, pushes: UInt64
    var rowsPulled: UInt64, rowsPushed: UInt64, checkpoints: UInt64
    var semanticItems: UInt64?, piecesPerItem: Double?, pieceRowsUsed: UInt64?, pieceCollisions: UInt64?
    init(shard: Int, _ s: Wire.TableStats) {
        let spec = s.spec ?? Wire.TableSpec()
        self.shard = shard; table = spec.name; dim = Int(spec.dim)
        optimizer = OptimizerKind(rawValue: UInt8(truncatingIfNeeded: (spec.optimizer ?? Wire.OptimizerConfig()).kind.rawValue))?.description ?? "?"
        rows = s.rows; cachedRows = s.cachedRows; dirtyRows = s.dirtyRows; cacheCapacityRows = s.cacheCapacityRows
        bytesOnDisk = s.bytesOnDisk; logBytes = s.logBytes; pulls = s.pulls; pushes = s.pushes
        rowsPulled = s.rowsPulled; rowsPushed = s.rowsPushed; checkpoints = s.checkpoints
        semanticItems = s.semantic?.items; piecesPerItem = s.semantic?.piecesPerItem
        pieceRowsUsed = s.semantic?.rowsUsed; pieceCollisions = s.semantic?.collisions
    }
}

struct ShardStatusJSON: Codable {
    var shard: Int, address: String, mapVersion: UInt64, ownedSlots: UInt32, durability: String
    var cacheHitRate: Double, requestsPerSecond: Double, rowsPerSecond: Double, latencyP50Ms: Double, latencyP99Ms: Double
    var uptimeSeconds: UInt64, bytesOnDisk: UInt64, tables: [TableStatsJSON]
}

func runAdmin(_ o: Options) async throws {
    let words = o.positional
    guard let command = words.first else { o.fail("missing command") }
    if command == "semantic-ids", words.dropFirst().first == "build" {
        try runSemanticIDBuild(o)
        return
    }
    let client = try EmbedPSClient(specPath: o.required("cluster"),
                                   options: try ClientOptions.from(tokenFile: o.string("auth-token-file"), tlsCAFile: o.string("tls-ca")))
    let json = o.flag("json")
    switch (command, words.dropFirst().first) {
    case ("status", _):
        let statuses = try await client.shardStatus()
        let out = statuses.enumerated().map { i, s in
            ShardStatusJSON(shard: i, address: client.spec.shards[i].address, mapVersion: s.shardMapVersion, ownedSlots: s.ownedSlots,
                            durability: s.durability, cacheHitRate: s.cacheHitRate, requestsPerSecond: s.requestsPerSecond,
                            rowsPerSecond: s.rowsPerSecond, latencyP50Ms: s.latencyP50Ms, latencyP99Ms: s.latencyP99Ms,
                            uptimeSeconds: s.uptimeSeconds, bytesOnDisk: s.bytesOnDisk, tables: s.tables.map { TableStatsJSON(shard: i, $0) })
        }
        if json { print(jsonText(out)); return }
        print(renderTable(["shard", "address", "slots", "map", "durability", "tables", "rows", "disk", "hit rate", "req/s", "rows/s", "p50 ms", "p99 ms", "uptime"],
                          out.map { s in [String(s.shard), s.address, String(s.ownedSlots), String(s.mapVersion), s.durability, String(s.tables.count),
                                          String(s.tables.reduce(0) { $0 + $1.rows }), formatBytes(s.bytesOnDisk), String(format: "%.1f%%", s.cacheHitRate * 100),
                                          String(format: "%.0f", s.requestsPerSecond), String(format: "%.0f", s.rowsPerSecond),
                                          String(format: "%.2f", s.latencyP50Ms), String(format: "%.2f", s.latencyP99Ms), "\(s.uptimeSeconds)s"] }))
    case ("health", _):
        let h = await client.health()
        if json { print(jsonText(h.enumerated().map { ["shard": "\($0.offset)", "address": client.spec.shards[$0.offset].address, "serving": "\($0.element)"] })) }
        else { print(renderTable(["shard", "address", "health"], h.enumerated().map { ["\($0.offset)", client.spec.shards[$0.offset].address, $0.element ? "SERVING" : "DOWN"] })) }
        if !h.allSatisfy({ $0 }) { exitNow(1) }
    case ("table", "list"):
        let names = try await client.listTables()
        if json { print(jsonText(names)) } else { names.forEach { print($0) } }
    case ("table", "describe"):
        guard let name = words.dropFirst(2).first else { o.fail("table describe needs a NAME") }
        let stats = try await client.describeTable(name).enumerated().map { TableStatsJSON(shard: $0.offset, $0.element) }
        if json { print(jsonText(stats)); return }
        print(renderTable(["shard", "table", "dim", "optimizer", "rows", "cached", "dirty", "cache cap", "disk", "log", "pulls", "pushes", "checkpoints"],
                          stats.map { [String($0.shard), $0.table, String($0.dim), $0.optimizer, String($0.rows), String($0.cachedRows), String($0.dirtyRows),
                                       String($0.cacheCapacityRows), formatBytes($0.bytesOnDisk), formatBytes($0.logBytes), String($0.pulls), String($0.pushes), String($0.checkpoints)] }))
        if let s = stats.first, let items = s.semanticItems {
            print("\nsemantic table: \(items) items registered, \(String(format: "%.2f", s.piecesPerItem ?? 0)) pieces per item, " +
                  "\(s.pieceRowsUsed ?? 0) piece rows used, \(s.pieceCollisions ?? 0) pieces sharing a row through hashing")
        }
    case ("table", "create"):
        guard let name = words.dropFirst(2).first else { o.fail("table create needs a NAME") }
        let spec = try tableSpec(name: name, o)
        try await client.createTable(spec)
        if json { print(jsonText(["created": name])) } else { print("table \(name) created on \(client.shardCount) shards (dim \(spec.dim), \(spec.optimizer.kind), lr \(spec.optimizer.learningRate))") }
    case ("table", "drop"):
        guard let name = words.dropFirst(2).first else { o.fail("table drop needs a NAME") }
        let dropped = try await client.dropTable(name)
        if json { print(jsonText(["dropped": dropped])) } else { print(dropped ? "table \(name) dropped" : "no table \(name)") }
    case ("semantic-ids", "register"):
        let path = o.required("codes-file"), table = o.required("table")
        let (items, codes) = try readCodesFile(path, levels: o.string("levels").flatMap(Int.init))
        let t0 = Date()
        let total = try await client.registerItems(table: table, items: items, codes: codes)
        if json { print(jsonText(["registered": items.count, "items": total])) }
        else { print("registered \(items.count) items from \(path) into \(table) on \(client.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (\(total) items known)") }
    case ("sparsity", let sub):
        guard let name = words.dropFirst(2).first, sub == "report" || sub == "step" else { o.fail("usage: sparsity report|step TABLE") }
        if sub == "step" {
            let fraction = o.string("fraction").map { Double($0) ?? -1 }
            if !json { printFlush("prune-and-regrow on \(name): collecting histograms from \(client.shardCount) shards...") }
            let r = try await client.sparsityStep(table: name, fraction: fraction)
            if json { print(jsonText(r)); return }
            print(renderTable(["shard", "pruned", "grown"], r.prunedPerShard.indices.map { [String($0), String(r.prunedPerShard[$0]), String(r.grownPerShard[$0])] }))
            print(String(format: "round %d: moved %llu entries (fraction %.4f); active %llu -> %llu, budget %llu (%@) in %.2f s", r.round, r.moved, r.fraction,
                         r.activeBefore, r.activeAfter, r.budgetAfter, r.activeAfter == r.budgetAfter ? "exact" : "MISMATCH", r.seconds))
            return
        }
        let s = try await client.sparsitySummary(table: name)
        if json { print(jsonText(s)); return }
        print(renderTable(["table", "rows", "dim", "active", "budget", "density", "fired", "round", "pushes since step", "bytes/row", "dense bytes/row", "stored"],
                          [[s.table, String(s.rows), String(s.dim), String(s.active), String(s.budget), String(format: "%.4f", s.density),
                            String(format: "%.4f", s.firedFraction), String(s.round), String(s.pushesSinceStep), String(format: "%.1f", s.bytesPerRow),
                            String(format: "%.1f", s.denseBytesPerRow), formatBytes(s.storedBytes)]]))
    case ("dnis", let sub):
        guard let name = words.dropFirst(2).first, ["report", "assign", "prune"].contains(sub ?? "") else { o.fail("usage: dnis report|assign|prune TABLE") }
        if sub == "assign" {
            let t0 = Date()
            let rows = try await client.dnisAssignBlocks(table: name)
            if json { print(jsonText(["rowsPerBlock": rows])); return }
            print(renderTable(["block", "rows"], rows.enumerated().map { ["\($0.offset)", "\($0.element)"] }))
            print("blocks of \(name) assigned by push frequency on \(client.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
            return
        }
        if sub == "prune" {
            guard let ratio = o.string("ratio").flatMap(Double.init) else { o.fail("dnis prune needs --ratio R (share of entries to prune, 0 <= R < 1)") }
            let before = try await client.dnisSummary(table: name)
            if !json { printFlush("pruning \(Int(ratio * 100))% of \(before.parameters) entries of \(name) on \(client.shardCount) shards...") }
            let r = try await client.dnisPrune(table: name, ratio: ratio)
            let after = try await client.dnisSummary(table: name)
            if json { print(jsonText(["prune": AnyEncodable(r), "before": AnyEncodable(before), "after": AnyEncodable(after)])); return }
            printDnis(after)
            print(String(format: "pruned %llu -> %llu entries (threshold %.3g) in %.2f s; bytes %@ -> %@", r.entriesBefore, r.entriesAfter, r.threshold, r.seconds,
                         formatBytes(before.storedBytes), formatBytes(after.storedBytes)))
            return
        }
        let s = try await client.dnisSummary(table: name)
        if json { print(jsonText(s)); return }
        printDnis(s)
    case ("checkpoint", "create"):
        guard let name = words.dropFirst(2).first else { o.fail("checkpoint create needs a NAME") }
        let t0 = Date()
        if !json { printFlush("checkpoint \(name): freezing \(client.shardCount) shards, writing each shard's part...") }
        let parts = try await client.createCheckpoint(name: name)
        if json { print(jsonText(parts)); return }
        print(renderTable(["shard", "tables", "bytes"], parts.map { ["\($0.shardIndex)", "\($0.tables.count)", formatBytes($0.bytes)] }))
        print("checkpoint \(name) written on \(parts.count) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (updates were paused meanwhile)")
    case ("checkpoint", "list"):
        let list = try await client.listCheckpoints()
        if json { print(jsonText(list)); return }
        let f = DateFormatter(); f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        print(renderTable(["name", "created", "shards", "complete", "tables", "bytes"], list.map {
            [$0.name, f.string(from: Date(timeIntervalSince1970: Double($0.createdUnixMs) / 1000)), "\($0.shardsWithPart.count)/\($0.shardCount)",
             $0.complete ? "yes" : "NO", "\($0.tables.count)", formatBytes($0.bytes)]
        }))
    case ("checkpoint", "restore"):
        guard let name = words.dropFirst(2).first else { o.fail("checkpoint restore needs a NAME") }
        let t0 = Date()
        if !json { printFlush("restoring checkpoint \(name) on \(client.shardCount) shards (updates paused meanwhile)...") }
        let parts = try await client.restoreCheckpoint(name: name)
        if json { print(jsonText(parts)); return }
        print("restored \(name) on \(parts.count) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s; tables: \(parts.first?.tables.joined(separator: ", ") ?? "")")
    case ("export", _):
        guard let name = words.dropFirst().first, let prefix = o.string("out") else { o.fail("usage: export TABLE --out PREFIX") }
        let t0 = Date()
        let (dim, keys, values) = try await client.exportTable(name) { n in if !json { progressLine("exporting \(name)", n) } }
        try NumPyFile.write(prefix + ".ids.npy", descr: "<u8", shape: [keys.count], values: keys)
        try NumPyFile.write(prefix + ".values.npy", descr: "<f4", shape: [keys.count, dim], values: values)
        if json { print(jsonText(["rows": keys.count, "dim": dim])); return }
        print("\nexported \(keys.count) rows of dim \(dim) from \(name) to \(prefix).ids.npy and \(prefix).values.npy in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
    case ("import", _):
        guard let name = words.dropFirst().first, let prefix = o.string("in") else { o.fail("usage: import TABLE --in PREFIX") }
        let (idShape, keys) = try NumPyFile.read(prefix + ".ids.npy", descr: "<u8", as: UInt64.self)
        let (valueShape, values) = try NumPyFile.read(prefix + ".values.npy", descr: "<f4", as: Float.self)
        guard idShape.count == 1, valueShape.count == 2, valueShape[0] == idShape[0] else {
            o.fail("\(prefix).ids.npy has shape \(idShape) and \(prefix).values.npy \(valueShape): expected (n,) and (n, dim)")
        }
        let t0 = Date()
        try await client.importRows(name, keys: keys, values: values) { n in if !json { progressLine("importing \(name)", n, of: keys.count) } }
        if json { print(jsonText(["rows": keys.count])); return }
        print("\nimported \(keys.count) rows into \(name) in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
    case ("reshard", "prepare"):
        guard let address = o.string("add-shard"), let out = o.string("out") else { o.fail("usage: reshard prepare --add-shard HOST:PORT --out JOINING.json") }
        try await client.refreshShardMap()
        var spec = client.spec
        spec.shards.append(.init(address: address))
        spec.slotRanges = ClusterSpec(addresses: spec.shards.map(\.address), map: try SlotMap(version: client.slotMap.version, shardCount: spec.shards.count, owners: client.slotMap.owners)).slotRanges
        try spec.encoded().write(to: URL(fileURLWithPath: out))
        if json { print(jsonText(["spec": out, "newShard": "\(spec.shards.count - 1)"])); return }
        print("wrote \(out): \(spec.shards.count) shards, shard \(spec.shards.count - 1) at \(address) owning no slots yet (map version \(spec.version)).")
        print("next: start it with 'embedps-server --cluster \(out) --shard-index \(spec.shards.count - 1) ...', then 'embedps-admin reshard even --cluster \(out)'")
    case ("reshard", let sub):
        try await client.refreshShardMap()
        let target: [UInt16]
        switch sub {
        case "even": target = EmbedPSClient.balancedOwners(current: client.slotMap.owners, over: Array(0..<client.shardCount))
        case "remove":
            guard let k = words.dropFirst(2).first.flatMap(Int.init), k < client.shardCount else { o.fail("usage: reshard remove SHARD_INDEX") }
            target = EmbedPSClient.balancedOwners(current: client.slotMap.owners, over: (0..<client.shardCount).filter { $0 != k })
        case "move":
            guard let range = words.dropFirst(2).first, let to = o.string("to").flatMap(Int.init), to < client.shardCount else {
                o.fail("usage: reshard move FIRST-LAST --to SHARD_INDEX")
            }
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            guard bounds.count == 2, bounds[0] <= bounds[1], bounds[1] < 4096 else { o.fail("slot range must be FIRST-LAST within 0-4095") }
            var owners = client.slotMap.owners
            for s in bounds[0]...bounds[1] { owners[s] = UInt16(to) }
            target = owners
        default: o.fail("usage: reshard prepare|even|remove|move ...")
        }
        let summary = try await client.reshard(to: target) { line in if !json { FileHandle.standardError.write(Data("\r\(line)   ".utf8)) } }
        if json { print(jsonText(summary)); return }
        print("")
        print(renderTable(["from", "to", "slots", "rows"], summary.moves.map { ["\($0.from)", "\($0.to)", "\($0.slots)", "\($0.rows)"] }))
        print("resharded live: \(summary.slotsMoved) slots, \(summary.rowsMoved) rows, map version \(summary.fromVersion) -> \(summary.toVersion) in \(String(format: "%.2f", summary.seconds)) s")
    case ("compact", _):
        let table = words.dropFirst().first ?? ""
        let t0 = Date()
        if !json { printFlush("compacting \(table.isEmpty ? "all tables" : table) on \(client.shardCount) shards (checkpoint, then RocksDB compaction)...") }
        let (before, after) = try await client.compact(table: table)
        if json { print(jsonText(["bytesBefore": before, "bytesAfter": after])) }
        else { print("compacted in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s: \(formatBytes(before)) -> \(formatBytes(after))") }
    case ("flush", _):
        let table = words.dropFirst().first ?? ""
        let t0 = Date()
        try await client.flush(table: table)
        if json { print(jsonText(["flushed": table.isEmpty ? "*" : table])) }
        else { print("flushed \(table.isEmpty ? "all tables" : table) on \(client.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s") }
    default:
        o.fail("unknown command '\(words.joined(separator: " "))'")
    }
}

/// Builds a table spec from `table create` options.
func tableSpec(name: String, _ o: Options) throws -> TableSpec {
    guard let kind = OptimizerKind(name: o.string("optimizer", default: "adagrad")) else { o.fail("--optimizer must be sgd, adagrad, adam or ftrl") }
    var opt = OptimizerConfig(kind: kind, learningRate: Float(o.double("lr", default: 0.05)))
    opt.initialAccumulator = Float(o.double("initial-accumulator", default: kind == .adagrad ? 0.1 : 0))
    opt.l1 = Float(o.double("l1", default: 0)); opt.l2 = Float(o.double("l2", default: 0))
    let seed = UInt64(o.int("seed", default: 1))
    let initializer: InitializerConfig
    switch o.string("init", default: "uniform") {
    case "zeros": initializer = InitializerConfig()
    case "uniform": initializer = .uniform(Float(o.double("low", default: -0.05)), Float(o.double("high", default: 0.05)), seed: seed)
    case "normal": initializer = .normal(mean: Float(o.double("mean", default: 0)), stddev: Float(o.double("stddev", default: 0.01)), seed: seed)
    default: o.fail("--init must be zeros, uniform or normal")
    }
    var spec = TableSpec(name: name, dim: o.int("dim", default: 0), optimizer: opt, initializer: initializer)
    switch o.string("hash", default: "collision-free") {
    case "collision-free": break
    case "fixed-budget":
        spec.hashMode = .fixedBudget
        spec.rowBudget = UInt64(o.int("row-budget", default: 0)); spec.hashSeed = UInt64(o.int("hash-seed", default: 0))
    default: o.fail("--hash must be collision-free or fixed-budget")
    }
    if let kind = o.string("semantic") {
        let levels = o.int("levels", default: 3), codes = o.int("codes", default: 256), n = o.int("ngram", default: levels)
        let budget = UInt64(o.int("rows", default: 0))
        guard budget > 0 else { o.fail("a semantic table needs --rows N (its row budget)") }
        let tokenizer: SemanticConfig.Tokenizer
        switch kind {
        case "unigram": tokenizer = .unigram
        case "ngram": tokenizer = .ngram(n)
        case "prefix": tokenizer = .prefix(n)
        case "spm":
            guard let path = o.string("spm-model"), let model = FileManager.default.contents(atPath: path) else {
                o.fail("--semantic spm needs --spm-model PATH (a model written by 'semantic-ids build --spm-vocabulary N')")
            }
            tokenizer = .sentencePiece([UInt8](model))
        default: o.fail("--semantic must be unigram, ngram, prefix or spm")
        }
        spec.semantic = SemanticConfig(tokenizer: tokenizer, levels: levels, codebookSize: codes, budget: budget)
    }
    if let blocks = o.string("dnis-blocks") {
        guard let n = Int(blocks) else { o.fail("--dnis-blocks must be an integer (1...64)") }
        var c = DnisConfig(blocks: n)
        if let sizes = o.string("dnis-block-sizes") {
            let parsed = sizes.split(separator: ",").map { UInt64($0) }
            guard parsed.allSatisfy({ $0 != nil }) else { o.fail("--dnis-block-sizes takes comma-separated row counts, e.g. 1000,5000") }
            c.blockSizes = parsed.compactMap { $0 }
        }
        c.alphaLearningRate = Float(o.double("alpha-lr", default: Double(c.alphaLearningRate)))
        spec.dnis = c
    }
    if let density = o.string("density") {
        guard let d = Float(density) else { o.fail("--density must be a number in (0, 1)") }
        var c = SparsityConfig(density: d)
        c.seed = UInt64(o.int("sparsity-seed", default: Int(seed)))
        c.regrowInterval = o.int("regrow-interval", default: c.regrowInterval)
        c.rounds = o.int("regrow-rounds", default: c.rounds)
        c.growthDecay = Float(o.double("growth-decay", default: Double(c.growthDecay)))
        spec.sparsity = c
    }
    return try spec.validated()
}

/// Reads a codes file written by `semantic-ids build` (`item_id<TAB>c1 c2 ...`; '#' comments and the header
/// skipped), keeping the first `levels` codes of each item (all but the disambiguation code by default).
func readCodesFile(_ path: String, levels: Int?) throws -> ([UInt64], [[Int]]) {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ClientError.invalidArgument("cannot read codes file \(path)") }
    var items: [UInt64] = [], codes: [[Int]] = []
    for (n, line) in text.split(separator: "\n").enumerated() where !line.hasPrefix("#") && !line.hasPrefix("item_id") {
        let parts = line.split(separator: "\t")
        guard parts.count == 2, let item = UInt64(parts[0]) else { throw ClientError.invalidArgument("\(path):\(n + 1): expected item_id<TAB>codes") }
        let c = parts[1].split(separator: " ").compactMap { Int($0) }
        let keep = levels ?? max(1, c.count - 1)
        guard c.count >= keep else { throw ClientError.invalidArgument("\(path):\(n + 1): \(c.count) codes, need \(keep)") }
        items.append(item); codes.append(Array(c.prefix(keep)))
    }
    return (items, codes)
}

/// Per-block dimensions, parameters and bytes of a DNIS table, then totals against the full-dimension form.
func printDnis(_ s: DnisSummary) {
    print(renderTable(["block", "rows", "mean dim", "parameters", "alpha mean", "bytes", "full-dim bytes"],
                      s.blocks.map { ["\($0.block)", "\($0.rows)", String(format: "%.1f", $0.meanDimension), "\($0.parameters)",
                                      String(format: "%.3f", $0.alphaMean), formatBytes($0.storedBytes), formatBytes($0.denseBytes)] }))
    print(String(format: "%@ (%@, alpha version %llu): %llu rows, %llu parameters of %llu at full dim %d (%.2fx), stored %@ vs %@ full-dim (%.2fx)",
                 s.table, s.pruned ? "pruned" : "searching", s.alphaVersion, s.rows, s.parameters, s.denseParameters, s.dim,
                 Double(s.parameters) / Double(max(1, s.denseParameters)), formatBytes(s.storedBytes), formatBytes(s.denseBytes),
                 Double(s.storedBytes) / Double(max(1, s.denseBytes))))
}

/// Type-erased Encodable for mixed JSON objects.
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

/// A progress line redrawn in place on stderr.
func progressLine(_ label: String, _ done: Int, of total: Int? = nil) {
    let text = total.map { t in "\r\(label): \(done)/\(t) rows (\(t == 0 ? 100 : 100 * done / t)%)   " } ?? "\r\(label): \(done) rows   "
    FileHandle.standardError.write(Data(text.utf8))
}
