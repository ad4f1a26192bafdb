import Foundation
import Vocabulary
import Storage
import SemanticTokenizers
import Synchronization

/// Counters of one table since the shard started. Lock-free.
public final class TableCounters: Sendable {
    let pulls = Atomic<UInt64>(0), pushes = Atomic<UInt64>(0)
    let rowsPulled = Atomic<UInt64>(0), rowsPushed = Atomic<UInt64>(0)
    let cacheHits = Atomic<UInt64>(0), cacheMisses = Atomic<UInt64>(0)
    let checkpoints = Atomic<UInt64>(0), rowsFlushed = Atomic<UInt64>(0)
    /// Pushes that found dirty rows over the hard limit and wrote rows themselves (waiting for the flusher
    /// first when it was running): how often the flusher could not keep up.
    let backpressureFlushes = Atomic<UInt64>(0)
    /// Rows read from RocksDB for pushes (rows not cached when pushed).
    let rowsLoaded = Atomic<UInt64>(0)
    /// Pushes that enqueued their log record before pinning their rows (`EmbeddingTable.commitPush`).
    let pushesLoggedFirst = Atomic<UInt64>(0)
    /// Pulls whose cached rows were copied on several threads (`EmbeddingTable.splitParts`).
    let pullsSplit = Atomic<UInt64>(0)
    /// Checkpoints written as snapshot files (`EmbeddingTable.snapshotCheckpoint`; counted in `checkpoints`
    /// too) and the rows they wrote.
    let snapshotCheckpoints = Atomic<UInt64>(0), snapshotRows = Atomic<UInt64>(0)
    /// Snapshots ended by writing their rows with the table's pushes held (`supersedeSnapshot`: an exclusive
    /// section, or a checkpoint into RocksDB whose sweeps left snapshot-held rows).
    let snapshotsSuperseded = Atomic<UInt64>(0)
    /// Snapshot files written over the spare (`RowSnapshotWriter.reused`) instead of created.
    let snapshotsRecycled = Atomic<UInt64>(0)
    /// Bytes of the checkpoint's snapshot file (0 without one).
    let snapshotBytes = Atomic<UInt64>(0)
    /// Admission tables: rows created by a push; pushed ids counted but not applied (not admitted yet).
    let rowsAdmitted = Atomic<UInt64>(0), pushesRefused = Atomic<UInt64>(0)
    /// Eviction tables: rows deleted by eviction passes, and the passes.
    let rowsEvicted = Atomic<UInt64>(0), evictionPasses = Atomic<UInt64>(0)
}

/// A point-in-time view of one table on one shard.
public struct TableSnapshot: Sendable {
    public let spec: TableSpec
    public let rows: UInt64
    public let cachedRows: UInt64
    public let dirtyRows: UInt64
    public let cacheCapacityRows: UInt64
    public let bytesOnDisk: UInt64
    public let logBytes: UInt64
    public let pulls, pushes, rowsPulled, rowsPushed, cacheHits, cacheMisses, checkpoints, rowsFlushed: UInt64
    public let backpressureFlushes, rowsLoaded, evictions: UInt64
    /// Pushes that handed their record to the update log before pinning their rows (rows all cached).
    public let pushesLoggedFirst: UInt64
    /// Pulls whose cached rows were copied on several threads at once (large pulls alone in the table).
    public let pullsSplit: UInt64
    /// Checkpoints written as snapshot files (also counted in `checkpoints`) and the rows they wrote.
    public let snapshotCheckpoints, snapshotRows: UInt64
    /// Snapshots whose rows were written to RocksDB with the table's pushes held; bytes of the checkpoint's
    /// snapshot file now (beside the update log, not in `logBytes` or `bytesOnDisk`).
    public let snapshotsSuperseded, snapshotBytes: UInt64
    /// Snapshot files written over the previous one's file instead of created (see `RowSnapshotFile.deleteAll`).
    public let snapshotsRecycled: UInt64
    /// Admission and eviction policies (zero without them); `evictions` above counts cache evictions.
    public let rowsAdmitted, pushesRefused, rowsEvicted, evictionPasses, admissionSketchBytes: UInt64
    /// The last applied update-log sequence.
    public let lastSequence: UInt64
    /// Bytes of update-log segments kept for reuse (`UpdateLog`'s recycling), and the segments opened on
    /// such a spare and as new files since the shard started.
    public let logSpareBytes: UInt64, logSegmentsRecycled: UInt64, logSegmentsCreated: UInt64
}

/// The part of a table's state that changes with every commit: guarded by the commit lock (`commit`).
struct CommitState {
    /// The last sequence number assigned (every update-log record, in commit order).
    var lastSeq: UInt64 = 0
    /// Recent push request ids (retries answered without applying twice).
    var ledger = RequestLedger(capacity: 65536)
    /// The checkpoint recorded in RocksDB: every update through it is in the table's column family.
    var checkpointSeq: UInt64 = 0
    var lastCheckpoint = Date()
    /// Prune-and-regrow rounds applied and the sequence of the last one (sparse tables).
    var sparsityRound: UInt32 = 0
    var sparsityStepSeq: UInt64 = 0
    /// The sequence of the last whole-table rewrite operation (see `lastRewriteSequence`).
    var rewriteSeq: UInt64 = 0
    /// Apply turns handed out (`RowStore.withStripesInTurn`): pushes of a plain table take the next one with
    /// their sequence and update their rows after the commit lock, in turn; `EmbeddingTable.withCommitApplied`
    /// waits for all of them.
    var applyTickets: UInt64 = 0
}

/// The flusher's state of a table (behind `EmbeddingTable.flushing`).
struct FlushState {
    /// Set once the table is dropped or closed: flushes and exclusive sections stop.
    var dropped = false
    /// `roomDemands` of the store at the flusher's last pass.
    var roomDemandsSeen: UInt64 = 0
    /// Where `flushDirty`'s next sweep starts.
    var cursor = (stripe: 0, slot: 0)
    /// The table's last sequence at the flusher's last pass, and when (monotonic seconds) it last changed:
    /// how long the table has gone without a push or operation.
    var lastSeqSeen: UInt64 = 0
    var lastSeqChanged: Double = 0
    /// Rows were written to the family's memtable since it was last flushed to SST files.
    var memtableHoldsRows = false
    /// The log's spares were deleted since the table's last sequence changed (see `flusherPass`).
    var sparesDeleted = false
    /// The id of the snapshot file the last checkpoint wrote (`snapshotCheckpoint`), while it is the
    /// checkpoint's; nil when the last checkpoint is in RocksDB alone.
    var snapshot: UInt64? = nil
    /// The id the next snapshot file gets.
    var nextSnapshotID: UInt64 = 1
    /// A flush wrote a row RocksDB did not hold since the snapshot was written, and recorded it
    /// (`EmbeddingTable.snapshotStaleKey`) with the row.
    var snapshotStoredFlagsStale = false
}

/// One table's rows on one shard: an in-memory row store (striped, write-back) over a RocksDB column family,
/// an update log with group commit, the optimizer and the initializer.
///
/// Durability: a push is acknowledged once its record (row keys + aggregated gradients + request id) is
/// durable in the update log (written; fdatasync'ed in sync mode). Rows are updated in memory and stay dirty;
/// a background flusher writes them to RocksDB (only images whose updates are durable, so RocksDB never holds
/// an unacknowledgeable update), keeps dirty rows under a low watermark and records checkpoints (the column
/// family flushed to SST files, then the checkpoint sequence synced), after which older log segments are
/// deleted. Recovery replays records newer than the checkpoint, skipping rows whose stored sequence already
/// covers them, so replay is idempotent.
///
/// Concurrency (who holds what while doing what):
/// - A pull locks each stripe it touches in turn and copies cached rows out; misses are read from RocksDB
///   with no lock held, then installed if the stripe evicted nothing meanwhile.
/// - A push pins its rows stripe by stripe (placeholders for misses, filled from RocksDB with no lock held),
///   then takes the commit lock: sequence number, log record queued, ledger, and an apply turn; releases
///   it, updates its rows in place stripe by stripe in ascending order, in each stripe (locked while written)
///   only once every push with an earlier turn has passed it (`RowStore.withStripesInTurn`), waits for the
///   group commit, unpins. Updates of one row are therefore applied in sequence order, exactly the log's
///   order, while two pushes update different stripes at once. Tables with sparsity or DNIS update their
///   rows inside the commit lock instead (their side state is read there). While a table's pushes find their
///   rows cached (`logsBeforePinning`), a push takes the commit lock first and queues its record before it
///   pins, so the log write overlaps the pin as well as the apply (`commitPush`). Whatever needs every
///   committed update applied (checkpoint targets, replay, exclusive sections) takes the commit lock and
///   waits for every turn handed out (`withCommitApplied`).
/// - The flusher locks one stripe at a time to copy dirty images and to mark them clean. The flush lock
///   serialises flushes, checkpoints and exclusive sections.
/// - An exclusive section (`withExclusive`: table-kind operations, imports, migrations) holds the flush lock, the
///   commit lock and every stripe: nothing else reads or writes a row meanwhile.
/// Atomicity: everything that can fail (validation, reads from RocksDB) happens before the commit; after the
/// commit only the log write can fail (or, for a push that logged before pinning, the read of a row the
/// cache did not hold), and then the table refuses every later call (`poisoned`) and takes no checkpoint
/// until the shard restarts and replays what was durable.
final class EmbeddingTable: @unchecked Sendable {
    let spec: TableSpec
    let addressing: RowAddressing
    let family: ColumnFamily
    let codec: RowCodec
    let optimizer: SparseOptimizer
    let initializer: RowInitializer
    /// Set for a dynamic-sparsity table.
    let sparsity: DynamicSparsity?
    /// Set for a DNIS table; its alpha / mode state is in `dnisBox` (pulls read it without the commit lock).
    let dnis: DimensionSearch?
    let dnisBox: LockedBox<DnisState>
    /// Set for a table with an admission policy.
    let admission: AdmissionFilter?
    /// The eviction policy's max_rows (0: no cap): pushes create rows only while `rowsApprox` is under it.
    let rowCap: Int
    /// Rows of the table, approximately: set from `rowCount` by every flusher pass (every 20 ms) and raised
    /// by the rows pushes create in between. Kept for tables with a row cap only.
    let rowsApprox = Atomic<Int>(0)
    /// (sequence, wall clock) samples for eviction by time (tables with an eviction policy).
    let clock: LockedBox<SequenceClock>
    /// This incarnation's names in the database (see the lifecycle rule in TableLifecycle.swift).
    let identity: TableIdentity
    /// Operations inside this table; closed by drop and close (see the lifecycle rule).
    let gate = ActivityGate()
    /// Semantic tables only: item codes and the tokenizer.
    let semantic: (items: ItemCodeStore, tokenizer: PieceTokenizer)?
    let counters = TableCounters()
    let db: RocksDatabase
    let store: RowStore
    let log: UpdateLog
    let commit: LockedBox<CommitState>
    /// The flusher's state, reachable only under its lock, which also serialises flushes, checkpoints and
    /// exclusive sections (the "flush lock").
    let flushing = LockedBox(FlushState())
    let tuning: TableTuning
    /// Rows stored in RocksDB (kept in the family beside them, under `storedRowsKey`); written only under
    /// the flush lock, read anywhere.
    let storedRowsCount = Atomic<UInt64>(0)
    /// Imports so far (persisted): rows written outside the update log (see `rowsGenerationKey`).
    let rowsGeneration = Atomic<UInt64>(0)
    /// Set only while `init` replays the log (one thread, before the table is shared): the log is not open,
    /// so nothing waits on it and nothing trims it.
    private(set) var isRecovering = false
    /// Tests: called by `checkpoint` on its thread (under the flush lock) before its first sweep.
    var beforeCheckpointSweep: (() -> Void)?
    /// Tests: called by a snapshot checkpoint between two parts of a stripe's sweep (no lock held).
    var betweenSnapshotParts: (() -> Void)?
    /// The last position a follower read the log from, and when (see `trimLog`).
    let followerPosition = LockedBox<(after: UInt64, at: Date)?>(nil)
    var storedRows: UInt64 { storedRowsCount.load(ordering: .relaxed) }
    /// Dirty rows, approximately (exact values are in the stripes); drives the flusher and back-pressure.
    let dirtyApprox = Atomic<Int>(0)
    /// Pushes in a row whose rows were all cached (none read from storage); see `logsBeforePinning`.
    let cachedPushStreak = Atomic<Int>(0)
    /// Cached pushes in a row after which pushes log before they pin.
    static let logFirstStreak = 8
    /// Most rows a snapshot checkpoint copies under one hold of a stripe's lock (one chunk of the file):
    /// ~0.5 MiB at dim 64, a fraction of a millisecond.
    static let snapshotPartRows = 2048
    /// Pulls and pushes in this table now (see `splitParts`).
    let busy = Atomic<Int>(0)
    /// The store's `roomDemands` when a push last checked for back-pressure (see `waitForFlusherIfOverLimit`).
    let roomDemandsSeenByPushes = Atomic<UInt64>(0)
    /// Set when a log write failed: the table refuses everything until the shard restarts.
    let poisoned = Mutex<String?>(nil)

    /// The key of the stored-row counter in the table's family (sorts after every row key).
    static let storedRowsKey: [UInt8] = [0xff, 0xff]
    /// The id of the checkpoint snapshot whose rows' `stored` flags a later flush made stale (a row first
    /// written to RocksDB after the snapshot); absent or another id: they are exact. Kept in the family, in
    /// the batch of the rows it concerns, so a flush of the family's memtable keeps both or neither (these
    /// batches bypass RocksDB's WAL). Sorts after every row key, like `storedRowsKey`.
    static let snapshotStaleKey: [UInt8] = [0xff, 0xff, 0x73]

    init(spec: TableSpec, identity: TableIdentity, family: ColumnFamily, db: RocksDatabase, logDirectory: String,
         tuning: TableTuning, sync: Bool, semantic: (items: ItemCodeStore, tokenizer: PieceTokenizer)?) throws {
        self.spec = spec; self.identity = identity; self.family = family; self.db = db; self.semantic = semantic; self.tuning = tuning
        addressing = RowAddressing(spec: spec)
        if let format = spec.sparseFormat {
            codec = RowCodec(sparse: format, optimizerTag: spec.optimizer.kind.rawValue)
            sparsity = spec.sparsity.map { DynamicSparsity(config: $0, format: format) }
            dnis = spec.dnis.map { DimensionSearch(config: $0, format: format) }
        } else {
            codec = RowCodec(floatCount: spec.rowFloats, optimizerTag: spec.optimizer.kind.rawValue)
            sparsity = nil; dnis = nil
        }
        optimizer = SparseOptimizer(config: spec.optimizer, dim: spec.dim)
        initializer = RowInitializer(config: spec.initializer, dim: spec.dim)
        store = RowStore(rowFloats: spec.rowFloats, capacity: tuning.cacheRows, stripes: tuning.stripes)
        log = try UpdateLog(directory: logDirectory, sync: sync, segmentLimit: tuning.logSegmentBytes, ringBytes: tuning.logRingBytes,
                            recycleBytes: tuning.logRecycleBytes)
        var state = CommitState()
        var dnisState = DnisState(blocks: spec.dnis?.blocks ?? 0, dim: spec.dim)
        var snapshotID: UInt64? = nil
        if let m = try db.get(db.defaultFamily, key: identity.markerKey), m.count == 8 || m.count == 16 {
            state.checkpointSeq = m.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            if m.count == 16 { snapshotID = m.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) } }
        }
        state.lastSeq = state.checkpointSeq
        if let m = try db.get(db.defaultFamily, key: identity.ledgerKey) { state.ledger.load(m) }
        if let m = try db.get(db.defaultFamily, key: identity.rowsGenerationKey), m.count == 8 {
            rowsGeneration.store(m.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, ordering: .relaxed)
        }
        if let m = try db.get(db.defaultFamily, key: identity.rewriteKey), m.count == 8 {
            state.rewriteSeq = m.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        }
        if let m = try db.get(db.defaultFamily, key: identity.sparsityKey), m.count == 12 {
            state.sparsityRound = m.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            state.sparsityStepSeq = m.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self) }
        }
        if let d = spec.dnis, let m = try db.get(db.defaultFamily, key: identity.dnisKey) {
            guard let s = DnisState(decoding: m, blocks: d.blocks, dim: spec.dim) else {
                throw EngineError.storage("table '\(spec.name)': stored DNIS state has \(m.count) bytes, expected \(20 + 4 * d.blocks * spec.dim)")
            }
            dnisState = s
        }
        dnisBox = LockedBox(dnisState)
        commit = LockedBox(state)
        admission = try spec.admission.map { AdmissionFilter(config: $0, saved: try db.get(db.defaultFamily, key: identity.admissionKey)) }
        rowCap = Int(clamping: spec.eviction?.maxRows ?? 0)
        clock = LockedBox(try db.get(db.defaultFamily, key: identity.clockKey).flatMap { SequenceClock(encoded: $0) } ?? SequenceClock())
        // Rows stored: the counter beside them, or (a family written before the counter existed) a count.
        if let c = try db.get(family, key: Self.storedRowsKey), c.count == 8 {
            storedRowsCount.store(c.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, ordering: .relaxed)
        } else {
            var n: UInt64 = 0
            try db.scan(family) { k, _ in if k.count == RowKey.length { n += 1 }; return true }
            storedRowsCount.store(n, ordering: .relaxed)
        }
        // Snapshot files other than the checkpoint's are leftovers of a checkpoint that did not complete.
        RowSnapshotFile.deleteAll(in: log.directory, except: snapshotID)
        if let snapshotID { try loadSnapshot(snapshotID) }
        try recover(after: state.checkpointSeq)
        if rowCap > 0 { rowsApprox.store(Int(clamping: rowCount), ordering: .relaxed) }
    }

    var dim: Int { spec.dim }

    /// Recovery: installs the rows of the checkpoint's snapshot file in the cache, dirty and covered (see
    /// `snapshotCheckpoint`), before the log after the checkpoint is replayed onto them. When a flush wrote
    /// rows RocksDB did not hold after the snapshot was taken, the rows it lists as not stored are looked up
    /// in RocksDB so the stored-row count stays exact.
    private func loadSnapshot(_ id: UInt64) throws {
        var installed = 0
        var unstored: [UInt64] = []
        let stale = try db.get(family, key: Self.snapshotStaleKey).map { $0.count == 8 && $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } == id } ?? false
        let fileBytes = try RowSnapshotFile.read(log.directory, id: id, rowFloats: spec.rowFloats) { key, seq, step, stored, row in
            if store.withStripe(store.stripe(of: key), { $0.installCovered(key: key, row: row, step: step, seq: seq, stored: stored) }) { installed += 1 }
            if stale && !stored { unstored.append(key) }
        }
        dirtyApprox.add(installed, ordering: .relaxed)
        if !unstored.isEmpty {
            let rows = RowScratch(rowFloats: spec.rowFloats, count: unstored.count)
            try readStored(unstored, into: rows)
            for (j, key) in unstored.enumerated() where rows.exists[j] {
                store.withStripe(store.stripe(of: key)) { stripe in
                    guard let slot = stripe.find(key), stripe.isCovered(slot) else { return }
                    stripe.setState(slot, step: stripe.step(slot), seq: stripe.seq(slot), exists: true, stored: true, dirty: true)
                    stripe.cover(slot)
                }
            }
        }
        flushing.withLock { $0.snapshot = id; $0.nextSnapshotID = id + 1; $0.snapshotStoredFlagsStale = stale }
        counters.snapshotBytes.store(fileBytes, ordering: .relaxed)
        FileHandle.standardError.write(Data("table '\(spec.name)': loaded \(installed) rows from checkpoint snapshot \(RowSnapshotFile.path(log.directory, id: id))\n".utf8))
    }

    /// Replays every logged update newer than the checkpoint (rows already covering a record are skipped;
    /// operation records are applied with the code that first applied them), then resumes numbering after
    /// the last record.
    private func recover(after checkpointSeq: UInt64) throws {
        let dim = spec.dim
        isRecovering = true
        defer { isRecovering = false }
        if log.recoveredFromRing > 0 {
            FileHandle.standardError.write(Data("table '\(spec.name)': wrote \(log.recoveredFromRing) bytes of acknowledged updates that the update log's ring held when the shard stopped to \(log.directory)\n".utf8))
        }
        let last = try log.replay(after: checkpointSeq) { seq, payload in
            if TableOperation.isOperation(payload) {
                switch TableOperation.decode(payload) {
                case .success(let op): try applyOperation(op, .replayed(seq))
                case .failure(let why): throw EngineError.storage("update log record \(seq) of '\(spec.name)' \(why.message)")
                }
                return
            }
            let push: LoggedPush
            switch LoggedPush.decode(payload, dim: dim) {
            case .success(let p): push = p
            case .failure(let why): throw EngineError.storage("update log record \(seq) of '\(spec.name)' \(why.message)")
            }
            defer { push.deallocate() }
            let count = push.count, keys = push.keys, grads = push.gradients, requestID = push.requestID
            let rows = UnsafeBufferPointer(rebasing: keys[0..<count])
            let pins = try pinRows(rows)
            defer { unpin(pins) }
            try withCommitApplied { (state) throws(EngineError) in
                applyPinned(pins, gradients: grads, seq: seq, replay: true)
                state.lastSeq = seq
                if let requestID { state.ledger.record(requestID, rows: count) }
            }
        }
        log.resume(after: last)
        commit.withLock { $0.lastSeq = max($0.lastSeq, last) }
    }

    /// Threads a pull of `rows` rows copies its cached rows with (`RowStore.withStripesSplit`): up to
    /// `tuning.splitThreads`, at least `tuning.rowsPerSplitThread` rows each, and only while no other pull or
    /// push is in this table (`busy`): a lone pull then uses cores that would sit idle, while concurrent
    /// requests already keep them busy and keep one thread each. (Pushes stay on one thread: measured, a
    /// split pin and apply made them slower, competing with the log's writer thread.)
    @inline(__always) func splitParts(_ rows: Int) -> Int {
        let most = min(tuning.splitThreads, rows / max(1, tuning.rowsPerSplitThread))
        guard most > 1, busy.load(ordering: .relaxed) <= 1 else { return 1 }
        return most
    }

    /// Throws when the table stopped accepting calls after a failed log write.
    @inline(__always) func checkHealthy() throws(EngineError) {
        if let reason = poisoned.withLock({ $0 }) {
            throw .storage("table '\(spec.name)' stopped after an update-log write failed (\(reason)); restart the shard to recover from the log")
        }
    }

    // MARK: pull

    /// Fills `out[i*dim ..< (i+1)*dim]` with the row of `keys[i]` (what a client sees: the weights, through
    /// alpha for a DNIS table); unseen rows get their initial value (not written).
    func pull(keys: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) throws(EngineError) {
        try checkHealthy()
        busy.add(1, ordering: .relaxed); defer { busy.subtract(1, ordering: .relaxed) }
        let dim = spec.dim, rf = spec.rowFloats
        let plan = store.plan(keys)
        let dnisState = dnis.map { _ in dnisBox.withLock { $0 } }
        let dn = dnis
        // Cache hits under each stripe's lock; misses remembered with the stripe's eviction count. A large
        // pull alone in the table copies on several threads (`splitParts`), each its own stripes.
        let parts = splitParts(keys.count)
        var missedBy = [[Int32]](repeating: [], count: parts)
        var epochs = [UInt64](repeating: 0, count: store.stripeCount)
        let view: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)? = dn.map { d in { d.view($0, into: $1, state: dnisState!) } }
        missedBy.withUnsafeMutableBufferPointer { missed in
            epochs.withUnsafeMutableBufferPointer { epochs in
                store.withStripesSplit(plan, parts: parts) { part, stripe, s, positions in
                    epochs[s] = stripe.evictions
                    stripe.copyRows(keys.baseAddress!, positions, into: out, width: dim, view: view) { missed[part].append($0) }
                }
            }
        }
        let missing = parts == 1 ? missedBy[0] : Array(missedBy.joined())
        if parts > 1 { counters.pullsSplit.add(1, ordering: .relaxed) }
        counters.cacheHits.add(UInt64(keys.count - missing.count), ordering: .relaxed)
        counters.cacheMisses.add(UInt64(missing.count), ordering: .relaxed)
        if !missing.isEmpty {
            // One sorted MultiGet for every miss, no lock held; then the rows are installed (probation) in
            // stripes that evicted nothing since the lookup.
            let rows = RowScratch(rowFloats: rf, count: missing.count)
            let missKeys = missing.map { keys[Int($0)] }
            try readStored(missKeys, into: rows)
            for (j, p) in missing.enumerated() {
                let i = Int(p)
                if let dn, let dnisState { dn.view(rows.row(j), into: out + i * dim, state: dnisState) }
                else { (out + i * dim).update(from: rows.row(j), count: dim) }
            }
            if store.capacity > 0 { installClean(missKeys, rows: rows, epochs: epochs) }
        }
        counters.pulls.add(1, ordering: .relaxed)
        counters.rowsPulled.add(UInt64(keys.count), ordering: .relaxed)
    }

    /// Installs rows read from storage as clean, probationary cache entries, in stripes whose eviction count
    /// is still `epochs[stripe]` (otherwise a row updated, flushed and evicted meanwhile could be replaced by
    /// the older image read). Rows cached meanwhile are left as they are.
    private func installClean(_ keys: [UInt64], rows: RowScratch, epochs: [UInt64]) {
        keys.withUnsafeBufferPointer { kp in
            let plan = store.plan(kp)
            store.withStripes(plan) { stripe, s, positions in
                guard stripe.evictions == epochs[s] else { return }
                // Which rows to install is decided before the first insert: an insert may evict a row cached
                // now (a push's placeholder at lookup time, filled and written since), and installing that
                // row's older image after it left would lose its updates.
                // A key missed twice in one pull (a request may repeat ids) is installed once.
                var absent: [Int] = []
                for p in positions where stripe.find(kp[Int(p)]) == nil { absent.append(Int(p)) }
                for j in absent where stripe.find(kp[j]) == nil {
                    let slot = stripe.insert(kp[j], clock: 0)
                    stripe.fill(slot, from: rows.row(j), step: rows.steps[j], seq: rows.seqs[j], exists: rows.exists[j], stored: rows.exists[j])
                }
                if stripe.overBudget { stripe.trim() }
            }
        }
    }

    // MARK: push

    /// A push's log record: [count u32][keys u64 x n][gradients f32 x n*dim][request id 16 bytes?]. Keys and
    /// the header are owned; gradients are owned (`owned`: the push aggregates into them) or borrowed from
    /// the request (`borrowing`: distinct ids, aligned floats), which outlives the push. Freed by the push.
    struct PushRecord {
        let count: Int
        let dim: Int
        let requestID: RequestID?
        let keys: UnsafeMutablePointer<UInt64>
        let gradients: UnsafeMutablePointer<Float>
        private let ownsGradients: Bool
        /// count (4 bytes) then the request id (16 bytes).
        private let header: UnsafeMutableRawPointer

        /// A record that owns zeroed-later space for `count` keys and gradient rows (the caller fills both).
        static func owned(count: Int, dim: Int, requestID: RequestID?) -> PushRecord {
            PushRecord(count: count, dim: dim, requestID: requestID, gradients: .allocate(capacity: max(1, count * dim)), owns: true)
        }
        /// A record over `gradients` (count * dim floats the caller keeps alive); the caller fills the keys.
        static func borrowing(_ gradients: UnsafePointer<Float>, count: Int, dim: Int, requestID: RequestID?) -> PushRecord {
            PushRecord(count: count, dim: dim, requestID: requestID, gradients: UnsafeMutablePointer(mutating: gradients), owns: false)
        }
        private init(count: Int, dim: Int, requestID: RequestID?, gradients: UnsafeMutablePointer<Float>, owns: Bool) {
            self.count = count; self.dim = dim; self.requestID = requestID
            self.gradients = gradients; ownsGradients = owns
            keys = .allocate(capacity: max(1, count))
            header = .allocate(byteCount: 20, alignment: 8)
            header.storeBytes(of: UInt32(count).littleEndian, as: UInt32.self)
            if let id = requestID {
                header.storeBytes(of: id.high.littleEndian, toByteOffset: 4, as: UInt64.self)
                header.storeBytes(of: id.low.littleEndian, toByteOffset: 12, as: UInt64.self)
            }
        }
        /// The update-log record (valid while this is).
        var logRecord: UpdateLog.Record {
            var parts = [UnsafeRawBufferPointer(start: header, count: 4), UnsafeRawBufferPointer(start: keys, count: count * 8),
                         UnsafeRawBufferPointer(start: gradients, count: count * dim * 4)]
            if requestID != nil { parts.append(UnsafeRawBufferPointer(start: header + 4, count: 16)) }
            return UpdateLog.Record(parts: parts)
        }
        func deallocate() {
            keys.deallocate(); header.deallocate()
            if ownsGradients { gradients.deallocate() }
        }
    }

    /// Applies a push whose distinct row keys and aggregated gradients are in `record` (validated by the
    /// caller). All or nothing; durable on return. Returns the rows updated (or, for a retried request id,
    /// what the first attempt returned, once that attempt's update is durable and applied).
    func push(_ record: PushRecord) throws(EngineError) -> Int {
        try checkHealthy()
        busy.add(1, ordering: .relaxed); defer { busy.subtract(1, ordering: .relaxed) }
        if let retry = commit.withLock({ Retry(of: record, in: $0) }) { return try answer(retry) }
        try waitForFlusherIfOverLimit()
        if logsBeforePinning { return try commitPush(record, pinned: nil) }
        let keys = UnsafeBufferPointer(start: record.keys, count: record.count)
        let pins = try pinRows(keys)
        noteCachedPush(loaded: pins.loaded)
        if admission != nil || rowCap > 0, let admitted = admit(record, pins) {
            // Some ids were refused: their rows are unpinned and the admitted ones pushed alone (or nothing).
            defer { admitted.record.deallocate() }
            unpin(admitted.refusedPins)
            if admitted.record.count == 0 {
                if let id = record.requestID { commit.withLock { $0.ledger.record(id, rows: 0) } }
                return 0
            }
            return try commitPush(admitted.record, pinned: admitted.pins)
        }
        return try commitPush(record, pinned: pins)
    }

    /// Whether a push hands its record to the update log before it pins its rows (`commitPush`): the
    /// table logs what a push sends (no admission or row cap choosing rows after the pin, no DNIS chain rule
    /// reading them), and its recent pushes found every row cached.
    private var logsBeforePinning: Bool {
        tuning.logBeforePin && admission == nil && rowCap == 0 && dnis == nil
            && cachedPushStreak.load(ordering: .relaxed) >= Self.logFirstStreak
    }

    /// Counts a push whose pin read `loaded` rows from storage toward `cachedPushStreak`.
    private func noteCachedPush(loaded: Int) {
        if loaded > 0 { cachedPushStreak.store(0, ordering: .relaxed) }
        else if cachedPushStreak.load(ordering: .relaxed) < Self.logFirstStreak { cachedPushStreak.add(1, ordering: .relaxed) }
    }

    /// Admission of a push's new rows (rows that do not exist): counts them in the sketch, then lets through
    /// those admitted while the table is under its row cap (`rowCap`). Nil when every new row is created;
    /// else the record of the rows that exist or were created (owned; the caller frees it) with their pins,
    /// and the pins of the refused rows (for the caller to release). `pins` itself is then used up.
    private func admit(_ record: PushRecord, _ pins: PinnedRows) -> (record: PushRecord, pins: PinnedRows, refusedPins: PinnedRows)? {
        var newPositions: [Int] = []
        store.withStripes(pins.plan) { stripe, _, positions in
            for p in positions where !stripe.exists(Int(pins.slots[Int(p)])) { newPositions.append(Int(p)) }
        }
        guard !newPositions.isEmpty else { return nil }
        var verdict = admission?.admit(newPositions.map { record.keys[$0] }) ?? [Bool](repeating: true, count: newPositions.count)
        if rowCap > 0 {
            // Room under the cap, taken atomically so concurrent pushes cannot both use it.
            let wanted = verdict.reduce(0) { $0 + ($1 ? 1 : 0) }
            var granted = 0
            if wanted > 0 {
                var current = rowsApprox.load(ordering: .relaxed)
                while true {
                    granted = max(0, min(wanted, rowCap - current))
                    let (exchanged, seen) = rowsApprox.compareExchange(expected: current, desired: current + granted, ordering: .relaxed)
                    if exchanged { break }
                    current = seen
                }
            }
            var left = granted
            for i in verdict.indices where verdict[i] { if left > 0 { left -= 1 } else { verdict[i] = false } }
        }
        let refused = verdict.reduce(0) { $0 + ($1 ? 0 : 1) }
        counters.rowsAdmitted.add(UInt64(newPositions.count - refused), ordering: .relaxed)
        guard refused > 0 else { return nil }
        counters.pushesRefused.add(UInt64(refused), ordering: .relaxed)
        var keep = [Bool](repeating: true, count: record.count)
        for (p, ok) in zip(newPositions, verdict) where !ok { keep[p] = false }
        let out = PushRecord.owned(count: record.count - refused, dim: dim, requestID: record.requestID)
        var kept: [Int] = [], dropped: [Int] = []
        for i in 0..<record.count {
            guard keep[i] else { dropped.append(i); continue }
            out.keys[kept.count] = record.keys[i]
            (out.gradients + kept.count * dim).update(from: record.gradients + i * dim, count: dim)
            kept.append(i)
        }
        let refusedKeys = dropped.map { record.keys[$0] }
        return (out, pins.subset(kept, keys: UnsafeBufferPointer(start: out.keys, count: out.count)),
                refusedKeys.withUnsafeBufferPointer { pins.subset(dropped, keys: $0) })
    }

    /// A retried request id found in the ledger: the first attempt's answer, and the commit state when the
    /// retry found it (the first attempt's sequence is at most `lastSeq`, its apply turn below `tickets`).
    private struct Retry {
        let rows: Int, lastSeq: UInt64, tickets: UInt64
        /// Nil unless `record` carries a request id the ledger of `state` (read under the commit lock) holds.
        init?(of record: PushRecord, in state: CommitState) {
            guard let id = record.requestID, let n = state.ledger.rowsUpdated(by: id) else { return nil }
            rows = n; lastSeq = state.lastSeq; tickets = state.applyTickets
        }
    }

    /// Answers a retry once the first attempt's update is durable and applied (it may still be in flight
    /// on another thread), so a retry's acknowledgement promises what the first one's would have.
    private func answer(_ retry: Retry) throws(EngineError) -> Int {
        store.waitForTurns(below: retry.tickets)
        do { try log.waitDurable(retry.lastSeq) } catch { throw poison(error) }
        return retry.rows
    }

    /// The commit of a push: under the commit lock, its sequence, its record queued for the log writer and
    /// the ledger; its rows updated in place in sequence order; then the wait for the record to be durable.
    /// A plain table (no sparsity or DNIS) takes an apply turn with its sequence and updates its rows after
    /// the lock, stripe by stripe in turn (`RowStore.withStripesInTurn`): each row still gets its updates in
    /// sequence order, while the next push pins, and updates the stripes this one has passed, at the same
    /// time. Other tables update their rows inside the lock. `pinned`: the rows, pinned before the commit
    /// (they are unpinned). Nil: the push logs before it pins (`logsBeforePinning`): the rows are pinned
    /// after the enqueue, so the log's write runs during the pin pass as well as the apply (the pin pass is
    /// most of a cached push's own work); a failed read of a row not cached poisons the table (the record is
    /// in the log; a restart replays it). All or nothing; durable on return.
    private func commitPush(_ record: PushRecord, pinned: PinnedRows?) throws(EngineError) -> Int {
        var unpinned = false
        defer { if !unpinned, let pinned { unpin(pinned) } }
        let logRecord = record.logRecord
        let inTurn = sparsity == nil && dnis == nil
        var ticket: UInt64? = nil
        let (seq, repeated, loadedInLock, failureInLock) = commit.withLock { state -> (UInt64, Retry?, Int, EngineError?) in
            if let retry = Retry(of: record, in: state) { return (0, retry, 0, nil) }
            let seq = state.lastSeq + 1
            state.lastSeq = seq
            if inTurn {
                log.enqueue(logRecord, seq: seq)
                ticket = state.applyTickets
                state.applyTickets += 1
                if let id = record.requestID { state.ledger.record(id, rows: record.count) }
                return (seq, nil, 0, nil)
            }
            if let dn = dnis, let pinned {
                let dnisState = dnisBox.withLock { $0 }
                if !dnisState.pruned {
                    // The chain rule before logging: what is logged no longer depends on alpha.
                    for j in 0..<pinned.count { dn.chainRule(pinned.row(j), gradient: record.gradients + j * dim, state: dnisState) }
                }
            }
            log.enqueue(logRecord, seq: seq)
            let pins: PinnedRows
            if let pinned { pins = pinned } else {
                do { pins = try pinRows(UnsafeBufferPointer(start: record.keys, count: record.count)) } catch { return (seq, nil, 0, poison(error)) }
            }
            applyPinned(pins, gradients: record.gradients, seq: seq, replay: false, unpin: true)
            unpinned = true
            if let id = record.requestID { state.ledger.record(id, rows: record.count) }
            return (seq, nil, pins.loaded, nil)
        }
        if let repeated { return try answer(repeated) }
        var loaded = loadedInLock, failure = failureInLock
        if let ticket {
            var pins = pinned
            if pins == nil {
                do { pins = try pinRows(UnsafeBufferPointer(start: record.keys, count: record.count)) } catch { failure = poison(error) }
            }
            if let pins {
                applyPinned(pins, gradients: record.gradients, seq: seq, replay: false, unpin: true, ticket: ticket)
                unpinned = true
                loaded = pins.loaded
            } else {
                store.passTurn(ticket)
            }
        }
        // The record's memory (the caller's) must outlive its write, even when the push failed.
        let written: EngineError?
        do { try log.waitDurable(seq); written = nil } catch { written = poison(error) }
        if let failure { throw failure }
        if let written { throw written }
        if pinned == nil {
            noteCachedPush(loaded: loaded)
            counters.pushesLoggedFirst.add(1, ordering: .relaxed)
        }
        counters.pushes.add(1, ordering: .relaxed)
        counters.rowsPushed.add(UInt64(record.count), ordering: .relaxed)
        return record.count
    }

    /// Rows pinned for a push or a replay: for each key (in the caller's order) its stripe and slot. Pinned
    /// rows are resident, valid and never evicted until `unpin`.
    final class PinnedRows {
        let stripes: UnsafeMutableBufferPointer<Int32>
        let slots: UnsafeMutableBufferPointer<Int32>
        let plan: StripePlan
        unowned let store: RowStore
        /// Rows the pin read from storage (or initialised): not cached when pinned.
        var loaded = 0
        var count: Int { stripes.count }
        init(count: Int, plan: StripePlan, store: RowStore) {
            stripes = .allocate(capacity: count); slots = .allocate(capacity: count)
            self.plan = plan; self.store = store
        }
        deinit { stripes.deallocate(); slots.deallocate() }
        /// The pins of `positions` of this set (in that order), whose keys are `keys`. The pins move to the new
        /// set: each position is unpinned through exactly one of the sets.
        func subset(_ positions: [Int], keys: UnsafeBufferPointer<UInt64>) -> PinnedRows {
            let p = PinnedRows(count: positions.count, plan: store.plan(keys), store: store)
            for (j, i) in positions.enumerated() { p.stripes[j] = stripes[i]; p.slots[j] = slots[i] }
            return p
        }
        /// Row j's memory. Reading it is safe while pinned and inside the commit lock of a table whose pushes
        /// update rows there (DNIS: the only reader; see `commitPush`).
        func row(_ j: Int) -> UnsafeMutablePointer<Float> {
            store.withStripe(Int(stripes[j])) { $0.row(Int(slots[j])) }
        }
    }

    /// Pins the rows of `keys` (distinct): cached rows are pinned where they are; missing rows get a
    /// placeholder, are read from RocksDB (or initialised) with no lock held and filled in. Throws (and
    /// unpins) when a read fails.
    func pinRows(_ keys: UnsafeBufferPointer<UInt64>) throws(EngineError) -> PinnedRows {
        let plan = store.plan(keys)
        let pins = PinnedRows(count: keys.count, plan: plan, store: store)
        var toLoad: [Int32] = []
        store.withStripes(plan) { stripe, s, positions in
            stripe.pinRows(keys.baseAddress!, positions, slots: pins.slots.baseAddress!) { toLoad.append($0) }
            for p in positions { pins.stripes[Int(p)] = Int32(s) }
        }
        guard !toLoad.isEmpty else { return pins }
        let loaded = RowScratch(rowFloats: spec.rowFloats, count: toLoad.count)
        let loadKeys = toLoad.map { keys[Int($0)] }
        do { try readStored(loadKeys, into: loaded) } catch {
            unpin(pins)
            throw error
        }
        counters.rowsLoaded.add(UInt64(toLoad.count), ordering: .relaxed)
        pins.loaded = toLoad.count
        loadKeys.withUnsafeBufferPointer { lk in
            let loadPlan = store.plan(lk)
            store.withStripes(loadPlan) { stripe, _, positions in
                for p in positions {
                    let n = Int(p), j = Int(toLoad[n])
                    let slot = Int(pins.slots[j])
                    if stripe.isLoading(slot) {
                        stripe.fill(slot, from: loaded.row(n), step: loaded.steps[n], seq: loaded.seqs[n], exists: loaded.exists[n], stored: loaded.exists[n])
                    }
                }
            }
        }
        return pins
    }

    /// Unpins rows pinned by `pinRows`; placeholders nobody filled (a failed load) are removed.
    func unpin(_ pins: PinnedRows) {
        store.withStripes(pins.plan) { stripe, _, positions in
            stripe.unpinRows(positions, slots: pins.slots.baseAddress!)
            if stripe.overBudget { stripe.trim() }
        }
    }

    /// Applies update `seq` to pinned rows (gradient row j for pin j): in place, each stripe locked while
    /// its rows are written. With `replay`, rows whose sequence already covers `seq` are skipped. Rows are
    /// updated in sequence order because the caller holds the commit lock with every apply turn passed
    /// (`withCommitApplied`), or passes `ticket`, the apply turn its sequence took.
    func applyPinned(_ pins: PinnedRows, gradients: UnsafePointer<Float>, seq: UInt64, replay: Bool, unpin: Bool = false, ticket: UInt64? = nil) {
        let dim = spec.dim
        let opt = optimizer, sp = sparsity, dn = dnis
        var newlyDirty = 0
        let plain = sp == nil && dn == nil
        func applyStripe(_ stripe: RowStripe, _ positions: UnsafeBufferPointer<Int32>) {
            if plain {
                newlyDirty += stripe.applyRows(positions, slots: pins.slots.baseAddress!, seq: seq, skipCovered: replay, unpin: unpin,
                                               source: gradients, sourceStride: dim * 4) { row, j, step, _ in
                    opt.apply(row, gradient: gradients + j * dim, step: &step)
                }
            } else {
                newlyDirty += stripe.applyRows(positions, slots: pins.slots.baseAddress!, seq: seq, skipCovered: replay, unpin: unpin,
                                               source: gradients, sourceStride: dim * 4) { row, j, step, before in
                    let g = gradients + j * dim
                    opt.apply(row, gradient: g, step: &step)
                    if let sp { sp.afterUpdate(row, gradient: g, pushesSinceRowUpdate: seq - before) }
                    if let dn { dn.afterUpdate(row) }
                }
            }
        }
        if let ticket {
            store.withStripesInTurn(pins.plan, ticket: ticket) { stripe, _, positions in applyStripe(stripe, positions) }
        } else {
            store.withStripes(pins.plan) { stripe, _, positions in applyStripe(stripe, positions) }
        }
        if newlyDirty > 0 { dirtyApprox.add(newlyDirty, ordering: .relaxed) }
    }

    /// Back-pressure: when the cache is full, dirty rows are over the hard limit and rows needed room since
    /// the last push checked (an insert found the cache full: new rows need room that only written rows can
    /// give, and the flusher is behind), the push writes rows itself down to the low watermark before going
    /// on, waiting first for a flush in progress (the flush lock). Memory stays bounded and the push pays for
    /// it in latency (counted in `backpressureFlushes`). While no row needs room (every row pushed is cached,
    /// as in a table the cache holds whole), dirty rows cost nothing and wait for the next checkpoint: a push
    /// never waits for a checkpoint's writes then.
    private func waitForFlusherIfOverLimit() throws(EngineError) {
        let limit = tuning.dirtyHardLimit
        guard limit > 0, dirtyApprox.load(ordering: .relaxed) > limit, store.budget.full else { return }
        let demands = store.budget.roomDemands
        guard roomDemandsSeenByPushes.exchange(demands, ordering: .relaxed) != demands else { return }
        counters.backpressureFlushes.add(1, ordering: .relaxed)
        let target = tuning.dirtyLowWatermark
        try flushing.withLock { (fs) throws(EngineError) in
            guard !fs.dropped, dirtyApprox.load(ordering: .relaxed) > limit else { return }
            try flushDirty(&fs, enough: { $0 <= target })
        }
    }

    // MARK: reading stored rows

    /// Positions of `keys` in storage order (slot, then key): a counting sort over the 4096 slots, then an
    /// insertion sort inside each slot's (short) run.
    static func storageOrder(_ keys: [UInt64], slots: [UInt16]) -> [Int] {
        var starts = [Int](repeating: 0, count: RowAddressing.slotCount + 1)
        for s in slots { starts[Int(s) + 1] += 1 }
        for i in 0..<RowAddressing.slotCount { starts[i + 1] += starts[i] }
        var next = starts
        var order = [Int](repeating: 0, count: keys.count)
        for (i, s) in slots.enumerated() { order[next[Int(s)]] = i; next[Int(s)] += 1 }
        for b in 0..<RowAddressing.slotCount where starts[b + 1] - starts[b] > 1 {
            var i = starts[b] + 1
            while i < starts[b + 1] {
                let v = order[i]
                var j = i - 1
                while j >= starts[b] && keys[order[j]] > keys[v] { order[j + 1] = order[j]; j -= 1 }
                order[j + 1] = v
                i += 1
            }
        }
        return order
    }

    /// Reads `keys` from RocksDB into `scratch` rows 0..<keys.count (stored rows decoded, absent rows
    /// initialised), in sorted batched MultiGets: the keys in storage order, cut into up to
    /// `tuning.readThreads` contiguous parts of at least `tuning.rowsPerReadThread` keys read at once (the
    /// caller's thread reads one). Each row is read by exactly one part, so parts share no state. Touches no
    /// cached row.
    func readStored(_ keys: [UInt64], into scratch: RowScratch) throws(EngineError) {
        let count = keys.count
        guard count > 0 else { return }
        // RocksDB key order is (slot, key): positions counting-sorted by slot, then by key within a slot.
        let slots = keys.map { addressing.slot(ofRowKey: $0) }
        let order = Self.storageOrder(keys, slots: slots)
        let read = StoredRowsRead(count: count)
        defer { read.deallocate() }
        for (n, j) in order.enumerated() { RowKey.write(slot: slots[j], key: keys[j], to: read.keyBytes + n * RowKey.length) }
        let parts = max(1, min(tuning.readThreads, count / max(1, tuning.rowsPerReadThread)))
        let name = spec.name, codec = codec, db = db, family = family
        let readPart = { (part: Int) -> EngineError? in
            let lo = part * count / parts, hi = (part + 1) * count / parts
            do {
                try db.sortedMultiGet(family, keys: UnsafeRawBufferPointer(start: read.keyBytes + lo * RowKey.length, count: (hi - lo) * RowKey.length),
                                      keyLength: RowKey.length, count: hi - lo) { n, bytes in
                    let j = order[lo + n]
                    do { (read.steps[j], read.seqs[j]) = try codec.decode(bytes, into: scratch.row(j)) } catch let e as RowCodecError {
                        throw EngineError.storage("table '\(name)' row \(keys[j]): \(e.description)")
                    }
                    read.found[j] = true
                }
                return nil
            } catch let e as EngineError { return e } catch { return .storage("table '\(name)': \(error)") }
        }
        if parts == 1 {
            if let e = readPart(0) { throw e }
        } else {
            let failures = LockedBox([EngineError?](repeating: nil, count: parts))
            // The parts write disjoint positions of `read` and `scratch`, and this thread waits for all of them.
            let box = UncheckedSendable(readPart)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                if let e = box.value(part) { failures.withLock { $0[part] = e } }
            }
            if let e = failures.withLock({ $0.compactMap { $0 }.first }) { throw e }
        }
        let dnisState = dnis.map { _ in dnisBox.withLock { $0 } }
        for j in 0..<count {
            if read.found[j] {
                scratch.steps[j] = read.steps[j]; scratch.seqs[j] = read.seqs[j]; scratch.exists[j] = true
            } else {
                initialRow(scratch.row(j), key: keys[j], dnisState: dnisState); scratch.steps[j] = 0; scratch.seqs[j] = 0; scratch.exists[j] = false
            }
        }
    }

    /// The in-memory form of a row never written: initial weights, fresh optimizer state, mask / block.
    func initialRow(_ row: UnsafeMutablePointer<Float>, key: UInt64, dnisState: DnisState?) {
        initializer.fill(row, rowKey: key)
        optimizer.initializeState(row)
        sparsity?.initialize(row, rowKey: key)
        if let dnis, let dnisState { dnis.initialize(row, state: dnisState) }
    }

    // MARK: flushing and checkpoints

    /// Writes dirty rows whose updates are durable to RocksDB (without RocksDB's WAL), in key order, at most
    /// `limit` per batch, sweeping the stripes once from where the previous sweep stopped (`fs.cursor`), so
    /// every dirty row is reached in one pass whatever pushes keep dirtying; stops early when
    /// `enough(dirtyLeft)` says so. Only rows first dirtied at or before `cutoff`, and rows RocksDB lacks
    /// updates of that only the checkpoint snapshot holds (`RowState.snapshotHeld`: their first-dirty sequence
    /// no longer says so), are taken.
    /// Rows updated while being written stay dirty. Returns the rows written. Runs under `flushing`'s lock
    /// (`fs`).
    @discardableResult
    func flushDirty(_ fs: inout FlushState, limit: Int = 16384, firstDirtyThrough cutoff: UInt64 = .max, enough: (Int) -> Bool = { _ in false }) throws(EngineError) -> Int {
        let stripeCount = store.stripeCount
        let start = fs.cursor
        var visited = 0          // stripes finished this sweep
        var total = 0
        while visited <= stripeCount {
            // Updates committed so far are durable (or being written) before their rows may be picked.
            let durable = log.durableSequence
            var picked = [[Int32]](repeating: [], count: stripeCount)
            var pickedCount = 0
            let buffer = RowBatch(codec: codec, capacity: limit)
            var newRows = 0
            while pickedCount < limit && visited <= stripeCount {
                let s = fs.cursor.stripe
                // The sweep's first stripe is visited twice: from its start slot, and at the end up to it.
                let end = visited == stripeCount ? start.slot : Int.max
                let stoppedAt: Int? = store.withStripe(s) { stripe in
                    guard stripe.dirtyCount > 0 else { return nil }
                    return stripe.scanLive(from: fs.cursor.slot, until: end) { slot in
                        guard pickedCount < limit else { return false }
                        let state = stripe.state(slot)
                        guard state & (RowState.dirty | RowState.flushing) == RowState.dirty, stripe.seq(slot) <= durable,
                              stripe.firstDirtySeq(slot) <= cutoff || state & RowState.snapshotHeld != 0 else { return true }
                        stripe.beginFlush(slot)
                        let key = stripe.key(slot)
                        buffer.add(slot: addressing.slot(ofRowKey: key), key: key, row: stripe.row(slot), step: stripe.step(slot), seq: stripe.seq(slot))
                        if !stripe.has(slot, RowState.stored) { newRows += 1 }
                        picked[s].append(Int32(slot))
                        pickedCount += 1
                        return true
                    }
                }
                if let stoppedAt {
                    fs.cursor.slot = stoppedAt
                } else {
                    visited += 1
                    fs.cursor = (stripe: (s + 1) % stripeCount, slot: 0)
                }
            }
            if pickedCount == 0 { return total }
            fs.memtableHoldsRows = true
            var written = true
            var failure: EngineError? = nil
            let marksStale = newRows > 0 && !fs.snapshotStoredFlagsStale ? fs.snapshot : nil
            do { try writeRows(buffer, newRows: newRows, markingStale: marksStale); if marksStale != nil { fs.snapshotStoredFlagsStale = true } } catch { written = false; failure = .storage("table '\(spec.name)' flush: \(error)") }
            // Mark clean what was written (rows updated meanwhile stay dirty).
            var cleaned = 0
            for s in 0..<stripeCount where !picked[s].isEmpty {
                store.withStripe(s) { stripe in
                    for slot in picked[s] {
                        let wasDirty = stripe.isDirty(Int(slot))
                        stripe.endFlush(Int(slot), written: written)
                        if wasDirty && !stripe.isDirty(Int(slot)) { cleaned += 1 }
                    }
                    if stripe.overBudget { stripe.trim() }
                }
            }
            dirtyApprox.subtract(cleaned, ordering: .relaxed)
            if let failure { throw failure }
            total += pickedCount
            counters.rowsFlushed.add(UInt64(pickedCount), ordering: .relaxed)
            if enough(dirtyApprox.load(ordering: .relaxed)) { return total }
        }
        return total
    }

    /// Writes `rows` (in key order, without RocksDB's WAL: the update log covers them) and the stored-row
    /// counter raised by `newRows` in one batch. Caller holds the flush lock or the table exclusively. The
    /// first write of rows RocksDB did not hold after checkpoint snapshot `markingStale` records, in the same
    /// batch, that the snapshot's `stored` flags are stale (see `loadSnapshot`).
    private func writeRows(_ rows: RowBatch, newRows: Int, markingStale snapshot: UInt64? = nil) throws {
        let b = WriteBatch()
        rows.addSorted(to: b, family: family)
        var count = storedRows + UInt64(newRows)
        b.put(family, key: Self.storedRowsKey, value: withUnsafeBytes(of: &count) { Array($0) })
        if var id = snapshot { b.put(family, key: Self.snapshotStaleKey, value: withUnsafeBytes(of: &id) { Array($0) }) }
        try db.writeUnlogged(b)
        storedRowsCount.store(count, ordering: .relaxed)
    }

    /// Whether a checkpoint is due: the log past `logBytesLimit` since the last one, or changes older than
    /// `maxInterval` seconds.
    func checkpointDue(logBytesLimit: Int, maxInterval: Double) -> Bool {
        let (last, checkpointed, lastCheckpoint) = commit.withLock { ($0.lastSeq, $0.checkpointSeq, $0.lastCheckpoint) }
        guard last > checkpointed else { return false }
        return log.bytesSinceCheckpoint >= UInt64(logBytesLimit) || Date().timeIntervalSince(lastCheckpoint) >= maxInterval
    }

    /// One pass of the background flusher: a checkpoint when due; otherwise
    /// - a table without a push for `tuning.idleFlushSeconds` (training paused or over, reads go on) has, when
    ///   rows need room (some stripe was full when a row arrived since the last pass), every dirty row
    ///   written, so CLOCK may evict any cold row for the rows reads bring in: a push burst's leftovers do not
    ///   hold a quarter of the cache against the readers' hot set (the next checkpoint would write them
    ///   anyway); and its memtable, once rows were written to it, is flushed to SST files, so the reads that
    ///   miss the cache stop searching a skip list for rows that are almost never in it;
    /// - a table being pushed to has, when rows need room and dirty rows are over the low watermark, dirty
    ///   rows written down to half of it.
    /// A table whose rows all fit is left alone between checkpoints. A table without a push or operation for
    /// `tuning.spareIdleSeconds` has its update log's spare segments deleted (up to `--log-recycle-mb` of
    /// disk a burst left behind); pushes that come back append new segments until the next checkpoint
    /// retires some again.
    func flusherPass(logBytesLimit: Int, maxInterval: Double, evictionAllowed: Bool = true) throws(EngineError) {
        // A poisoned table waits for the restart that replays its log (and refuses checkpoints meanwhile).
        if poisoned.withLock({ $0 }) != nil { return }
        let lastSeq = commit.withLock { $0.lastSeq }
        if spec.eviction != nil {
            let rows = rowCount
            if rowCap > 0 { rowsApprox.store(Int(clamping: rows), ordering: .relaxed) }
            let now = Date().timeIntervalSince1970
            clock.withLock { $0.note(seq: lastSeq, at: now) }
            if evictionAllowed && evictionDue(now: now, rows: rows) { _ = try evict(onDemand: false); return }
        }
        if checkpointDue(logBytesLimit: logBytesLimit, maxInterval: maxInterval) {
            if takesSnapshots { try snapshotCheckpoint() } else { try checkpoint() }
            return
        }
        let dirty = dirtyApprox.load(ordering: .relaxed)
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        try flushing.withLock { (fs) throws(EngineError) in
            guard !fs.dropped else { return }
            if lastSeq != fs.lastSeqSeen { fs.lastSeqSeen = lastSeq; fs.lastSeqChanged = now; fs.sparesDeleted = false }
            if !fs.sparesDeleted && now - fs.lastSeqChanged >= tuning.spareIdleSeconds {
                fs.sparesDeleted = true
                log.deleteSpares()
                RowSnapshotFile.deleteSpare(in: log.directory)
            }
            let idle = now - fs.lastSeqChanged >= tuning.idleFlushSeconds
            let demands = store.budget.roomDemands
            if idle {
                if dirty > 0 && demands != fs.roomDemandsSeen {
                    fs.roomDemandsSeen = demands
                    try flushDirty(&fs)
                }
                if fs.memtableHoldsRows {
                    // Reads of rows the cache misses would search the memtable's skip list for rows that are
                    // almost never there: write it to SST files once the writes have stopped.
                    do { try db.flush(family) } catch { throw .storage("table '\(spec.name)' memtable flush: \(error)") }
                    fs.memtableHoldsRows = false
                }
                return
            }
            guard dirty > tuning.dirtyLowWatermark, demands != fs.roomDemandsSeen else { return }
            fs.roomDemandsSeen = demands
            let target = tuning.dirtyLowWatermark / 2
            try flushDirty(&fs, enough: { $0 <= target })
        }
    }

    /// Makes RocksDB hold every durable update: flushes all dirty rows, flushes the family to SST files,
    /// records the checkpoint sequence (synced, with the request ledger), rotates the log and deletes the
    /// segments the checkpoint covers. Runs beside pushes. While a snapshot is the checkpoint, the sweep also
    /// writes every row RocksDB lacks updates of that only the snapshot holds (`RowState.snapshotHeld`,
    /// whatever the row's first-dirty sequence), and the marker ends the snapshot; if such a row is left
    /// (updated and not yet durable at each pass), the rest is written with the pushes held
    /// (`supersedeSnapshot`).
    func checkpoint() throws(EngineError) {
        try startingCheckpoint { (fs, committed) throws(EngineError) in
            // Every row dirty now was first dirtied at or before `committed` (or is snapshot-held): sweep until
            // none is left (a row updated again while it was written, or not yet durable when reached, needs
            // one more).
            beforeCheckpointSweep?()
            for _ in 0..<4 {
                let committedNow = commit.withLock { $0.lastSeq }
                do { try log.waitDurable(committedNow) } catch { throw .storage("table '\(spec.name)': \(error)") }
                if try flushDirty(&fs, firstDirtyThrough: committed) == 0 { break }
            }
            let (target, snapshotHeld) = checkpointTarget()
            if snapshotHeld > 0 && fs.snapshot != nil {
                // Rows only the snapshot holds are still unwritten: write them with no push running.
                let target = try withCommitApplied { (state) throws(EngineError) -> UInt64 in
                    try store.withAll { (stripes) throws(EngineError) -> UInt64 in
                        try supersedeSnapshot(&fs, &state, stripes)
                        return state.checkpointSeq
                    }
                }
                trimLog(through: target)
                log.markCheckpoint()
                return
            }
            do { try db.flush(family) } catch { throw .storage("table '\(spec.name)' checkpoint: \(error)") }
            fs.memtableHoldsRows = false
            do {
                let b = WriteBatch()
                putCheckpointMarker(b, through: target, ledger: commit.withLock { $0.ledger.encoded })
                try db.write(b, sync: true)
            } catch { throw .storage("table '\(spec.name)' checkpoint: \(error)") }
            commit.withLock { $0.checkpointSeq = target; $0.lastCheckpoint = Date() }
            // The marker names no snapshot: every update one held is in RocksDB now.
            if fs.snapshot != nil { endSnapshot(&fs) }
            trimLog(through: target)
            log.markCheckpoint()
            counters.checkpoints.add(1, ordering: .relaxed)
        }
    }

    /// Runs `body(flush state, committed)` as a checkpoint starts: the table healthy (a poisoned table may
    /// have a durable record it did not apply, which no checkpoint may cover), under the flush lock, every
    /// update committed so far (through `committed`) durable (before its rows may be written), the log
    /// rotated. Nothing when the table was dropped.
    private func startingCheckpoint(_ body: (inout FlushState, _ committed: UInt64) throws(EngineError) -> Void) throws(EngineError) {
        try checkHealthy()
        try flushing.withLock { (fs) throws(EngineError) in
            guard !fs.dropped else { return }
            let committed = commit.withLock { $0.lastSeq }
            do { try log.waitDurable(committed) } catch { throw .storage("table '\(spec.name)': \(error)") }
            log.rotate()
            try body(&fs, committed)
        }
    }

    /// Whether the periodic checkpoint writes a snapshot file (`snapshotCheckpoint`): on unless turned off,
    /// for tables whose operations never rewrite rows behind the update log's back between checkpoints (no
    /// eviction policy, DNIS or dynamic sparsity: their rounds run exclusive sections, each of which would
    /// first have to write the snapshot's rows to RocksDB).
    var takesSnapshots: Bool { tuning.checkpointSnapshots && spec.eviction == nil && spec.dnis == nil && spec.sparsity == nil }

    /// A checkpoint that writes the table's dirty rows to a snapshot file instead of RocksDB: every dirty row
    /// (key, sequence, step, floats) is copied, stripe by stripe under its lock, into the file and marked
    /// covered (still dirty toward RocksDB, so never evicted, but holding no update the checkpoint lacks);
    /// once every copied image is durable in the log and the file is synced, the checkpoint marker (its
    /// sequence and the snapshot's id, synced, with the request ledger) replaces the last one, the previous
    /// snapshot file is deleted and the log is trimmed. The checkpoint's sequence is the highest every update
    /// through which is in RocksDB or the file: at most what was applied and durable when the sweep ended,
    /// and below the first update of any row dirtied or updated again after the sweep passed it.
    ///
    /// Recovery installs the file's rows (dirty, covered) and replays the log after the sequence onto them.
    /// A row the flusher writes to RocksDB after the snapshot is newer there, and the log after the sequence
    /// holds every update between the two images, so replay brings the snapshot's older image up to date.
    /// Anything that changes rows in RocksDB outside the log (an exclusive section: imports, migrations,
    /// rewrites), and every reader that needs RocksDB complete (exports, migrations, a follower's copy, a
    /// graceful stop), first takes a checkpoint in RocksDB (`checkpoint`, `supersedeSnapshot`), which ends
    /// the snapshot.
    ///
    /// Cost: one copy of each dirty row and a sequential write, against a memtable insert, a flush and a
    /// compaction per row through RocksDB; a table the cache holds whole is rewritten whole by every
    /// checkpoint, so this is the checkpoint's whole cost.
    func snapshotCheckpoint() throws(EngineError) {
        try startingCheckpoint { (fs, _) throws(EngineError) in
            let previousTarget = commit.withLock { $0.checkpointSeq }
            let id = fs.nextSnapshotID
            fs.nextSnapshotID += 1
            var maxSeq: UInt64 = 0
            do {
                let writer = try RowSnapshotWriter(directory: log.directory, id: id, rowFloats: spec.rowFloats, bytesPerSecond: tuning.snapshotBytesPerSecond)
                for s in 0..<store.stripeCount {
                    // The stripe in parts of at most `snapshotPartRows` dirty rows, its lock released between
                    // them: a push touching the stripe waits for one part's copy, not the whole stripe's.
                    // A row that became dirty behind the scan meanwhile is left uncovered, which only lowers
                    // the checkpoint's target (`checkpointTarget`), as rows dirtied in stripes already swept.
                    var from: Int? = 0
                    while let start = from {
                        // Room for the part before the lock is taken (nothing grows or faults in under it).
                        writer.reserve(Self.snapshotPartRows)
                        from = store.withStripe(s) { stripe -> Int? in
                            guard stripe.dirtyCount > 0 else { return nil }
                            var added = 0
                            return stripe.scanLive(from: start) { slot in
                                guard stripe.isDirty(slot) else { return true }
                                if added == Self.snapshotPartRows { return false }
                                let seq = stripe.seq(slot)
                                writer.add(key: stripe.key(slot), seq: seq, step: stripe.step(slot), stored: stripe.has(slot, RowState.stored), row: stripe.row(slot))
                                if seq > maxSeq { maxSeq = seq }
                                stripe.cover(slot)
                                added += 1
                                return true
                            }
                        }
                        try writer.endChunk()
                        if from != nil { betweenSnapshotParts?() }
                    }
                }
                // The images copied may hold updates applied but not yet durable: none may be in a checkpoint
                // before its record is.
                try log.waitDurable(maxSeq)
                try writer.finish()
                let target = checkpointTarget().target
                // Rows the flusher wrote since the last checkpoint are in the memtable only (no RocksDB WAL).
                if fs.memtableHoldsRows { try db.flush(family); fs.memtableHoldsRows = false }
                let b = WriteBatch()
                putCheckpointMarker(b, through: target, ledger: commit.withLock { $0.ledger.encoded }, snapshot: id)
                try db.write(b, sync: true)
                commit.withLock { $0.checkpointSeq = target; $0.lastCheckpoint = Date() }
                fs.snapshot = id; fs.snapshotStoredFlagsStale = false
                // The previous snapshot's file is kept for the next one to write over while the table
                // recycles its log segments (`logRecycleBytes`), deleted otherwise.
                RowSnapshotFile.deleteAll(in: log.directory, except: id, keepingSpare: tuning.logRecycleBytes > 0)
                trimLog(through: target)
                log.markCheckpoint()
                counters.checkpoints.add(1, ordering: .relaxed)
                counters.snapshotCheckpoints.add(1, ordering: .relaxed)
                counters.snapshotRows.add(writer.rows, ordering: .relaxed)
                counters.snapshotBytes.store(writer.bytes, ordering: .relaxed)
                if writer.reused { counters.snapshotsRecycled.add(1, ordering: .relaxed) }
            } catch {
                // Not a checkpoint: the rows this pass covered are not covered by anything the marker names;
                // the log holds every record after the last checkpoint, so they are dirty from there.
                let previousSnapshotLive = fs.snapshot != nil
                for s in 0..<store.stripeCount { store.withStripe(s) { $0.uncoverAll(firstDirty: previousTarget + 1, keepingSnapshotHeld: previousSnapshotLive) } }
                RowSnapshotFile.deleteAll(in: log.directory, except: fs.snapshot)
                throw .storage("table '\(spec.name)' snapshot checkpoint: \(error)")
            }
        }
    }

    /// Inside an exclusive section, when the last checkpoint is a snapshot: writes every dirty row (the
    /// snapshot's included) to RocksDB and records a checkpoint in RocksDB alone through the last sequence,
    /// then deletes the snapshot file, so what the section writes to RocksDB directly can never be
    /// overlaid by an older snapshot image after a restart. (The log is trimmed at the next checkpoint.)
    private func supersedeSnapshot(_ fs: inout FlushState, _ state: inout CommitState, _ stripes: [RowStripe]) throws(EngineError) {
        guard let id = fs.snapshot else { return }
        try flushAllExclusive(stripes, lastSeq: state.lastSeq, markingStale: fs.snapshotStoredFlagsStale ? nil : id)
        do {
            let b = WriteBatch()
            putCheckpointMarker(b, through: state.lastSeq, ledger: state.ledger.encoded)
            try db.write(b, sync: true)
        } catch { throw .storage("table '\(spec.name)' checkpoint: \(error)") }
        state.checkpointSeq = state.lastSeq; state.lastCheckpoint = Date()
        endSnapshot(&fs)
        counters.checkpoints.add(1, ordering: .relaxed)
        counters.snapshotsSuperseded.add(1, ordering: .relaxed)
    }

    /// Forgets the table's snapshot once a checkpoint marker without it is durable: its file deleted, its
    /// bytes no longer counted. Caller holds the flush lock (`fs`).
    private func endSnapshot(_ fs: inout FlushState) {
        fs.snapshot = nil; fs.snapshotStoredFlagsStale = false
        RowSnapshotFile.deleteAll(in: log.directory, except: nil)
        counters.snapshotBytes.store(0, ordering: .relaxed)
    }

    /// When the last checkpoint is a snapshot, takes a checkpoint in RocksDB (a reader is about to need
    /// RocksDB to hold every update the log no longer does: a follower's copy).
    func checkpointInStoreIfSnapshot() throws(EngineError) {
        if flushing.withLock({ $0.snapshot }) != nil { try checkpoint() }
    }

    /// The highest sequence every update through which is in RocksDB or in the snapshot being written: at
    /// most what was applied when it is called (a push queues its record before its rows are updated, so a
    /// record may be durable before its rows are: `withCommitApplied` waits for every apply turn) and durable, and one
    /// less than the oldest first-dirty sequence of a row still dirty and not covered; with the count of
    /// rows RocksDB lacks snapshot-held updates of (while any is left, no checkpoint in RocksDB alone may be
    /// recorded).
    private func checkpointTarget() -> (target: UInt64, snapshotHeld: Int) {
        let applied = withCommitApplied { $0.lastSeq }
        var target = min(log.durableSequence, applied), snapshotHeld = 0
        for s in 0..<store.stripeCount {
            let (oldest, held) = store.withStripe(s) { $0.dirtySequences }
            snapshotHeld += held
            if let oldest { target = min(target, oldest - 1) }
        }
        return (target, snapshotHeld)
    }

    /// Adds the checkpoint marker (every logged update through `seq` is in RocksDB, or in snapshot file
    /// `snapshot` when given) and the request ledger (so the ids of the records it covers survive the log
    /// segments deleted after it) to `batch`, and clears the stale-flags record of an earlier snapshot.
    func putCheckpointMarker(_ batch: WriteBatch, through seq: UInt64, ledger: [UInt8], snapshot: UInt64? = nil) {
        var marker = withUnsafeBytes(of: seq) { Array($0) }
        if let snapshot { marker += withUnsafeBytes(of: snapshot) { Array($0) } }
        batch.put(db.defaultFamily, key: identity.markerKey, value: marker)
        batch.delete(family, key: Self.snapshotStaleKey)
        batch.put(db.defaultFamily, key: identity.ledgerKey, value: ledger)
        if let admission { batch.put(db.defaultFamily, key: identity.admissionKey, value: admission.encoded) }
        if spec.eviction != nil { batch.put(db.defaultFamily, key: identity.clockKey, value: clock.withLock { $0.encoded }) }
    }

    // MARK: exclusive sections

    /// Runs `body` under the commit lock once every push that took an apply turn (`commitPush`) has updated
    /// its rows: every update through `lastSeq` is then applied, as for tables whose pushes apply inside
    /// the lock. Anything that writes rows under the commit lock, or reads `lastSeq` as applied, uses this.
    func withCommitApplied<R, E: Error>(_ body: (inout CommitState) throws(E) -> R) throws(E) -> R {
        try commit.withLock { (state) throws(E) -> R in
            store.waitForTurns(below: state.applyTickets)
            return try body(&state)
        }
    }

    /// Runs `body` with the table to itself: no flush, no commit, no row read or written by anyone else
    /// (the flush lock, the commit lock and every stripe held). Rows pinned by pushes waiting to commit stay
    /// pinned; `body` must not remove them.
    func withExclusive<R>(_ body: (inout CommitState, [RowStripe]) throws(EngineError) -> R) throws(EngineError) -> R {
        try checkHealthy()
        return try flushing.withLock { (fs) throws(EngineError) -> R in
            if fs.dropped { throw .unknownTable(spec.name) }
            return try withCommitApplied { (state) throws(EngineError) -> R in
                try store.withAll { (stripes) throws(EngineError) -> R in
                    if fs.snapshot != nil { try supersedeSnapshot(&fs, &state, stripes) }
                    return try body(&state, stripes)
                }
            }
        }
    }

    /// The cached slot of `key` inside an exclusive section.
    func cached(_ key: UInt64, _ stripes: [RowStripe]) -> (RowStripe, Int)? {
        let stripe = stripes[store.stripe(of: key)]
        guard let slot = stripe.find(key), !stripe.isLoading(slot) else { return nil }
        return (stripe, slot)
    }

    /// Reads rows into `scratch` inside an exclusive section: cached rows copied, stored rows decoded, unseen
    /// rows initialised.
    func load(_ keys: [UInt64], into scratch: RowScratch, _ stripes: [RowStripe]) throws(EngineError) {
        var fromStorage: [Int] = []
        for (j, k) in keys.enumerated() {
            if let (stripe, slot) = cached(k, stripes) {
                scratch.row(j).update(from: stripe.row(slot), count: spec.rowFloats)
                scratch.steps[j] = stripe.step(slot); scratch.seqs[j] = stripe.seq(slot); scratch.exists[j] = stripe.exists(slot)
            } else {
                fromStorage.append(j)
            }
        }
        guard !fromStorage.isEmpty else { return }
        let rows = RowScratch(rowFloats: spec.rowFloats, count: fromStorage.count)
        try readStored(fromStorage.map { keys[$0] }, into: rows)
        for (n, j) in fromStorage.enumerated() {
            scratch.row(j).update(from: rows.row(n), count: spec.rowFloats)
            scratch.steps[j] = rows.steps[n]; scratch.seqs[j] = rows.seqs[n]; scratch.exists[j] = rows.exists[n]
        }
    }

    /// Inside an exclusive section: makes every committed update durable and writes every dirty row, so
    /// RocksDB holds the whole table (the family flushed to SST files).
    func flushAllExclusive(_ stripes: [RowStripe], lastSeq: UInt64, markingStale snapshot: UInt64? = nil) throws(EngineError) {
        // In recovery every replayed record is durable (it was read from the log, which is not open yet).
        if !isRecovering { do { try log.waitDurable(lastSeq) } catch { throw .storage("table '\(spec.name)': \(error)") } }
        let batch = RowBatch(codec: codec, capacity: stripes.reduce(0) { $0 + $1.dirtyCount })
        var newRows = 0
        var slots: [(RowStripe, Int)] = []
        for stripe in stripes where stripe.dirtyCount > 0 {
            stripe.forEachLive { slot in
                guard stripe.isDirty(slot) else { return }
                let key = stripe.key(slot)
                batch.add(slot: addressing.slot(ofRowKey: key), key: key, row: stripe.row(slot), step: stripe.step(slot), seq: stripe.seq(slot))
                if !stripe.has(slot, RowState.stored) { newRows += 1 }
                slots.append((stripe, slot))
            }
        }
        do {
            if !slots.isEmpty { try writeRows(batch, newRows: newRows, markingStale: newRows > 0 ? snapshot : nil) }
            try db.flush(family)
        } catch { throw .storage("table '\(spec.name)': \(error)") }
        for (stripe, slot) in slots {
            stripe.beginFlush(slot)
            stripe.endFlush(slot, written: true)
        }
        dirtyApprox.subtract(slots.count, ordering: .relaxed)
        counters.rowsFlushed.add(UInt64(slots.count), ordering: .relaxed)
    }

    /// Runs `body` inside an exclusive section with the table complete in RocksDB (every dirty row written,
    /// the family flushed). Rows `body` adds to the batch are written synchronously, through RocksDB's WAL, in
    /// one batch with a checkpoint marker covering every logged update, so the rewrite is atomic and durable,
    /// and log replay after a crash starts after it. `body` keeps cached copies of rewritten rows current. A
    /// rewrite operation `body` logged (`commitOperation`) is recorded as the last rewrite; if the batch then
    /// fails, the table is poisoned (a restart replays the operation). In recovery the log is neither rotated
    /// nor trimmed (the records being replayed are still needed there until the next checkpoint).
    func rewriteQuiesced<R>(_ body: (WriteBatch, inout CommitState, [RowStripe]) throws(EngineError) -> R) throws(EngineError) -> R {
        let (result, target) = try withExclusive { (state, stripes) throws(EngineError) -> (R, UInt64) in
            if !isRecovering { log.rotate() }
            try flushAllExclusive(stripes, lastSeq: state.lastSeq)
            let b = WriteBatch()
            let before = state.lastSeq
            let r = try body(b, &state, stripes)
            let logged = state.lastSeq != before
            if logged {
                state.rewriteSeq = state.lastSeq
                b.put(db.defaultFamily, key: identity.rewriteKey, value: withUnsafeBytes(of: state.lastSeq) { Array($0) })
            }
            putCheckpointMarker(b, through: state.lastSeq, ledger: state.ledger.encoded)
            var count = storedRows
            b.put(family, key: Self.storedRowsKey, value: withUnsafeBytes(of: &count) { Array($0) })
            do { try db.write(b, sync: true) } catch {
                let e = EngineError.storage("table '\(spec.name)': \(error)")
                throw logged ? poison(e) : e
            }
            state.checkpointSeq = state.lastSeq; state.lastCheckpoint = Date()
            return (r, state.lastSeq)
        }
        if !isRecovering {
            trimLog(through: target)
            log.markCheckpoint()
        }
        counters.checkpoints.add(1, ordering: .relaxed)
        return result
    }

    /// Changes the stored-row counter (rows added to or deleted from RocksDB by an exclusive section).
    func adjustStoredRows(by delta: Int) {
        storedRowsCount.store(UInt64(max(0, Int(storedRows) + delta)), ordering: .relaxed)
    }

    // MARK: lifecycle and statistics

    /// Marks the table dropped (the caller closed the gate), forgets cached rows and deletes its log.
    func markDropped() {
        flushing.withLock { fs in
            store.withAll { stripes in stripes.forEach { $0.removeAll() } }
            fs.dropped = true
            log.destroy()
        }
    }

    /// Stops using the table without deleting anything (the engine is closing; the caller closed the gate).
    func close() {
        flushing.withLock { fs in
            store.withAll { stripes in stripes.forEach { $0.removeAll() } }
            fs.dropped = true
            log.close()
        }
    }

    func snapshot() -> TableSnapshot {
        let c = store.counts
        let stored = storedRows
        let cnt = counters
        let opened = log.segmentsOpened
        return TableSnapshot(spec: spec, rows: stored + UInt64(c.unstored), cachedRows: UInt64(c.live), dirtyRows: UInt64(c.dirty),
                             cacheCapacityRows: UInt64(store.capacity), bytesOnDisk: db.bytesUsed(family), logBytes: log.totalBytes,
                             pulls: cnt.pulls.load(ordering: .relaxed), pushes: cnt.pushes.load(ordering: .relaxed),
                             rowsPulled: cnt.rowsPulled.load(ordering: .relaxed), rowsPushed: cnt.rowsPushed.load(ordering: .relaxed),
                             cacheHits: cnt.cacheHits.load(ordering: .relaxed), cacheMisses: cnt.cacheMisses.load(ordering: .relaxed),
                             checkpoints: cnt.checkpoints.load(ordering: .relaxed), rowsFlushed: cnt.rowsFlushed.load(ordering: .relaxed),
                             backpressureFlushes: cnt.backpressureFlushes.load(ordering: .relaxed),
                             rowsLoaded: cnt.rowsLoaded.load(ordering: .relaxed), evictions: c.evictions,
                             pushesLoggedFirst: cnt.pushesLoggedFirst.load(ordering: .relaxed), pullsSplit: cnt.pullsSplit.load(ordering: .relaxed),
                             snapshotCheckpoints: cnt.snapshotCheckpoints.load(ordering: .relaxed), snapshotRows: cnt.snapshotRows.load(ordering: .relaxed),
                             snapshotsSuperseded: cnt.snapshotsSuperseded.load(ordering: .relaxed), snapshotBytes: cnt.snapshotBytes.load(ordering: .relaxed),
                             snapshotsRecycled: cnt.snapshotsRecycled.load(ordering: .relaxed),
                             rowsAdmitted: cnt.rowsAdmitted.load(ordering: .relaxed), pushesRefused: cnt.pushesRefused.load(ordering: .relaxed),
                             rowsEvicted: cnt.rowsEvicted.load(ordering: .relaxed), evictionPasses: cnt.evictionPasses.load(ordering: .relaxed),
                             admissionSketchBytes: UInt64(admission?.sketchBytes ?? 0), lastSequence: lastSequence,
                             logSpareBytes: log.spareBytes, logSegmentsRecycled: UInt64(opened.recycled), logSegmentsCreated: UInt64(opened.created))
    }
}

/// How a table's row store and flusher are sized.
public struct TableTuning: Sendable {
    /// Rows kept in memory.
    public var cacheRows: Int = 1 << 20
    /// Independently locked stripes of the row store.
    public var stripes: Int = 64
    /// The flusher starts writing dirty rows above this many, and writes down to half of it.
    public var dirtyLowWatermark: Int = 1 << 18
    /// Pushes write rows themselves above this many dirty rows (0: never).
    public var dirtyHardLimit: Int = 1 << 20
    /// A table without a push for this long has all its dirty rows written when rows need room, then its
    /// memtable flushed to SST files (see `EmbeddingTable.flusherPass`).
    public var idleFlushSeconds: Double = 0.5
    /// Threads a read of many stored rows (one request's cache misses) is split across, by storage order
    /// (see `EmbeddingTable.readStored`); 1: none.
    public var readThreads: Int = 1
    /// Fewest rows each of those threads gets: a smaller read stays on the caller's thread.
    public var rowsPerReadThread: Int = 256
    /// Whether pushes of a table whose rows are cached enqueue their log record before pinning their rows
    /// (`EmbeddingTable.commitPush`); false: always after (to compare the two).
    public var logBeforePin = true
    /// Bytes of the update log's ring (a multiple of 4 KiB; see `UpdateLog`).
    public var logRingBytes = UpdateLog.defaultRingBytes
    /// Most bytes of spare update-log segments kept for reuse (`UpdateLog.recycleBytes`; 0: none).
    public var logRecycleBytes = 0
    /// A table without a push or operation for this long deletes its spare log segments.
    public var spareIdleSeconds: Double = 300
    /// Bytes after which the update log closes a segment and opens the next (`UpdateLog.segmentLimit`).
    public var logSegmentBytes = 512 << 20
    /// Threads a lone pull's cached rows are copied with (see `EmbeddingTable.splitParts`); 1: none.
    public var splitThreads: Int = 1
    /// Fewest rows each of those threads gets.
    public var rowsPerSplitThread: Int = 1024
    /// Whether the periodic checkpoint of a table without an eviction policy, DNIS or dynamic sparsity writes
    /// its dirty rows to a snapshot file (`EmbeddingTable.snapshotCheckpoint`) instead of RocksDB.
    public var checkpointSnapshots = true
    /// Bytes a second a snapshot checkpoint writes its file at, written back as it goes (`RowSnapshotWriter`);
    /// 0: unpaced.
    public var snapshotBytesPerSecond = 128 << 20
    public init() {}
    /// Watermarks derived from the cache size: flush above a quarter of it, make pushes help above 90%.
    public init(cacheRows: Int, stripes: Int = 64, readThreads: Int = 1, logBeforePin: Bool = true, logRingBytes: Int = UpdateLog.defaultRingBytes,
                splitThreads: Int = 1, logRecycleBytes: Int = 0) {
        self.logRecycleBytes = max(0, logRecycleBytes)
        self.cacheRows = cacheRows; self.stripes = stripes; self.readThreads = max(1, readThreads); self.logBeforePin = logBeforePin
        self.splitThreads = max(1, splitThreads)
        self.logRingBytes = max(4096, logRingBytes / 4096 * 4096)
        dirtyLowWatermark = max(1, cacheRows / 4)
        dirtyHardLimit = max(1, cacheRows * 9 / 10)
    }
}

/// Encoded rows for one RocksDB write batch (keys and values in one buffer, each value at most the codec's
/// `encodedLength`). Not thread-safe.
final class RowBatch {
    let codec: RowCodec
    private let buffer: UnsafeMutableRawPointer
    private let stride: Int
    private var lengths: [Int] = []
    var count: Int { lengths.count }
    private let capacity: Int
    init(codec: RowCodec, capacity: Int) {
        self.codec = codec; self.capacity = max(1, capacity)
        stride = RowKey.length + codec.encodedLength
        buffer = .allocate(byteCount: self.capacity * stride, alignment: 8)
        lengths.reserveCapacity(self.capacity)
    }
    deinit { buffer.deallocate() }
    func add(slot: UInt16, key: UInt64, row: UnsafePointer<Float>, step: UInt32, seq: UInt64) {
        precondition(count < capacity)
        let p = buffer + count * stride
        RowKey.write(slot: slot, key: key, to: p)
        lengths.append(codec.encode(floats: row, step: step, seq: seq, into: p + RowKey.length))
    }
    /// Adds every row in insertion order.
    func add(to b: WriteBatch, family: ColumnFamily) {
        for i in 0..<count { put(b, family, i) }
    }
    /// Adds every row in RocksDB key order (memtable inserts of sorted keys are cheaper).
    func addSorted(to b: WriteBatch, family: ColumnFamily) {
        for i in keyOrder { put(b, family, i) }
    }
    /// Row indices in RocksDB key order.
    private var keyOrder: [Int] {
        // Decoded (slot, key) pairs sorted as integers: the order of the big-endian key bytes, without a
        // memcmp call per comparison (this sort was 12% of a follower's profile).
        var entries = [(slot: UInt16, key: UInt64, index: Int)]()
        entries.reserveCapacity(count)
        for i in 0..<count {
            let p = UnsafeRawPointer(buffer + i * stride)
            entries.append((UInt16(bigEndian: p.loadUnaligned(as: UInt16.self)), UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt64.self)), i))
        }
        entries.sort { $0.slot != $1.slot ? $0.slot < $1.slot : $0.key < $1.key }
        return entries.map(\.index)
    }
    private func put(_ b: WriteBatch, _ family: ColumnFamily, _ i: Int) {
        let p = buffer + i * stride
        b.put(family, key: UnsafeRawBufferPointer(start: p, count: RowKey.length),
              value: UnsafeRawBufferPointer(start: p + RowKey.length, count: lengths[i]))
    }
    func write(to db: RocksDatabase, family: ColumnFamily) throws {
        let b = WriteBatch()
        add(to: b, family: family)
        try db.write(b, sync: false)
    }
    /// Ingests every row as one SST file: atomic and durable. Rows whose keys form a range no other file
    /// overlaps (an import in key order) land in the bottom level with no compaction.
    func ingest(into db: RocksDatabase, family: ColumnFamily) throws {
        let order = keyOrder
        try db.ingestSorted(family, count: count) { i in
            let p = buffer + order[i] * stride
            return (UnsafeRawBufferPointer(start: p, count: RowKey.length), UnsafeRawBufferPointer(start: p + RowKey.length, count: lengths[order[i]]))
        }
    }
}

/// A push as the update log holds it (row count u32, keys u64, count * dim gradients f32, optional 16-byte
/// request id; little-endian), decoded into owned, aligned buffers. Invariant: `keys` holds `count` keys
/// and `gradients` count * dim floats; the owner calls `deallocate` once.
struct LoggedPush {
    struct Malformed: Error { let message: String }
    let count: Int
    let keys: UnsafeMutableBufferPointer<UInt64>
    let gradients: UnsafeMutablePointer<Float>
    let requestID: RequestID?

    static func decode(_ payload: UnsafeRawBufferPointer, dim: Int) -> Result<LoggedPush, Malformed> {
        guard payload.count >= 4 else { return .failure(Malformed(message: "is truncated")) }
        let count = Int(payload.loadUnaligned(as: UInt32.self))
        let body = 4 + count * (8 + 4 * dim)
        guard payload.count == body || payload.count == body + 16 else {
            return .failure(Malformed(message: "has \(payload.count) bytes, expected \(body) (+16 with a request id)"))
        }
        let requestID = payload.count == body + 16
            ? RequestID(high: payload.loadUnaligned(fromByteOffset: body, as: UInt64.self), low: payload.loadUnaligned(fromByteOffset: body + 8, as: UInt64.self))
            : nil
        let keys = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(1, count))
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count * dim))
        UnsafeMutableRawPointer(keys.baseAddress!).copyMemory(from: payload.baseAddress! + 4, byteCount: count * 8)
        UnsafeMutableRawPointer(grads).copyMemory(from: payload.baseAddress! + 4 + count * 8, byteCount: count * dim * 4)
        return .success(LoggedPush(count: count, keys: keys, gradients: grads, requestID: requestID))
    }

    func deallocate() { keys.deallocate(); gradients.deallocate() }
}

/// Contiguous scratch rows for one request, with per-row step, sequence and existence. Freed on deinit.
final class RowScratch {
    let rowFloats: Int
    let floats: UnsafeMutablePointer<Float>
    var steps: [UInt32]
    var seqs: [UInt64]
    var exists: [Bool]
    init(rowFloats: Int, count: Int) {
        self.rowFloats = rowFloats
        floats = .allocate(capacity: max(1, rowFloats * count))
        steps = [UInt32](repeating: 0, count: count)
        seqs = [UInt64](repeating: 0, count: count)
        exists = [Bool](repeating: false, count: count)
    }
    deinit { floats.deallocate() }
    @inline(__always) func row(_ j: Int) -> UnsafeMutablePointer<Float> { floats + j * rowFloats }
}

/// The state of one `EmbeddingTable.readStored`: the keys in storage order and, per caller position, what
/// the read found. Parts of a parallel read write disjoint positions; freed by `deallocate`.
struct StoredRowsRead {
    let keyBytes: UnsafeMutableRawPointer
    let steps: UnsafeMutablePointer<UInt32>
    let seqs: UnsafeMutablePointer<UInt64>
    let found: UnsafeMutablePointer<Bool>
    init(count: Int) {
        keyBytes = .allocate(byteCount: count * RowKey.length, alignment: 8)
        steps = .allocate(capacity: count); seqs = .allocate(capacity: count)
        found = .allocate(capacity: count); found.initialize(repeating: false, count: count)
    }
    func deallocate() { keyBytes.deallocate(); steps.deallocate(); seqs.deallocate(); found.deallocate() }
}

/// A value handed to threads in a way the type system cannot check (a closure run by
/// `DispatchQueue.concurrentPerform` while its caller waits, writing disjoint memory through pointers). Only
/// where the use says why that is safe.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
