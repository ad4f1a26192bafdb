import Foundation
import Vocabulary
import Storage

/// Live resharding on one shard (the coordinator is `EmbedPSClient.reshard`). Moving slots from this shard:
/// `beginMigration` refuses writes to them from then on (durably, so a restart keeps refusing) and
/// checkpoints every table; `encodedSlotRows` pages through their rows; once the new map that gives them
/// away is adopted, `endMigration` deletes them. The receiving shard installs rows with
/// `installMigratedRows` before the map changes.
extension ShardEngine {
    /// The slot map in force (the configuration's until a resharding replaced it).
    public var shardMap: SlotMap { currentMap().map }

    /// Slots being migrated away from this shard (writes refused), sorted.
    public var migratingSlots: [UInt16] { currentMap().moving.sorted() }

    /// The current map with the shard addresses, as a spec (what GetShardMap answers).
    public func shardMapSpec() -> ClusterSpec {
        let (m, a) = mapLock.withLock { (map, members) }
        return ClusterSpec(members: a, map: m)
    }

    /// Adopts `spec` when its version is newer; persisted (synced) before use. Returns the version in force.
    @discardableResult
    public func adoptShardMap(_ spec: ClusterSpec) throws(EngineError) -> UInt64 {
        let newMap: SlotMap
        do { newMap = try spec.slotMap() } catch { throw .invalidSpec(table: "-", message: "shard map: \(error)") }
        guard newMap.shardCount > configuration.shardIndex else {
            throw .invalidSpec(table: "-", message: "shard map of \(newMap.shardCount) shards has no shard \(configuration.shardIndex)")
        }
        mapLock.lock(); defer { mapLock.unlock() }
        do {
            guard newMap.version > map.version else { return map.version }
            do {
                let b = WriteBatch()
                b.put(db.defaultFamily, key: Self.mapKey, value: Array(try ClusterSpec(members: spec.shards, map: newMap).encoded()))
                try db.write(b, sync: true)
            } catch { throw .storage("persisting shard map version \(newMap.version): \(error)") }
            map = newMap; members = spec.shards.map(\.member)
            incomingSlots = incomingSlots.filter { newMap.owner(ofSlot: $0.key) != configuration.shardIndex }
            return map.version
        }
    }

    private func persistMoving() throws(EngineError) {
        do {
            let b = WriteBatch()
            b.put(db.defaultFamily, key: Self.movingKey, value: Array(try JSONEncoder().encode(movingSlots.sorted())))
            try db.write(b, sync: true)
        } catch { throw .storage("persisting migrating slots: \(error)") }
    }

    /// Refuses a table create or drop while this shard takes part in a slot migration (the set of tables
    /// must not change under a chunk in flight). Caller holds `registry`.
    func refuseDefinitionChangesWhileMigrating(_ table: String) throws(EngineError) {
        let now = Date()
        let slot: UInt16? = mapLock.withLock {
            incomingSlots = incomingSlots.filter { $0.value > now }
            return movingSlots.min() ?? incomingSlots.keys.min()
        }
        if let slot { throw .slotMoving(table: table, slot: Int(slot)) }
    }

    /// Marks `slots` as arriving (this shard is the target of a migration chunk): table definitions are
    /// frozen here until a map giving the slots to this shard is adopted, or the mark lapses.
    public func beginIncoming(slots: [UInt16]) {
        let until = Date().addingTimeInterval(Self.incomingMarkSeconds)
        mapLock.withLock { for s in slots { incomingSlots[s] = until } }
    }

    /// Starts moving `slots` (owned here) away: writes to them are refused from now on, then every table is
    /// checkpointed so RocksDB holds their rows. The caller made sure no write to them is in flight.
    public func beginMigration(slots: [UInt16]) throws(EngineError) {
        mapLock.lock()
        do {
            defer { mapLock.unlock() }
            for s in slots where map.owner(ofSlot: s) != configuration.shardIndex {
                throw EngineError.wrongShard(table: "-", id: 0, slot: Int(s), owner: map.owner(ofSlot: s), shard: configuration.shardIndex, mapVersion: map.version)
            }
            movingSlots.formUnion(slots)
            try persistMoving()
        }
        try checkpointAll()
    }

    /// A page of the encoded rows of migrating slots (strictly ascending; one slot, or a migration chunk),
    /// from `start` after `after` (see `EmbeddingTable.encodedRows(slots:start:after:limit:)`).
    public func encodedSlotRows(table name: String, slots: [UInt16], start: UInt16, after: UInt64?, limit: Int) throws(EngineError) -> [(key: UInt64, row: [UInt8])] {
        let moving = currentMap().moving
        if let s = slots.first(where: { !moving.contains($0) }) {
            throw .wrongState("slot \(s) is not being migrated from shard \(configuration.shardIndex): begin the migration first")
        }
        return try withTable(name) { (t) throws(EngineError) in try t.encodedRows(slots: slots, start: start, after: after, limit: max(1, min(limit, 65536))) }
    }

    /// Installs rows migrated to this shard (see `EmbeddingTable.installEncodedRows`).
    public func installMigratedRows(table name: String, rows: [(key: UInt64, row: [UInt8])]) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in try t.installEncodedRows(rows) }
    }

    /// Ends the migration of `slots`. Slots the map in force gives to another shard are finished: their rows
    /// are deleted in every table and writes to them are no longer refused here (the map refuses them now).
    /// Slots this shard still owns belong to a move that never switched (its coordinator stopped before the
    /// new map): the move is cancelled, the rows stay and writes are accepted again. Only the resharding
    /// coordinator calls this, and only for moves it does not have in flight. Returns rows deleted.
    public func endMigration(slots: [UInt16]) throws(EngineError) -> Int {
        let (m, moving) = currentMap()
        for s in slots {
            guard moving.contains(s) else { throw .wrongState("slot \(s) is not being migrated from shard \(configuration.shardIndex)") }
        }
        let moved = slots.filter { m.owner(ofSlot: $0) != configuration.shardIndex }
        var deleted = 0
        if !moved.isEmpty { try forEachTable { (t) throws(EngineError) in deleted += try t.dropSlots(moved) } }
        mapLock.lock(); defer { mapLock.unlock() }
        movingSlots.subtract(slots)
        try persistMoving()
        return deleted
    }

    // MARK: replication (see EmbeddingTable+Replication.swift)

    /// A page of a table's durable update-log records after `after`. A read keeps the records after `after`
    /// (after the log's start for a head read, `after` = max) from being trimmed for a while: see
    /// `EmbeddingTable.trimLog`.
    public func readLog(table name: String, after: UInt64, maxBytes: Int) throws(EngineError) -> ReplicationPage {
        try withTable(name) { (t) throws(EngineError) in
            // A follower copies stored rows next: RocksDB must hold every update the log no longer does.
            if after == UInt64.max { try t.checkpointInStoreIfSnapshot() }
            let p = try t.readLog(after: after, maxBytes: maxBytes)
            // A head read (after = max) starts a follower's copy, which continues from the log's start.
            t.noteFollowerRead(after: after == UInt64.max ? p.logStart : after)
            let state = t.commit.withLock { $0 }
            return ReplicationPage(sequences: p.sequences, payloads: p.payloads, durableSequence: p.durableSequence, logStart: p.logStart,
                                   incarnation: t.identity.incarnation, rowsGeneration: t.rowsGeneration.load(ordering: .relaxed),
                                   rewriteSequence: state.rewriteSeq, sparsityRound: state.sparsityRound, sparsityStepSequence: state.sparsityStepSeq)
        }
    }

    /// A page of stored rows in their encoding from (`slot`, after `after`) on, across later slots, for a
    /// follower's bootstrap (the caller flushed the table first; rows carry the sequence they cover).
    public func storedSlotRows(table name: String, slot: UInt16, after: UInt64?, limit: Int) throws(EngineError) -> [(key: UInt64, row: [UInt8])] {
        try withTable(name) { (t) throws(EngineError) in
            try t.encodedRows(slots: Array(slot..<UInt16(RowAddressing.slotCount)), start: slot, after: after, limit: max(1, min(limit, 65536)))
        }
    }

    /// Follower: applies a primary's log records (ascending) to `table`; durable on return.
    @discardableResult
    public func applyReplicated(table name: String, records: [(seq: UInt64, payload: [UInt8])]) throws(EngineError) -> Int {
        try withTable(name) { (t) throws(EngineError) in try t.applyReplicated(records) }
    }

    /// The table's rows generation (imports so far; on a follower, the primary's generation its rows reflect).
    public func rowsGeneration(table name: String) throws(EngineError) -> UInt64 {
        try withTable(name) { $0.rowsGeneration.load(ordering: .relaxed) }
    }

    /// Follower: records (durably) that the table's rows reflect the primary's rows generation `value`.
    public func setRowsGeneration(table name: String, _ value: UInt64) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in
            var v = value
            let b = WriteBatch()
            b.put(db.defaultFamily, key: t.identity.rowsGenerationKey, value: withUnsafeBytes(of: &v) { Array($0) })
            do { try db.write(b, sync: true) } catch { throw .storage("table '\(name)': \(error)") }
            t.rowsGeneration.store(value, ordering: .relaxed)
        }
    }

    /// The last applied update-log sequence of `table`.
    public func lastSequence(table name: String) throws(EngineError) -> UInt64 {
        try withTable(name) { $0.lastSequence }
    }

    /// Follower bootstrap: installs a primary's stored rows verbatim (sequences kept).
    public func installReplicaRows(table name: String, rows: [(key: UInt64, row: [UInt8])]) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in try t.installReplicaRows(rows) }
    }

    /// Follower bootstrap done: the table takes over the primary's side state (`head`: the ReadLog head
    /// read after the copy; `dnis`: its DNIS state) and continues after max(log start, last rewrite).
    public func finishReplicaBootstrap(table name: String, head: ReplicationPage, dnis: DnisStateFields?) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in try t.finishReplicaBootstrap(head: head, dnis: dnis) }
    }

    /// Follower bootstrap: registers a primary's items (a page of ExportItems) without logging them.
    public func installReplicaItems(table name: String, items: [UInt64], codes: [UInt32]) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in
            guard let store = t.semantic?.items else { throw .invalidSpec(table: name, message: "the table has no semantic-ID configuration") }
            guard codes.count == items.count * store.levels else { throw .malformed("table '\(name)': \(codes.count) codes for \(items.count) items") }
            do { try store.register(items: items, flat: codes) } catch { throw .storage("table '\(name)' items: \(error)") }
        }
    }
}
