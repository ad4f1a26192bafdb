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
}

/// One table's rows on one shard: RocksDB column family + write-back hot-row cache + update log +
/// optimizer + initializer.
///
/// Durability: a push is acknowledged after its record (row keys + aggregated gradients) is appended to the
/// table's update log (fdatasync'ed in sync mode). Updated rows stay dirty in the cache; checkpoints write
/// dirty rows to RocksDB (each row carries the sequence number of the last record applied to it) and then
/// record the checkpoint's sequence number, after which older log segments are deleted. Recovery replays
/// log records newer than the checkpoint, skipping rows whose stored sequence number already covers them,
/// so replay is idempotent even after a checkpoint interrupted half-way.
///
/// Concurrency: cache hits of pulls run under the shared lock; misses, pushes, flushes and drop take the
/// exclusive lock. Every RocksDB row write happens under the exclusive lock, so a stale row image can never
/// overwrite a newer one. Checkpoints are serialised by `checkpointLock` (never taken inside `lock`).
/// Atomicity: a push validates everything and computes all new rows into scratch memory before logging;
/// nothing is installed unless the log append succeeded.
final class EmbeddingTable: @unchecked Sendable {
    let spec: TableSpec
    let addressing: RowAddressing
    let family: ColumnFamily
    let codec: RowCodec
    let optimizer: SparseOptimizer
    let initializer: RowInitializer
    /// Set for a dynamic-sparsity table.
    let sparsity: DynamicSparsity?
    /// Set for a DNIS table, with its alpha / mode state (guarded by `lock`).
    let dnis: DimensionSearch?
    var dnisState: DnisState
    /// Prune-and-regrow rounds applied and the log sequence number of the last one (sparse tables).
    var sparsityRound: UInt32 = 0
    /// Recent push request ids (retries answered without applying twice).
    var ledger = RequestLedger(capacity: 65536)
    /// This incarnation's names in the database (see the lifecycle rule in TableLifecycle.swift).
    let identity: TableIdentity
    /// Operations inside this table; closed by drop and close (see the lifecycle rule).
    let gate = ActivityGate()
    /// Semantic tables only: item codes and the tokenizer.
    let semantic: (items: ItemCodeStore, tokenizer: PieceTokenizer)?
    var ledgerKey: [UInt8] { identity.ledgerKey }
    var sparsityStepSeq: UInt64 = 0
    let counters = TableCounters()
    let db: RocksDatabase
    let cache: HotRowCache
    let log: UpdateLog
    let lock = ReadWriteLock()
    let checkpointLock = NSLock()
    let markerKey: [UInt8]
    var rowCount: UInt64 = 0
    var dropped = false
    private let sync: Bool
    var logSeq: UInt64 = 0
    var checkpointSeq: UInt64 = 0
    var lastCheckpoint = Date()

    static let flushChunkRows = 4096

    init(spec: TableSpec, identity: TableIdentity, family: ColumnFamily, db: RocksDatabase, logDirectory: String, cacheRows: Int, sync: Bool,
         semantic: (items: ItemCodeStore, tokenizer: PieceTokenizer)?) throws {
        self.spec = spec; self.identity = identity; self.family = family; self.db = db; self.sync = sync; self.semantic = semantic
        addressing = RowAddressing(spec: spec)
        if let format = spec.sparseFormat {
            codec = RowCodec(sparse: format, optimizerTag: spec.optimizer.kind.rawValue)
            sparsity = spec.sparsity.map { DynamicSparsity(config: $0, format: format) }
            dnis = spec.dnis.map { DimensionSearch(config: $0, format: format) }
        } else {
            codec = RowCodec(floatCount: spec.rowFloats, optimizerTag: spec.optimizer.kind.rawValue)
            sparsity = nil; dnis = nil
        }
        dnisState = DnisState(blocks: spec.dnis?.blocks ?? 0, dim: spec.dim)
        optimizer = SparseOptimizer(config: spec.optimizer, dim: spec.dim)
        initializer = RowInitializer(config: spec.initializer, dim: spec.dim)
        cache = HotRowCache(rowFloats: spec.rowFloats, capacity: cacheRows)
        log = try UpdateLog(directory: logDirectory)
        markerKey = identity.markerKey
        var n: UInt64 = 0
        try db.scan(family) { _, _ in n += 1; return true }
        rowCount = n
        if let m = try db.get(db.defaultFamily, key: markerKey), m.count == 8 {
            checkpointSeq = m.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        }
        logSeq = checkpointSeq
        if let m = try db.get(db.defaultFamily, key: identity.ledgerKey) { ledger.load(m) }
        if let m = try db.get(db.defaultFamily, key: identity.sparsityKey), m.count == 12 {
            sparsityRound = m.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            sparsityStepSeq = m.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt64.self) }
        }
        if let d = spec.dnis, let m = try db.get(db.defaultFamily, key: identity.dnisKey) {
            guard let state = DnisState(decoding: m, blocks: d.blocks, dim: spec.dim) else {
                throw EngineError.storage("table '\(spec.name)': stored DNIS state has \(m.count) bytes, expected \(20 + 4 * d.blocks * spec.dim)")
            }
            dnisState = state
        }
        // Recovery: re-apply every logged update newer than the checkpoint.
        let dim = spec.dim
        logSeq = try log.replay(after: checkpointSeq) { seq, payload in
            guard payload.count >= 4 else { throw EngineError.storage("update log record \(seq) of '\(spec.name)' is truncated") }
            let count = Int(payload.loadUnaligned(as: UInt32.self))
            let body = 4 + count * (8 + 4 * dim)
            guard payload.count == body || payload.count == body + 16 else {
                throw EngineError.storage("update log record \(seq) of '\(spec.name)' has \(payload.count) bytes, expected \(body) (+16 with a request id)")
            }
            if payload.count == body + 16 {
                ledger.record(RequestID(high: payload.loadUnaligned(fromByteOffset: body, as: UInt64.self),
                                        low: payload.loadUnaligned(fromByteOffset: body + 8, as: UInt64.self)), rows: count)
            }
            let keys = (0..<count).map { payload.loadUnaligned(fromByteOffset: 4 + $0 * 8, as: UInt64.self) }
            let grads = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count * dim))
            defer { grads.deallocate() }
            UnsafeMutableRawPointer(grads).copyMemory(from: payload.baseAddress! + 4 + count * 8, byteCount: count * dim * 4)
            try lock.withWriteLock { () throws(EngineError) in try applyLocked(keys: keys, gradients: grads, seq: seq, logRecord: nil) }
        }
        try log.rotate(nextSeq: logSeq + 1)
    }

    var dim: Int { spec.dim }

    // MARK: pull

    /// Fills `out[i*dim ..< (i+1)*dim]` with the row of `keys[i]`; unseen rows get their initial value (not written).
    /// Cache hits and RocksDB reads of misses both run under the shared lock, so concurrent pulls overlap
    /// their storage reads; missed rows are then installed in the cache under the exclusive lock unless the
    /// cache evicted anything in between (a row pushed, flushed and evicted meanwhile would make the image
    /// read stale); rows cached meanwhile (e.g. by a push) are kept as they are.
    func pull(keys: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) throws(EngineError) {
        let dim = spec.dim
        var missing: [Int] = []
        var epoch: UInt64 = 0
        var scratch: RowScratch? = nil
        try lock.withReadLock { () throws(EngineError) in
            if dropped { throw .unknownTable(spec.name) }
            // Table kinds are decided once per request, not per row (binding the optional structs per row
            // costs reference counting on the hot path).
            if let d = dnis {
                let state = dnisState
                for i in 0..<keys.count {
                    if let s = cache.lookup(keys[i]) { d.view(cache.row(s), into: out + i * dim, state: state) } else { missing.append(i) }
                }
            } else {
                for i in 0..<keys.count {
                    if let s = cache.lookup(keys[i]) { (out + i * dim).update(from: cache.row(s), count: dim) } else { missing.append(i) }
                }
            }
            guard !missing.isEmpty else { return }
            let rows = RowScratch(rowFloats: spec.rowFloats, count: missing.count)
            try loadFromStorage(missing.map { keys[$0] }, positions: Array(0..<missing.count), into: rows)
            if let d = dnis {
                let state = dnisState
                for (j, i) in missing.enumerated() { d.view(rows.row(j), into: out + i * dim, state: state) }
            } else {
                for (j, i) in missing.enumerated() { (out + i * dim).update(from: rows.row(j), count: dim) }
            }
            scratch = rows
            epoch = cache.evictions
        }
        counters.cacheHits.add(UInt64(keys.count - missing.count), ordering: .relaxed)
        counters.cacheMisses.add(UInt64(missing.count), ordering: .relaxed)
        if let scratch, cache.capacity > 0 {
            lock.withWriteLock {
                guard !dropped, cache.evictions == epoch else { return }
                for (j, i) in missing.enumerated() where cache.lookup(keys[i]) == nil {
                    guard let s = cache.claim(keys[i]) else { break }
                    cache.row(s).update(from: scratch.row(j), count: spec.rowFloats)
                    cache.set(s, step: scratch.steps[j], seq: scratch.seqs[j], exists: scratch.exists[j], dirty: false)
                }
            }
        }
        counters.pulls.add(1, ordering: .relaxed)
        counters.rowsPulled.add(UInt64(keys.count), ordering: .relaxed)
    }

    /// Reads rows into `scratch`: cached rows copied, stored rows decoded, unseen rows initialised.
    /// Caller holds the exclusive lock.
    func load(_ keys: [UInt64], into scratch: RowScratch) throws(EngineError) {
        var dbIndex: [Int] = []
        for (j, k) in keys.enumerated() {
            if let s = cache.lookup(k) {
                scratch.row(j).update(from: cache.row(s), count: spec.rowFloats)
                scratch.steps[j] = cache.step(s); scratch.seqs[j] = cache.seq(s); scratch.exists[j] = cache.exists(s)
            } else {
                dbIndex.append(j)
            }
        }
        guard !dbIndex.isEmpty else { return }
        try loadFromStorage(dbIndex.map { keys[$0] }, positions: dbIndex, into: scratch)
    }

    /// Loads one row into scratch row 0. Caller holds the exclusive lock.
    func loadRow(_ key: UInt64, into scratch: RowScratch) throws(EngineError) { try load([key], into: scratch) }

    /// Reads `keys` from RocksDB into scratch rows `positions` (stored rows decoded, absent rows initialised).
    /// Touches no cache state; caller holds the table lock (shared is enough).
    private func loadFromStorage(_ keys: [UInt64], positions: [Int], into scratch: RowScratch) throws(EngineError) {
        let keyBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: keys.count * RowKey.length, alignment: 8)
        defer { keyBytes.deallocate() }
        for (n, k) in keys.enumerated() {
            RowKey.write(slot: addressing.slot(ofRowKey: k), key: k, to: keyBytes.baseAddress! + n * RowKey.length)
        }
        var found = [Bool](repeating: false, count: keys.count)
        do {
            try db.multiGet(family, keys: UnsafeRawBufferPointer(keyBytes), keyLength: RowKey.length, count: keys.count) { n, bytes in
                let j = positions[n]
                do { (scratch.steps[j], scratch.seqs[j]) = try codec.decode(bytes, into: scratch.row(j)) } catch let e as RowCodecError {
                    throw EngineError.storage("table '\(spec.name)' row \(keys[n]): \(e.description)")
                }
                scratch.exists[j] = true
                found[n] = true
            }
        } catch let e as EngineError { throw e } catch { throw .storage("\(error)") }
        for (n, j) in positions.enumerated() where !found[n] {
            initializer.fill(scratch.row(j), rowKey: keys[n])
            optimizer.initializeState(scratch.row(j))
            sparsity?.initialize(scratch.row(j), rowKey: keys[n])
            dnis?.initialize(scratch.row(j), state: dnisState)
            scratch.steps[j] = 0; scratch.seqs[j] = 0; scratch.exists[j] = false
        }
    }

    // MARK: push

    /// Applies one aggregated gradient per distinct key (`gradients`: keys.count * dim floats), logging the
    /// update first. All or nothing. Returns the number of rows updated.
    func push(keys: [UInt64], gradients: UnsafePointer<Float>, requestID: RequestID? = nil) throws(EngineError) -> Int {
        let dim = spec.dim
        // The log record: count, keys, aggregated gradients, then the request id when there is one.
        let body = 4 + keys.count * (8 + 4 * dim)
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: body + (requestID == nil ? 0 : 16), alignment: 8)
        defer { record.deallocate() }
        record.storeBytes(of: UInt32(keys.count), as: UInt32.self)
        keys.withUnsafeBytes { (record.baseAddress! + 4).copyMemory(from: $0.baseAddress!, byteCount: keys.count * 8) }
        (record.baseAddress! + 4 + keys.count * 8).copyMemory(from: gradients, byteCount: keys.count * dim * 4)
        if let id = requestID {
            record.storeBytes(of: id.high, toByteOffset: body, as: UInt64.self)
            record.storeBytes(of: id.low, toByteOffset: body + 8, as: UInt64.self)
        }
        let repeated = try lock.withWriteLock { () throws(EngineError) -> Int? in
            if dropped { throw .unknownTable(spec.name) }
            // A retry of a push already applied: answer as before, apply nothing.
            if let id = requestID, let n = ledger.rowsUpdated(by: id) { return n }
            let logged = (record.baseAddress! + 4 + keys.count * 8).assumingMemoryBound(to: Float.self)
            try applyLocked(keys: keys, gradients: logged, seq: logSeq + 1, logRecord: record)
            if let id = requestID { ledger.record(id, rows: keys.count) }
            return nil
        }
        if let repeated { return repeated }
        counters.pushes.add(1, ordering: .relaxed)
        counters.rowsPushed.add(UInt64(keys.count), ordering: .relaxed)
        return keys.count
    }

    /// Applies update `seq` to `keys` (distinct). With `logRecord` (whose gradient area is `gradients`),
    /// appends it to the log before installing anything (a live push; a searching DNIS table first applies the
    /// chain rule to the gradients in the record, so what is logged no longer depends on alpha); without, it
    /// is a replayed record and rows already covering `seq` are skipped. Caller holds the exclusive lock.
    private func applyLocked(keys: [UInt64], gradients: UnsafeMutablePointer<Float>, seq: UInt64, logRecord: UnsafeMutableRawBufferPointer?) throws(EngineError) {
        let dim = spec.dim, rf = spec.rowFloats
        // Make room: dirty rows cannot be evicted, so flush them when this update could not fit otherwise.
        // Write only what is needed (plus slack for the next pushes); the checkpointer does the rest.
        if cache.capacity > 0 && cache.dirtyCount + keys.count > cache.capacity {
            let needed = min(cache.dirtyCount, cache.dirtyCount + 2 * keys.count - cache.capacity)
            try flushDirtyLocked(Array(cache.dirtySlots().prefix(max(needed, keys.count)).map { cache.key($0) }))
        }
        let scratch = RowScratch(rowFloats: rf, count: keys.count)
        try load(keys, into: scratch)
        if let dnis, logRecord != nil, !dnisState.pruned {
            for j in 0..<keys.count { dnis.chainRule(scratch.row(j), gradient: gradients + j * dim, state: dnisState) }
        }
        var applied = [Bool](repeating: false, count: keys.count)
        let opt = optimizer, sp = sparsity, dn = dnis
        for j in 0..<keys.count where scratch.seqs[j] < seq {
            opt.apply(scratch.row(j), gradient: gradients + j * dim, step: &scratch.steps[j])
            if let sp { sp.afterUpdate(scratch.row(j), gradient: gradients + j * dim, pushesSinceRowUpdate: seq - scratch.seqs[j]) }
            if let dn { dn.afterUpdate(scratch.row(j)) }
            scratch.seqs[j] = seq
            applied[j] = true
        }
        if let logRecord {
            do { try log.append(seq: seq, payload: UnsafeRawBufferPointer(logRecord), sync: sync) } catch { throw .storage("table '\(spec.name)': \(error)") }
        }
        logSeq = max(logSeq, seq)
        // Logged: install. Rows that do not fit in the cache are written through to RocksDB.
        var writeThrough: [Int] = []
        for j in 0..<keys.count where applied[j] {
            if !scratch.exists[j] { rowCount += 1 }
            if let s = cache.claim(keys[j]) {
                cache.row(s).update(from: scratch.row(j), count: rf)
                cache.set(s, step: scratch.steps[j], seq: seq, exists: true, dirty: true)
            } else {
                writeThrough.append(j)
            }
        }
        if !writeThrough.isEmpty {
            let batch = RowBatch(codec: codec, capacity: writeThrough.count)
            for j in writeThrough { batch.add(slot: addressing.slot(ofRowKey: keys[j]), key: keys[j], row: scratch.row(j), step: scratch.steps[j], seq: seq) }
            try write(batch)
        }
    }

    func write(_ batch: RowBatch) throws(EngineError) {
        do { try batch.write(to: db, family: family) } catch { throw .storage("table '\(spec.name)': \(error)") }
        counters.rowsFlushed.add(UInt64(batch.count), ordering: .relaxed)
    }

    /// Writes the dirty rows among `keys` to RocksDB and marks them clean. Caller holds the exclusive lock.
    func flushDirtyLocked(_ keys: [UInt64]) throws(EngineError) {
        var start = 0
        while start < keys.count {
            let chunk = keys[start..<min(keys.count, start + Self.flushChunkRows)]
            let batch = RowBatch(codec: codec, capacity: chunk.count)
            var slots: [Int] = []
            for k in chunk {
                guard let s = cache.lookup(k), cache.isDirty(s) else { continue }
                batch.add(slot: addressing.slot(ofRowKey: k), key: k, row: cache.row(s), step: cache.step(s), seq: cache.seq(s))
                slots.append(s)
            }
            if !slots.isEmpty {
                try write(batch)
                slots.forEach { cache.markClean($0) }
            }
            start += Self.flushChunkRows
        }
    }

    // MARK: checkpoints

    /// Whether a checkpoint is due: log past `logBytesLimit`, dirty rows over 90% of the cache (so pushes do
    /// not have to flush synchronously to make room), or dirty rows older than `maxInterval` seconds.
    func checkpointDue(logBytesLimit: Int, maxInterval: Double) -> Bool {
        lock.withReadLock {
            if dropped || (cache.dirtyCount == 0 && log.bytesSinceRotation == 0) { return false }
            return log.bytesSinceRotation >= logBytesLimit || cache.dirtyCount * 10 > cache.capacity * 9
                || Date().timeIntervalSince(lastCheckpoint) >= maxInterval
        }
    }

    /// Writes every dirty row to RocksDB in chunks (releasing the lock between chunks so pushes proceed),
    /// records the checkpoint sequence durably and deletes log segments it covers.
    func checkpoint() throws(EngineError) {
        checkpointLock.lock(); defer { checkpointLock.unlock() }
        let (target, dirtyKeys): (UInt64, [UInt64]) = try lock.withWriteLock { () throws(EngineError) in
            if dropped { return (0, []) }
            do { try log.rotate(nextSeq: logSeq + 1) } catch { throw .storage("\(error)") }
            return (logSeq, cache.dirtySlots().map { cache.key($0) })
        }
        var start = 0
        while start < dirtyKeys.count {
            let chunk = Array(dirtyKeys[start..<min(dirtyKeys.count, start + Self.flushChunkRows)])
            try lock.withWriteLock { () throws(EngineError) in if !dropped { try flushDirtyLocked(chunk) } }
            start += Self.flushChunkRows
            // pthread rwlocks do not queue fairly: without a pause the checkpointer re-takes the lock at once
            // and waiting pushes starve for the whole checkpoint.
            usleep(1000)
        }
        if lock.withReadLock({ self.dropped }) { return }
        do {
            // The synced marker write also makes every earlier row write durable (one WAL).
            let b = WriteBatch()
            putCheckpointMarker(b, through: target, ledger: lock.withWriteLock { ledger.encoded })
            try db.write(b, sync: true)
        } catch { throw .storage("table '\(spec.name)' checkpoint: \(error)") }
        lock.withWriteLock { checkpointSeq = target; lastCheckpoint = Date() }
        log.deleteSegments(through: target)
        counters.checkpoints.add(1, ordering: .relaxed)
    }

    /// Adds the checkpoint marker (every logged update through `seq` is in RocksDB) and the request ledger
    /// (so the ids of the records it covers survive the log segments deleted after it) to `batch`.
    func putCheckpointMarker(_ batch: WriteBatch, through seq: UInt64, ledger: [UInt8]) {
        var t = seq
        batch.put(db.defaultFamily, key: markerKey, value: withUnsafeBytes(of: &t) { Array($0) })
        batch.put(db.defaultFamily, key: ledgerKey, value: ledger)
    }

    /// Marks the table dropped (waiting for in-flight requests), forgets cached rows and deletes its log.
    func markDropped() {
        checkpointLock.lock(); defer { checkpointLock.unlock() }
        lock.withWriteLock { dropped = true; cache.removeAll(); log.destroy() }
    }

    /// Stops using the table without deleting anything (the engine is closing). Caller closed the gate.
    func close() {
        checkpointLock.lock(); defer { checkpointLock.unlock() }
        lock.withWriteLock { dropped = true; cache.removeAll() }
    }

    func snapshot() -> TableSnapshot {
        let (rows, cached, dirty) = lock.withReadLock { (rowCount, UInt64(cache.count), UInt64(cache.dirtyCount)) }
        let c = counters
        return TableSnapshot(spec: spec, rows: rows, cachedRows: cached, dirtyRows: dirty, cacheCapacityRows: UInt64(cache.capacity),
                             bytesOnDisk: db.bytesUsed(family), logBytes: log.totalBytes,
                             pulls: c.pulls.load(ordering: .relaxed), pushes: c.pushes.load(ordering: .relaxed),
                             rowsPulled: c.rowsPulled.load(ordering: .relaxed), rowsPushed: c.rowsPushed.load(ordering: .relaxed),
                             cacheHits: c.cacheHits.load(ordering: .relaxed), cacheMisses: c.cacheMisses.load(ordering: .relaxed),
                             checkpoints: c.checkpoints.load(ordering: .relaxed), rowsFlushed: c.rowsFlushed.load(ordering: .relaxed))
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
        self.codec = codec; self.capacity = capacity
        stride = RowKey.length + codec.encodedLength
        buffer = .allocate(byteCount: max(1, capacity * stride), alignment: 8)
        lengths.reserveCapacity(capacity)
    }
    deinit { buffer.deallocate() }
    func add(slot: UInt16, key: UInt64, row: UnsafePointer<Float>, step: UInt32, seq: UInt64) {
        precondition(count < capacity)
        let p = buffer + count * stride
        RowKey.write(slot: slot, key: key, to: p)
        lengths.append(codec.encode(floats: row, step: step, seq: seq, into: p + RowKey.length))
    }
    func add(to b: WriteBatch, family: ColumnFamily) {
        for i in 0..<count {
            let p = buffer + i * stride
            b.put(family, key: UnsafeRawBufferPointer(start: p, count: RowKey.length),
                  value: UnsafeRawBufferPointer(start: p + RowKey.length, count: lengths[i]))
        }
    }
    func write(to db: RocksDatabase, family: ColumnFamily) throws {
        let b = WriteBatch()
        add(to: b, family: family)
        try db.write(b, sync: false)
    }
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
