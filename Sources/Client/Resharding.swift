import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// What a live resharding did.
public struct ReshardSummary: Sendable, Codable {
    public struct Move: Sendable, Codable { public var from: Int; public var to: Int; public var slots: Int; public var rows: UInt64 }
    public var fromVersion: UInt64
    public var toVersion: UInt64
    public var moves: [Move]
    public var slotsMoved: Int
    public var rowsMoved: UInt64
    public var seconds: Double
}

extension EmbedPSAdmin {
    /// Target owners giving each of `shards` an even share (4096 / n, the first 4096 % n one more) while
    /// moving as few slots as possible: every shard keeps its first slots up to its share; the slots over a
    /// share, and those of shards not listed (being removed), go to the shards under their share.
    public static func balancedOwners(current: [UInt16], over shards: [Int]) -> [UInt16] {
        let n = shards.count, total = RowAddressing.slotCount
        var quota = [Int: Int]()
        for (i, s) in shards.enumerated() { quota[s] = total / n + (i < total % n ? 1 : 0) }
        var owners = current
        var kept = [Int: Int](), free: [Int] = []
        for slot in 0..<total {
            let o = Int(current[slot])
            if let q = quota[o], kept[o, default: 0] < q { kept[o, default: 0] += 1 } else { free.append(slot) }
        }
        var next = 0
        for s in shards {
            while kept[s, default: 0] < quota[s]!, next < free.count {
                owners[free[next]] = UInt16(s); kept[s, default: 0] += 1; next += 1
            }
        }
        return owners
    }

    /// Copies a semantic table's item codes from shard 0 to every shard that holds fewer items.
    func copyItems(table: String, progress: (String) -> Void) async throws {
        let counts = try await describeTable(table).map { $0.semantic?.items ?? 0 }
        let targets = counts.indices.filter { $0 != 0 && counts[$0] < counts[0] }
        guard !targets.isEmpty else { return }
        var after: UInt64? = nil, copied = 0
        while true {
            let items = try await call(shard: 0, ShardRPC.exportItems, Wire.SlotRowsRequest(table: table, hasAfter: after != nil, after: after ?? 0, limit: 10_000))
            if items.items.isEmpty { break }
            for s in targets { _ = try await call(shard: s, ShardRPC.registerItems, items) }
            copied += items.items.count
            after = items.items.last
        }
        progress("\(table): \(copied) item codes copied to shards \(targets)")
    }

    /// After a coordinator died or failed mid-move: every shard gets the newest map; slots a shard was
    /// migrating away that the newest map gives to another shard are finished there (rows deleted, writes no
    /// longer refused), and slots it still owns (the move never switched) are cancelled there (writes
    /// accepted again), so they do not stay refused when the resharding that follows keeps them where they
    /// are. Assumes one coordinator at a time, as the whole resharding does.
    func repairInterruptedMoves(progress: (String) -> Void) async throws {
        let answers = try await callAll(ShardRPC.getShardMap, Wire.ListTablesRequest())
        let newest = try JSONEncoder().encode(spec)
        let mapRequest = Wire.ShardMapRequest(specJson: String(decoding: newest, as: UTF8.self))
        let owners = slotMap.owners
        for (s, a) in answers.enumerated() {
            if a.version < slotMap.version {
                _ = try await call(shard: s, ShardRPC.setShardMap, mapRequest)
                progress("shard \(s): map version \(a.version) -> \(slotMap.version)")
            }
            if !a.movingSlots.isEmpty {
                _ = try await call(shard: s, ShardRPC.endMigration, Wire.SlotsRequest(slots: a.movingSlots))
                let finished = a.movingSlots.filter { Int(owners[Int($0)]) != s }.count
                progress("shard \(s): an interrupted resharding left \(a.movingSlots.count) slots moving: \(finished) finished, " +
                         "\(a.movingSlots.count - finished) cancelled")
            }
        }
    }

    /// Moves slots, live, until the owners are `target` (one entry per slot, indices into this client's
    /// spec, which must list every shard involved, new ones included). Per chunk of at most `chunkSlots` slots
    /// from one shard to another: the source starts refusing writes to them (clients retry), their rows
    /// (weights, optimizer state, masks) are copied to the target, a new map version giving them to the
    /// target is set on the target, then the source, then every other shard, and the source deletes them.
    /// Readers and writers keep going throughout; a client that hits the old owner refreshes its map.
    /// Semantic-ID tables get their item codes copied to shards that lack them, DNIS tables their alpha and
    /// mode, before any slot moves.
    public func reshard(to target: [UInt16], chunkSlots: Int = 64, progress: (String) -> Void = { _ in }) async throws -> ReshardSummary {
        let started = Date()
        guard target.count == RowAddressing.slotCount, target.allSatisfy({ Int($0) < shardCount }) else {
            throw ClientError.invalidArgument("target map needs 4096 owners among the \(shardCount) shards of the spec")
        }
        // The current map: the newest any shard holds. Finish what an interrupted resharding left.
        try await refreshShardMap()
        try await repairInterruptedMoves(progress: progress)
        let fromVersion = slotMap.version
        guard fromVersion > 0 else { throw ClientError.inconsistentCluster("no shard map") }
        // Every table must exist on every shard (new shards included), with its per-shard state: the item
        // codes of semantic tables (every shard holds them all) and the alpha / mode of DNIS tables.
        let names = try await call(shard: 0, ShardRPC.listTables, Wire.ListTablesRequest()).tables
        for name in names {
            let spec = try await tableSpec(name)
            _ = try await callAll(ShardRPC.createTable, Wire.CreateTableRequest(spec: spec.wire))
            if spec.semantic != nil { try await copyItems(table: name, progress: progress) }
            if spec.dnis != nil {
                let state = try await call(shard: 0, ShardRPC.getDnisState, Wire.DnisReportRequest(table: name))
                _ = try await callAll(ShardRPC.setDnisState, state)
            }
        }
        var owners = slotMap.owners
        var chunks: [(from: Int, to: Int, slots: [UInt16])] = []
        var pairs: [String: (Int, Int, [UInt16])] = [:]
        for s in 0..<RowAddressing.slotCount where owners[s] != target[s] {
            let key = "\(owners[s])>\(target[s])"
            pairs[key, default: (Int(owners[s]), Int(target[s]), [])].2.append(UInt16(s))
        }
        for (_, p) in pairs.sorted(by: { $0.key < $1.key }) {
            var i = 0
            while i < p.2.count { chunks.append((p.0, p.1, Array(p.2[i..<min(p.2.count, i + chunkSlots)]))); i += chunkSlots }
        }
        let totalSlots = chunks.reduce(0) { $0 + $1.slots.count }
        var moves: [String: ReshardSummary.Move] = [:]
        var version = fromVersion, slotsDone = 0, rowsMoved: UInt64 = 0
        let addresses = spec.shards.map(\.address)
        for chunk in chunks {
            // Both shards stop table creation and drops first, then the source stops writes to the slots:
            // the tables listed next are exactly those whose rows the slots can hold.
            let slotsRequest = Wire.SlotsRequest(slots: chunk.slots.map { UInt32($0) })
            _ = try await call(shard: chunk.to, ShardRPC.beginMigration, Wire.SlotsRequest(slots: slotsRequest.slots, incoming: true))
            _ = try await call(shard: chunk.from, ShardRPC.beginMigration, slotsRequest)
            var rows: UInt64 = 0
            // A table the target lacks is being dropped (its drop reached the target, and waits at the source
            // until this chunk ends): its rows are not copied. A table created meanwhile has no rows yet.
            // Pages run through the whole chunk (one export and one import per 4096 rows, not per slot).
            let chunkSlots = chunk.slots.sorted().map { UInt32($0) }
            tables: for name in try await call(shard: chunk.from, ShardRPC.listTables, Wire.ListTablesRequest()).tables {
                let addressing = RowAddressing(spec: try await tableSpec(name, shard: chunk.from))
                var request = Wire.SlotRowsRequest(table: name, slot: chunkSlots[0], limit: 4096)
                request.slots = chunkSlots
                while true {
                    let page = try await call(shard: chunk.from, ShardRPC.exportSlotRows, request)
                    guard page.keys.count == page.rows.count else {
                        throw ClientError.inconsistentCluster("shard \(chunk.from) exported \(page.keys.count) keys and \(page.rows.count) rows of '\(name)'")
                    }
                    guard let last = page.keys.last else { break }
                    do { _ = try await call(shard: chunk.to, ShardRPC.importSlotRows, page) } catch let e as ClientError where e.detail?.reason == .unknownTable {
                        continue tables
                    }
                    rows += UInt64(page.keys.count)
                    if page.done { break }
                    request.slot = UInt32(addressing.slot(ofRowKey: last)); request.hasAfter = true; request.after = last
                }
            }
            // Switch: the target first (it has the rows), then the source (which refuses from then on), then the rest.
            version += 1
            for s in chunk.slots { owners[Int(s)] = UInt16(chunk.to) }
            let newSpec = ClusterSpec(addresses: addresses, map: try SlotMap(version: version, shardCount: addresses.count, owners: owners))
            let mapRequest = Wire.ShardMapRequest(specJson: String(decoding: try newSpec.encoded(), as: UTF8.self))
            for s in [chunk.to, chunk.from] { _ = try await call(shard: s, ShardRPC.setShardMap, mapRequest) }
            for s in 0..<shardCount where s != chunk.to && s != chunk.from {
                _ = try? await call(shard: s, ShardRPC.setShardMap, mapRequest)
            }
            _ = try await call(shard: chunk.from, ShardRPC.endMigration, slotsRequest)
            try client.adopt(newSpec)
            slotsDone += chunk.slots.count; rowsMoved += rows
            moves["\(chunk.from)>\(chunk.to)", default: .init(from: chunk.from, to: chunk.to, slots: 0, rows: 0)].slots += chunk.slots.count
            moves["\(chunk.from)>\(chunk.to)"]!.rows += rows
            progress("moved \(slotsDone)/\(totalSlots) slots (\(rowsMoved) rows), map version \(version)")
        }
        return ReshardSummary(fromVersion: fromVersion, toVersion: version, moves: moves.values.sorted { ($0.from, $0.to) < ($1.from, $1.to) },
                              slotsMoved: slotsDone, rowsMoved: rowsMoved, seconds: Date().timeIntervalSince(started))
    }
}
