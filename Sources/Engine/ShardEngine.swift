import Foundation
import Vocabulary
import SemanticTokenizers
import Storage
import EmbedPSWire

/// Durability of acknowledged pushes. `sync`: the update log is written and fdatasync'ed before a push is
/// acknowledged (survives power loss and kill -9). `async`: the record is in the log's ring in /dev/shm,
/// which outlives the process and is written to the log file behind it (survives a process crash or
/// kill -9; a machine crash may lose the last moments). See `UpdateLog`.
public enum Durability: String, Sendable, CaseIterable {
    case sync, async
}

/// Configuration of one shard's engine.
public struct ShardEngineConfiguration: Sendable {
    public var dataDirectory: String
    public var shardIndex: Int
    public var slotMap: SlotMap
    public var durability: Durability = .async
    /// Rows kept in memory per table (a table may briefly hold more while nothing can be evicted).
    public var cacheRowsPerTable: Int = 1 << 20
    /// Independently locked stripes of each table's rows.
    public var stripesPerTable: Int = 8
    /// Threads one request's storage reads are split across (its cache misses, read in storage order: each
    /// thread MultiGets a contiguous part; `TableTuning.readThreads`). 1: the request's thread only.
    public var readThreads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Threads a large pull alone in its table copies its cached rows with (`TableTuning.splitThreads`,
    /// `EmbeddingTable.splitParts`). 1: the request's thread only.
    public var splitThreads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Whether pushes to a cached table log before they pin their rows (`TableTuning.logBeforePin`).
    public var logBeforePin = true
    /// Bytes of each table's update-log ring (`UpdateLog`; a multiple of 4 KiB, reserved in /dev/shm).
    public var logRingBytes = UpdateLog.defaultRingBytes
    /// Most bytes of update-log segments each table keeps for reuse after checkpoints (`UpdateLog`'s
    /// recycling); nil: twice `checkpointLogBytes` (what a checkpoint retires: the log reaches
    /// `checkpointLogBytes`, and keeps growing while the checkpoint is written, by ~2.6 GiB at 1 GB/s of
    /// log with a 330 MB snapshot written at 128 MiB/s); 0: segments are deleted.
    public var logRecycleBytes: Int? = nil
    /// A table without a push or operation for this long deletes its spare log segments
    /// (`TableTuning.spareIdleSeconds`).
    public var spareIdleSeconds: Double = 300
    /// Bytes at which each table's update log closes a segment and opens the next. Each switch waits for the
    /// disk to write what the log's ring still holds of the old segment (pushes are not acknowledged
    /// meanwhile), so larger segments switch less often: 512 MiB measured 8-20% more push rows/s than 64 MiB
    /// with the engine alone and a lower p99 (README, Performance). Checkpoints rotate the log anyway, so the
    /// size does not change how much log a checkpoint retires.
    public var logSegmentBytes = 512 << 20
    /// Largest number of ids in one request.
    public var maxIdsPerRequest: Int = 1 << 20
    /// A table is checkpointed (every dirty row written, the family flushed, old update-log segments
    /// deleted) when its open log segment reaches this many bytes, or `checkpointIntervalSeconds` after its
    /// last checkpoint when it changed since. In between, the flusher writes dirty rows whenever they pass a
    /// quarter of the cache (pushes wait above 90%).
    public var checkpointLogBytes: Int = 1 << 30
    /// Whether a table's periodic checkpoints write its dirty rows to a snapshot file instead of RocksDB
    /// (`TableTuning.checkpointSnapshots`).
    public var checkpointSnapshots = true
    /// Bytes a second a snapshot checkpoint writes at (`TableTuning.snapshotBytesPerSecond`; 0: unpaced).
    public var snapshotBytesPerSecond = 128 << 20
    public var checkpointIntervalSeconds: Double = 60
    /// Shard entries (addresses, followers, epochs) of the spec the shard started with (answered by
    /// GetShardMap with the current slots until a newer map is adopted).
    public var shardMembers: [ClusterSpec.Shard] = []
    public init(dataDirectory: String, shardIndex: Int, slotMap: SlotMap) {
        self.dataDirectory = dataDirectory; self.shardIndex = shardIndex; self.slotMap = slotMap
    }
}

/// All tables of one shard over one RocksDB database (one column family per table, specs persisted in
/// the default family). Enforces slot ownership, validates requests before touching state, and routes
/// them to tables. Thread-safe: the table registry is behind a lock; tables synchronise themselves.
public final class ShardEngine: @unchecked Sendable {
    public let configuration: ShardEngineConfiguration
    /// The shard map in force (starts as `configuration.slotMap`, replaced by newer versions during
    /// resharding and persisted) and the slots being migrated away (writes refused), behind `mapLock`.
    var map: SlotMap
    var members: [ClusterSpec.Shard]
    var movingSlots: Set<UInt16> = []
    /// Slots whose rows are arriving from another shard (this shard is a migration target), with the time
    /// the mark lapses. Not persisted: a restart clears it. Behind `mapLock`.
    var incomingSlots: [UInt16: Date] = [:]
    static let incomingMarkSeconds: Double = 120
    let mapLock = NSLock()
    static let mapKey = Array("cluster/map".utf8)
    static let movingKey = Array("cluster/moving".utf8)
    static let epochKey = Array("shard/epoch".utf8)
    static let roleKey = Array("shard/role".utf8)
    /// This shard's primary epoch (persisted; raised by a promotion) and its persisted role ("follower" once
    /// it followed a primary, "primary" once it was promoted or took a write; nil on a new directory).
    /// Behind `mapLock`.
    var epoch: UInt64 = 0
    var role: String? = nil
    let db: RocksDatabase
    /// Guards `tables` (the name -> table map) and nothing else; see the lifecycle rule in TableLifecycle.swift.
    let registry = NSLock()
    private var tables: [String: EmbeddingTable] = [:]
    /// Tokenizer statistics per semantic table incarnation with the item-store version they were computed
    /// from (they depend only on the registered codes and the immutable tokenizer). Behind `registry`.
    private var semanticStatsCache: [ObjectIdentifier: (version: Int, stats: SemanticStats)] = [:]
    private static let incarnationKey = Array("shard/incarnation".utf8)
    private var checkpointer: Thread?
    private let stopCheckpointer = DispatchSemaphore(value: 0)
    private let checkpointerStopped = DispatchSemaphore(value: 0)

    private static let specPrefix = "table/"
    private static let shardIndexKey = Array("shard/index".utf8)

    public init(_ configuration: ShardEngineConfiguration) throws {
        self.configuration = configuration
        do { db = try RocksDatabase(path: configuration.dataDirectory) } catch { throw EngineError.storage("\(error)") }
        // A data directory belongs to one shard index: refuse to serve another shard's rows.
        let stored = try db.get(db.defaultFamily, key: Self.shardIndexKey)
        if let stored, let idx = Int(String(decoding: stored, as: UTF8.self)), idx != configuration.shardIndex {
            db.close()
            throw EngineError.invalidSpec(table: "-", message: "data directory \(configuration.dataDirectory) belongs to shard \(idx), not shard \(configuration.shardIndex): pass the right --shard-index or --data-dir")
        }
        if stored == nil {
            let b = WriteBatch(); b.put(db.defaultFamily, key: Self.shardIndexKey, value: Array(String(configuration.shardIndex).utf8))
            try db.write(b, sync: true)
        }
        map = configuration.slotMap
        members = configuration.shardMembers.map(\.member)
        if let stored = try db.get(db.defaultFamily, key: Self.mapKey),
           let spec = try? JSONDecoder().decode(ClusterSpec.self, from: Data(stored)), spec.version > map.version {
            map = try spec.slotMap(); members = spec.shards.map(\.member)
        }
        if let stored = try db.get(db.defaultFamily, key: Self.epochKey), let e = UInt64(String(decoding: stored, as: UTF8.self)) { epoch = e }
        if let stored = try db.get(db.defaultFamily, key: Self.roleKey) { role = String(decoding: stored, as: UTF8.self) }
        if let stored = try db.get(db.defaultFamily, key: Self.movingKey), let slots = try? JSONDecoder().decode([UInt16].self, from: Data(stored)) {
            movingSlots = Set(slots)
        }
        var records: [(TableSpec, TableIdentity)] = []
        try db.scan(db.defaultFamily, from: Array(Self.specPrefix.utf8)) { k, v in
            guard k.starts(with: Self.specPrefix.utf8) else { return false }
            let (incarnation, specBytes) = TableIdentity.parse(record: v)
            let spec = try TableSpec(wire: try Wire.TableSpec(decoding: specBytes))
            records.append((spec, TableIdentity(name: spec.name, incarnation: incarnation)))
            return true
        }
        for (spec, identity) in records { tables[spec.name] = try openTable(spec, identity) }
    }

    /// Opens (creating its column families when new) one table incarnation, with its item store and
    /// tokenizer when it is a semantic table.
    private func openTable(_ spec: TableSpec, _ identity: TableIdentity) throws -> EmbeddingTable {
        let family = try db.createColumnFamily(identity.familyName)
        var semantic: (items: ItemCodeStore, tokenizer: PieceTokenizer)? = nil
        if let config = spec.semantic {
            let items = try db.createColumnFamily(identity.itemsFamilyName)
            do { semantic = (try ItemCodeStore(db: db, family: items, levels: config.levels), try config.makeTokenizer()) } catch let e as TokenizerError {
                throw EngineError.invalidSpec(table: spec.name, message: e.description)
            }
        }
        var tuning = TableTuning(cacheRows: configuration.cacheRowsPerTable, stripes: configuration.stripesPerTable,
                                 readThreads: configuration.readThreads, logBeforePin: configuration.logBeforePin,
                                 logRingBytes: configuration.logRingBytes, splitThreads: configuration.splitThreads,
                                 logRecycleBytes: configuration.logRecycleBytes ?? 2 * configuration.checkpointLogBytes)
        tuning.spareIdleSeconds = configuration.spareIdleSeconds
        tuning.checkpointSnapshots = configuration.checkpointSnapshots
        tuning.snapshotBytesPerSecond = configuration.snapshotBytesPerSecond
        tuning.logSegmentBytes = max(4096, configuration.logSegmentBytes)
        return try EmbeddingTable(spec: spec, identity: identity, family: family, db: db,
                                  logDirectory: configuration.dataDirectory + "/updatelog/" + identity.logDirectoryName,
                                  tuning: tuning, sync: configuration.durability == .sync, semantic: semantic)
    }

    // MARK: table access (the lifecycle rule, TableLifecycle.swift)

    /// Runs `body` inside the gate of table `name`: the name is checked first, an unknown or dropped table
    /// fails with `unknownTable`, and a drop waits until `body` returns.
    @inline(__always)
    func withTable<R>(_ name: String, _ body: (EmbeddingTable) throws(EngineError) -> R) throws(EngineError) -> R {
        do { try Names.check(name, as: .table) } catch { throw .invalidName(error) }
        guard let t = registry.withLock({ tables[name] }), t.gate.enter() else { throw .unknownTable(name) }
        defer { t.gate.leave() }
        return try body(t)
    }

    /// Runs `body` for every table, each inside its gate (tables dropped meanwhile are skipped), in name order.
    func forEachTable(_ body: (EmbeddingTable) throws(EngineError) -> Void) throws(EngineError) {
        for t in registry.withLock({ tables.values.sorted { $0.spec.name < $1.spec.name } }) {
            guard t.gate.enter() else { continue }
            defer { t.gate.leave() }
            try body(t)
        }
    }

    /// Starts the background flusher: every 20 ms each table writes dirty rows over its low watermark, and
    /// checkpoints when its log or its age say so (see the configuration). Failures are logged and retried.
    public func startCheckpointer() {
        let t = Thread { [self] in
            while stopCheckpointer.wait(timeout: .now() + 0.02) == .timedOut {
                try? forEachTable { (table) throws(EngineError) in
                    do { try table.flusherPass(logBytesLimit: configuration.checkpointLogBytes, maxInterval: configuration.checkpointIntervalSeconds,
                                               evictionAllowed: !migrating && !isFollower) } catch {
                        FileHandle.standardError.write(Data("flushing table '\(table.spec.name)' failed (will retry): \(error)\n".utf8))
                    }
                }
            }
            checkpointerStopped.signal()
        }
        t.name = "flusher"
        checkpointer = t
        t.start()
    }

    /// Checkpoints one table now.
    public func checkpoint(table name: String) throws(EngineError) { try withTable(name) { (t) throws(EngineError) in try t.checkpoint() } }

    /// Checkpoints every table now.
    public func checkpointAll() throws(EngineError) { try forEachTable { (t) throws(EngineError) in try t.checkpoint() } }

    /// Stops the checkpointer, checkpoints every table (so a restart replays nothing) and closes the
    /// database. Call after the server stopped serving. With `checkpoint: false` the update logs are left
    /// to be replayed (what a crash leaves).
    public func close(checkpoint: Bool = true) {
        if checkpointer != nil {
            stopCheckpointer.signal(); checkpointerStopped.wait(); checkpointer = nil
        }
        if checkpoint {
            do { try checkpointAll() } catch {
                FileHandle.standardError.write(Data("final checkpoint failed; the update log will be replayed at next start: \(error)\n".utf8))
            }
        }
        let all = registry.withLock { () -> [EmbeddingTable] in let a = Array(tables.values); tables.removeAll(); return a }
        for t in all { t.gate.close(); t.close() }
        db.close()
    }

    /// Creates a table; returns false when an identical table exists. Throws `tableExists` for a different spec.
    public func createTable(_ requested: TableSpec) throws(EngineError) -> Bool {
        let spec: TableSpec
        do { spec = try requested.validated() } catch { throw EngineError(error) }
        if let s = spec.semantic {
            do { _ = try s.makeTokenizer() } catch { throw .invalidSpec(table: spec.name, message: error.description) }
        }
        registry.lock(); defer { registry.unlock() }
        if let existing = tables[spec.name] {
            guard existing.spec == spec else { throw .tableExists(spec.name) }
            return false
        }
        try refuseDefinitionChangesWhileMigrating(spec.name)
        do {
            // A new incarnation number, persisted with the table's record in one synced batch.
            let incarnation = (try db.get(db.defaultFamily, key: Self.incarnationKey).flatMap { $0.count == 8 ? $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } : nil } ?? 0) + 1
            let identity = TableIdentity(name: spec.name, incarnation: incarnation)
            let b = WriteBatch()
            b.put(db.defaultFamily, key: Self.incarnationKey, value: withUnsafeBytes(of: incarnation.littleEndian) { Array($0) })
            b.put(db.defaultFamily, key: TableIdentity.specKey(spec.name), value: identity.record(spec: spec.wire.encoded()))
            let table = try openTable(spec, identity)
            try db.write(b, sync: true)
            tables[spec.name] = table
        } catch let e as EngineError { throw e } catch { throw .storage("\(error)") }
        return true
    }

    /// Drops a table and its rows; returns false when it did not exist. Waits for the table's operations in
    /// flight (see the lifecycle rule), then releases everything it owns.
    public func dropTable(_ name: String) throws(EngineError) -> Bool {
        do { try Names.check(name, as: .table) } catch { throw .invalidName(error) }
        registry.lock()
        guard tables[name] != nil else { registry.unlock(); return false }
        do { try refuseDefinitionChangesWhileMigrating(name) } catch { registry.unlock(); throw error }
        let t = tables.removeValue(forKey: name)!
        registry.unlock()
        // Durable first: a crash after this point forgets the table; its leftovers belong to no incarnation.
        let b = WriteBatch()
        b.delete(db.defaultFamily, key: TableIdentity.specKey(name))
        do { try db.write(b, sync: true) } catch {
            registry.withLock { tables[name] = t }
            throw .storage("dropping table '\(name)': \(error)")
        }
        t.gate.close()
        t.markDropped()
        do {
            let keys = WriteBatch()
            for k in [t.identity.markerKey, t.identity.sparsityKey, t.identity.ledgerKey, t.identity.dnisKey, t.identity.admissionKey, t.identity.clockKey] { keys.delete(db.defaultFamily, key: k) }
            try db.write(keys, sync: false)
            try db.dropColumnFamily(t.identity.familyName)
            if t.semantic != nil { try db.dropColumnFamily(t.identity.itemsFamilyName) }
        } catch {
            // The table is gone from the registry and its record; unreclaimed space is logged, not fatal.
            FileHandle.standardError.write(Data("dropped table '\(name)': releasing its storage failed: \(error)\n".utf8))
        }
        registry.withLock { semanticStatsCache[ObjectIdentifier(t)] = nil }
        return true
    }

    /// Counts, magnitude histograms and bytes of a dynamic-sparsity table on this shard.
    public func sparsityReport(table name: String) throws(EngineError) -> SparsityReport {
        try withTable(name) { (t) throws(EngineError) in try t.sparsityReport() }
    }

    /// One prune-and-regrow step on this shard's part of a dynamic-sparsity table (see `EmbeddingTable.sparsityStep`).
    public func sparsityStep(table name: String, prune: UInt64, grow: UInt64, round: UInt32) throws(EngineError) -> SparsityStepResult {
        try withTable(name) { (t) throws(EngineError) in try t.sparsityStep(prune: prune, grow: grow, round: round) }
    }

    /// Whether this shard copies a primary (it then evicts only what the primary's log says).
    var isFollower: Bool { mapLock.withLock { role == "follower" } }

    /// Whether slots are moving from or to this shard (eviction waits: a migration copies rows by slot).
    var migrating: Bool { mapLock.withLock { !movingSlots.isEmpty || incomingSlots.contains { $0.value > Date() } } }

    /// Runs an eviction pass of one table (or of every table with an eviction policy when `name` is empty);
    /// returns (rows evicted, rows of those tables afterwards). Refused while slots move.
    public func evict(table name: String) throws(EngineError) -> (evicted: UInt64, rowsAfter: UInt64) {
        if migrating { throw .migrationInProgress(table: name) }
        var evicted: UInt64 = 0, after: UInt64 = 0
        let one = { (t: EmbeddingTable) throws(EngineError) in
            guard t.spec.eviction != nil else {
                if !name.isEmpty { throw .invalidSpec(table: name, message: "the table has no eviction policy (set one in its spec)") }
                return
            }
            let (n, rows) = try t.evict(onDemand: true)
            evicted += UInt64(n); after += rows
        }
        if name.isEmpty { try forEachTable(one) } else { try withTable(name, one) }
        return (evicted, after)
    }

    /// Checkpoints and compacts one table (or all when `name` is empty); returns (tables, bytes before, after).
    /// Each table is compacted inside its gate, so a concurrent drop waits for it.
    public func compact(table name: String) throws(EngineError) -> (Int, UInt64, UInt64) {
        var count = 0, before: UInt64 = 0, after: UInt64 = 0
        let one = { (t: EmbeddingTable) throws(EngineError) in
            try t.checkpoint()
            before += self.db.bytesUsed(t.family)
            self.db.compact(t.family)
            after += self.db.bytesUsed(t.family)
            count += 1
        }
        if name.isEmpty { try forEachTable(one) } else { try withTable(name, one) }
        return (count, before, after)
    }

    func rocksCheckpoint(at path: String) throws { try db.createCheckpoint(at: path) }

    // MARK: export / import

    /// A page of this shard's rows of a table (see `EmbeddingTable.exportRows`).
    /// A page of a table's rows (changed after `since` when > 0), or with `removed` of the keys evicted after
    /// `since` (see ExportRows in the proto).
    public func exportRows(table name: String, after cursor: (slot: UInt16, key: UInt64)?, limit: Int, since: UInt64 = 0, removed: Bool = false) throws(EngineError) -> (dim: Int, page: ExportPage) {
        try withTable(name) { (t) throws(EngineError) in
            let n = max(1, min(limit, 65536))
            return (t.dim, removed ? try t.removedRows(after: cursor, limit: n, since: since) : try t.exportRows(after: cursor, limit: n, since: since))
        }
    }

    /// Sets rows by row key (`valueBytes`: keys.count * dim float32), checking each key's slot is owned here.
    public func importRows(table name: String, keys: UnsafeBufferPointer<UInt64>, valueBytes: UnsafeRawBufferPointer) throws(EngineError) -> Int {
        try withTable(name) { (t) throws(EngineError) -> Int in
            let dim = t.dim
            guard valueBytes.count == keys.count * dim * 4 else {
                if keys.isEmpty || valueBytes.count % (4 * keys.count) != 0 {
                    throw .malformed("table '\(name)': \(valueBytes.count) value bytes for \(keys.count) rows of dim \(dim) (expected \(keys.count * dim * 4))")
                }
                throw .wrongDimension(table: name, expected: dim, got: valueBytes.count / 4 / keys.count)
            }
            guard keys.count <= configuration.maxIdsPerRequest else { throw .tooLarge("\(keys.count) rows in one import; the limit is \(configuration.maxIdsPerRequest)") }
            let (map, moving) = currentMap()
            let me = configuration.shardIndex
            var seen = Set<UInt64>()
            for k in keys {
                if t.spec.hashMode == .fixedBudget, k >= t.spec.rowBudget { throw .malformed("row key \(k) is outside the table's budget \(t.spec.rowBudget)") }
                let slot = t.addressing.slot(ofRowKey: k), owner = map.owner(ofSlot: slot)
                if owner != me { throw .wrongShard(table: name, id: k, slot: Int(slot), owner: owner, shard: me, mapVersion: map.version) }
                if moving.contains(slot) { throw .slotMoving(table: name, slot: Int(slot)) }
                guard seen.insert(k).inserted else { throw .malformed("row key \(k) appears twice in one import") }
            }
            let values = UnsafeMutablePointer<Float>.allocate(capacity: max(1, keys.count * dim))
            defer { values.deallocate() }
            if !valueBytes.isEmpty { UnsafeMutableRawPointer(values).copyMemory(from: valueBytes.baseAddress!, byteCount: valueBytes.count) }
            for i in 0..<(keys.count * dim) where !values[i].isFinite { throw .nonFiniteGradient(table: name, id: keys[i / dim], column: i % dim) }
            try t.importRows(keys: Array(keys), values: values)
            return keys.count
        }
    }

    // MARK: DNIS

    public func dnisReport(table name: String) throws(EngineError) -> DnisReport { try withTable(name) { (t) throws(EngineError) in try t.dnisReport() } }

    public func dnisAssign(table name: String, take: [UInt64]) throws(EngineError) -> [UInt64] {
        try withTable(name) { (t) throws(EngineError) in try t.dnisAssign(take: take) }
    }

    /// (pruned, alpha version, alpha, threshold, assignment round) of a DNIS table on this shard.
    public func dnisState(table name: String) throws(EngineError) -> DnisStateFields {
        let s = try withTable(name) { (t) throws(EngineError) in try t.currentDnisState() }
        return (s.pruned, s.version, s.alpha, s.threshold, s.assignmentRound)
    }

    /// Adopts another shard's DNIS state when it is ahead (see `EmbeddingTable.adoptDnisState`).
    public func adoptDnisState(table name: String, pruned: Bool, version: UInt64, alpha: [Float], threshold: Float, assignmentRound: UInt32) throws(EngineError) -> Bool {
        try withTable(name) { (t) throws(EngineError) in
            try t.adoptDnisState(pruned: pruned, version: version, alpha: alpha, threshold: threshold, assignmentRound: assignmentRound)
        }
    }

    /// Reads, updates (alpha primary = shard 0 only) or replicates alpha; returns (version, alpha, pruned).
    public func dnisAlpha(table name: String, gradient: [Float], setVersion: UInt64, setAlpha: [Float]) throws(EngineError) -> (UInt64, [Float], Bool) {
        try withTable(name) { (t) throws(EngineError) in
            if !gradient.isEmpty && configuration.shardIndex != 0 { throw .notAlphaPrimary(table: name, shard: configuration.shardIndex) }
            let s = try t.dnisAlpha(gradient: gradient, setVersion: setVersion, setAlpha: setAlpha)
            return (s.version, s.alpha, s.pruned)
        }
    }

    /// This shard's part of dL/dalpha for (ids, dL/de) of a validation batch; validated like a push.
    public func dnisAlphaGradient(table name: String, ids: UnsafeBufferPointer<UInt64>, gradientBytes: UnsafeRawBufferPointer) throws(EngineError) -> [Float] {
        try withTable(name) { (t) throws(EngineError) in
            let dim = t.dim
            try Self.checkRowBytes(table: name, count: ids.count, dim: dim, bytes: gradientBytes.count)
            let keys = try ownedKeys(t, ids)
            let g = UnsafeMutablePointer<Float>.allocate(capacity: max(1, ids.count * dim))
            defer { g.deallocate() }
            if !gradientBytes.isEmpty { UnsafeMutableRawPointer(g).copyMemory(from: gradientBytes.baseAddress!, byteCount: gradientBytes.count) }
            for i in 0..<(ids.count * dim) where !g[i].isFinite { throw .nonFiniteGradient(table: name, id: ids[i / dim], column: i % dim) }
            return try t.dnisAlphaGradient(keys: keys, gradients: g)
        }
    }

    public func dnisPrune(table name: String, prune: UInt64, threshold: Float) throws(EngineError) -> (pruned: UInt64, active: UInt64, rows: UInt64) {
        try withTable(name) { (t) throws(EngineError) in try t.dnisPrune(prune: prune, threshold: threshold) }
    }

    /// Rows in compact form (mask words + active values), ownership checked.
    public func pullCompact(table name: String, ids: UnsafeBufferPointer<UInt64>) throws(EngineError) -> (dim: Int, masks: [UInt32], values: [Float]) {
        try withTable(name) { (t) throws(EngineError) in
            let keys = try ownedKeys(t, ids)
            let (m, v) = try t.pullCompact(keys: keys)
            return (t.dim, m, v)
        }
    }

    /// The full in-memory form of the row of `id` (see `EmbeddingTable.fullRow`); ownership is not checked.
    func fullRow(table name: String, id: UInt64) throws(EngineError) -> [Float] {
        try withTable(name) { (t) throws(EngineError) in try t.fullRow(key: t.addressing.rowKey(id)) }
    }

    public func tableNames() -> [String] { registry.withLock { tables.keys.sorted() } }
    public func spec(of name: String) throws(EngineError) -> TableSpec { try withTable(name) { $0.spec } }
    public func snapshot(of name: String) throws(EngineError) -> TableSnapshot { try withTable(name) { $0.snapshot() } }
    /// Snapshots of every table, in name order.
    public func snapshots() -> [TableSnapshot] {
        var out: [TableSnapshot] = []
        try? forEachTable { out.append($0.snapshot()) }
        return out
    }
    /// Bytes of every table's data plus the shard's own records (estimate).
    public var bytesOnDisk: UInt64 {
        var total = db.bytesUsed(db.defaultFamily)
        try? forEachTable { total += self.db.bytesUsed($0.family) }
        return total
    }

    /// The shard map in force and the slots being migrated away.
    func currentMap() -> (map: SlotMap, moving: Set<UInt16>) { mapLock.withLock { (map, movingSlots) } }

    /// Refuses row bytes that are not `count` rows of `dim` floats: MALFORMED when they are not whole rows
    /// at all, WRONG_DIMENSION when they are rows of another width.
    static func checkRowBytes(table: String, count: Int, dim: Int, bytes: Int) throws(EngineError) {
        guard bytes != count * dim * 4 else { return }
        if count == 0 || bytes % (4 * count) != 0 {
            throw .malformed("table '\(table)': \(bytes) row bytes for \(count) ids of dim \(dim) (expected \(count * dim * 4))")
        }
        throw .wrongDimension(table: table, expected: dim, got: bytes / 4 / count)
    }

    /// Row keys of `ids`, checking that this shard owns each one's slot (and, for writes, that the slot is
    /// not being migrated away: UNAVAILABLE, retried by clients).
    private func ownedKeys(_ t: EmbeddingTable, _ ids: UnsafeBufferPointer<UInt64>, write: Bool = false) throws(EngineError) -> [UInt64] {
        guard ids.count <= configuration.maxIdsPerRequest else {
            throw .tooLarge("\(ids.count) ids in one request; the limit is \(configuration.maxIdsPerRequest): split the batch")
        }
        let (map, moving) = currentMap()
        let me = configuration.shardIndex
        var keys = [UInt64](repeating: 0, count: ids.count)
        if map.shardCount == 1 && me == 0 && moving.isEmpty {
            // This shard owns every slot and none is moving: no per-id slot check.
            for i in 0..<ids.count { keys[i] = t.addressing.rowKey(ids[i]) }
            return keys
        }
        for i in 0..<ids.count {
            let k = t.addressing.rowKey(ids[i])
            let slot = t.addressing.slot(ofRowKey: k)
            let owner = map.owner(ofSlot: slot)
            if owner != me {
                throw .wrongShard(table: t.spec.name, id: ids[i], slot: Int(slot), owner: owner, shard: me, mapVersion: map.version)
            }
            if write && !moving.isEmpty && moving.contains(slot) { throw .slotMoving(table: t.spec.name, slot: Int(slot)) }
            keys[i] = k
        }
        return keys
    }

    /// Dimension of a table (to size a pull response before filling it).
    public func dim(of name: String) throws(EngineError) -> Int { try withTable(name) { $0.dim } }

    /// Writes the rows of `ids` (in order, duplicates allowed) to `out` (ids.count * dim floats).
    public func pull(table name: String, ids: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in
            let keys = try ownedKeys(t, ids)
            try keys.withUnsafeBufferPointer { (k) throws(EngineError) in try t.pull(keys: k, into: out) }
        }
    }

    /// Sizes a pull of `count` rows of table `name` with `size(dim)`, then fills it with `pull` (one table
    /// lookup and one gate entry for both; the dimension cannot change in between).
    public func withPull<R>(table name: String, ids: UnsafeBufferPointer<UInt64>, _ body: (Int, (UnsafeMutablePointer<Float>) throws(EngineError) -> Void) throws -> R) throws -> R {
        try withTable(name) { (t) throws(EngineError) -> Result<R, any Error> in
            do {
                return .success(try body(t.dim) { (out) throws(EngineError) in
                    let keys = try ownedKeys(t, ids)
                    try keys.withUnsafeBufferPointer { (k) throws(EngineError) in try t.pull(keys: k, into: out) }
                })
            } catch { return .failure(error) }
        }.get()
    }

    /// Validates and applies a push: `gradientBytes` holds ids.count * dim little-endian float32.
    /// Duplicate ids (and ids hashing to the same row) are summed first, straight into the log record. All or nothing.
    public func push(table name: String, ids: UnsafeBufferPointer<UInt64>, gradientBytes: UnsafeRawBufferPointer, requestID: RequestID? = nil) throws(EngineError) -> Int {
        try withTable(name) { (t) throws(EngineError) -> Int in
            let dim = t.dim
            try Self.checkRowBytes(table: name, count: ids.count, dim: dim, bytes: gradientBytes.count)
            guard !ids.isEmpty else { return 0 }
            let keys = try ownedKeys(t, ids, write: true)
            // Every value finite before anything changes (sums of duplicates are checked again below).
            if let bad = GradientCheck.firstNonFinite(gradientBytes) { throw .nonFiniteGradient(table: name, id: ids[bad / dim], column: bad % dim) }
            // Distinct row keys, in first-seen order; strictly increasing keys (a client's usual sorted batch)
            // are distinct without the map.
            var uniqueIndex = [Int32](repeating: 0, count: keys.count)
            var unique = 0
            if keys.withUnsafeBufferPointer(isStrictlyIncreasing) {
                for i in 0..<keys.count { uniqueIndex[i] = Int32(i) }
                unique = keys.count
            } else {
                var position = UInt64Map(capacity: keys.count)
                for i in 0..<keys.count {
                    if let p = position.getOrInsert(keys[i], unique) { uniqueIndex[i] = Int32(p) } else { uniqueIndex[i] = Int32(unique); unique += 1 }
                }
            }
            let source = gradientBytes.baseAddress!
            if unique == keys.count && t.dnis == nil && Int(bitPattern: source) % MemoryLayout<Float>.alignment == 0 {
                // Distinct ids (the usual batch): log and apply straight from the request's floats (DNIS
                // tables rewrite gradients by the chain rule, so they always copy).
                let record = EmbeddingTable.PushRecord.borrowing(source.assumingMemoryBound(to: Float.self), count: unique, dim: dim, requestID: requestID)
                defer { record.deallocate() }
                keys.withUnsafeBufferPointer { record.keys.update(from: $0.baseAddress!, count: unique) }
                return try t.push(record)
            }
            let record = EmbeddingTable.PushRecord.owned(count: unique, dim: dim, requestID: requestID)
            defer { record.deallocate() }
            // Sum gradients of duplicate keys into the record (first occurrence copied, later ones added).
            let sums = record.gradients
            var seen = [Bool](repeating: false, count: unique)
            var summed = false
            for i in 0..<keys.count {
                let p = Int(uniqueIndex[i])
                let src = source + i * dim * 4
                if seen[p] {
                    let dst = sums + p * dim
                    for c in 0..<dim { dst[c] += src.loadUnaligned(fromByteOffset: c * 4, as: Float.self) }
                    summed = true
                } else {
                    seen[p] = true
                    record.keys[p] = keys[i]
                    UnsafeMutableRawPointer(sums + p * dim).copyMemory(from: src, byteCount: dim * 4)
                }
            }
            if summed, let bad = GradientCheck.firstNonFinite(UnsafeRawBufferPointer(start: sums, count: unique * dim * 4)) {
                let p = bad / dim
                let id = ids[(0..<keys.count).first { Int(uniqueIndex[$0]) == p } ?? 0]
                throw .nonFiniteGradient(table: name, id: id, column: bad % dim)
            }
            return try t.push(record)
        }
    }

    // MARK: semantic tables

    private func semanticParts(_ t: EmbeddingTable) throws(EngineError) -> (items: ItemCodeStore, tokenizer: PieceTokenizer) {
        guard let s = t.semantic else { throw .notSemantic(t.spec.name) }
        return s
    }

    /// Registers items' codes (`codes`: items.count * levels, item-major). Returns (registered, items now known).
    public func registerItems(table name: String, items: [UInt64], codes: [UInt32]) throws(EngineError) -> (Int, Int) {
        try withTable(name) { (t) throws(EngineError) in
            let (store, tokenizer) = try semanticParts(t)
            guard codes.count == items.count * store.levels else {
                throw .malformed("table '\(name)': \(codes.count) codes for \(items.count) items of \(store.levels) levels")
            }
            guard items.count <= configuration.maxIdsPerRequest else { throw .tooLarge("\(items.count) items in one request: split it") }
            if let bad = codes.first(where: { Int($0) >= tokenizer.codebookSize }) {
                throw .malformed("table '\(name)': code \(bad) is outside 0..<\(tokenizer.codebookSize)")
            }
            var seen = Set<UInt64>()
            for item in items where !seen.insert(item).inserted { throw .malformed("table '\(name)': item \(item) appears twice in one registration") }
            try t.registerItems(items, codes: codes, origin: .local)
            return (items.count, store.count)
        }
    }

    /// The distinct pieces of `items` that this shard owns, and per item the indices of its owned pieces.
    private func ownedPieces(_ t: EmbeddingTable, _ store: ItemCodeStore, _ tokenizer: PieceTokenizer,
                             _ items: UnsafeBufferPointer<UInt64>) throws(EngineError) -> (pieces: [UInt64], perItem: [[Int32]]) {
        guard items.count <= configuration.maxIdsPerRequest else { throw .tooLarge("\(items.count) items in one request: split it") }
        let map = currentMap().map, me = configuration.shardIndex
        var index = UInt64Map(capacity: items.count * tokenizer.maxPiecesPerItem)
        var pieces: [UInt64] = []
        var perItem = [[Int32]](repeating: [], count: items.count)
        for i in 0..<items.count {
            guard let codes = store.codes(of: items[i]) else { throw .unknownItem(table: t.spec.name, item: items[i]) }
            let itemPieces: [UInt64]
            do { itemPieces = try tokenizer.pieces(codes) } catch { throw .malformed("table '\(t.spec.name)' item \(items[i]): \(error)") }
            for p in itemPieces where map.owner(ofSlot: t.addressing.slot(ofRowKey: p)) == me {
                let k: Int
                if let existing = index.getOrInsert(p, pieces.count) { k = existing } else { k = pieces.count; pieces.append(p) }
                perItem[i].append(Int32(k))
            }
        }
        return (pieces, perItem)
    }

    /// Per item, the sum of its piece rows owned by this shard (zeros when none) into `out` (items.count * dim).
    public func pullPooled(table name: String, items: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) throws(EngineError) {
        try withTable(name) { (t) throws(EngineError) in
            let (store, tokenizer) = try semanticParts(t)
            let dim = t.dim
            let (pieces, perItem) = try ownedPieces(t, store, tokenizer, items)
            let rows = UnsafeMutablePointer<Float>.allocate(capacity: max(1, pieces.count * dim))
            defer { rows.deallocate() }
            try pieces.withUnsafeBufferPointer { (k) throws(EngineError) in try t.pull(keys: k, into: rows) }
            out.update(repeating: 0, count: items.count * dim)
            for i in 0..<items.count {
                let dst = out + i * dim
                for k in perItem[i] { let src = rows + Int(k) * dim; for c in 0..<dim { dst[c] += src[c] } }
            }
        }
    }

    /// Applies each item's gradient to every piece of the item this shard owns, summing identical pieces first.
    /// All or nothing. Returns the pieces updated. A retry carrying the same request id applies nothing.
    public func pushPooled(table name: String, items: UnsafeBufferPointer<UInt64>, gradientBytes: UnsafeRawBufferPointer, requestID: RequestID? = nil) throws(EngineError) -> Int {
        try withTable(name) { (t) throws(EngineError) -> Int in
            let (store, tokenizer) = try semanticParts(t)
            let dim = t.dim
            try Self.checkRowBytes(table: name, count: items.count, dim: dim, bytes: gradientBytes.count)
            if let bad = GradientCheck.firstNonFinite(gradientBytes) { throw .nonFiniteGradient(table: name, id: items[bad / dim], column: bad % dim) }
            let (pieces, perItem) = try ownedPieces(t, store, tokenizer, items)
            guard !pieces.isEmpty else { return 0 }
            let record = EmbeddingTable.PushRecord.owned(count: pieces.count, dim: dim, requestID: requestID)
            defer { record.deallocate() }
            let sums = record.gradients
            sums.update(repeating: 0, count: pieces.count * dim)
            for (k, p) in pieces.enumerated() { record.keys[k] = p }
            for i in 0..<items.count {
                for k in perItem[i] {
                    let dst = sums + Int(k) * dim
                    for c in 0..<dim { dst[c] += gradientBytes.loadUnaligned(fromByteOffset: (i * dim + c) * 4, as: Float.self) }
                }
            }
            return try t.push(record)
        }
    }

    /// Tokenizer statistics of a semantic table over its registered items.
    public struct SemanticStats: Sendable, Equatable {
        public let items: Int
        public let piecesPerItem: Double
        /// Distinct piece rows the items map to.
        public let rowsUsed: Int
        /// Distinct pieces sharing a row with another piece (hashed layouts).
        public let collisions: Int
    }

    /// Tokenizer statistics of a semantic table, or nil for other tables. Cached until items are registered.
    public func semanticStats(table name: String) throws(EngineError) -> SemanticStats? {
        try withTable(name) { (t) throws(EngineError) -> SemanticStats? in
            guard let s = t.semantic else { return nil }
            let key = ObjectIdentifier(t)
            if let cached = registry.withLock({ semanticStatsCache[key] }), cached.version == s.items.currentVersion { return cached.stats }
            let (version, all) = s.items.snapshot()
            var rows = Set<UInt64>(), identities = Set<[Int]>(), total = 0
            for codes in all {
                guard let keys = try? s.tokenizer.pieces(codes) else { continue }
                total += keys.count
                rows.formUnion(keys)
                if case .ngram(let tok) = s.tokenizer { identities.formUnion(tok.pieceIdentities(codes)) }
            }
            let stats = SemanticStats(items: all.count, piecesPerItem: all.isEmpty ? 0 : Double(total) / Double(all.count), rowsUsed: rows.count,
                                      collisions: identities.isEmpty ? 0 : identities.count - rows.count)
            registry.withLock { semanticStatsCache[key] = (version, stats) }
            return stats
        }
    }

    /// A page of a semantic table's registered items (id order) with their codes, for copying to a new shard.
    public func itemPage(table name: String, after: UInt64?, limit: Int) throws(EngineError) -> (items: [UInt64], codes: [UInt32]) {
        try withTable(name) { (t) throws(EngineError) in
            let (store, _) = try semanticParts(t)
            return store.page(after: after, limit: max(1, min(limit, 100_000)))
        }
    }

    /// Items with registered codes (semantic tables; 0 otherwise or when the table is unknown).
    public func registeredItems(table name: String) -> Int { (try? withTable(name) { $0.semantic?.items.count ?? 0 }) ?? 0 }
}
