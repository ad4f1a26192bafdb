import Foundation
import Storage
import Synchronization

/// Counters of one table since the shard started. Lock-free.
public final class TableCounters: Sendable {
    let pulls = Atomic<UInt64>(0), pushes = Atomic<UInt64>(0)
    let rowsPulled = Atomic<UInt64>(0), rowsPushed = Atomic<UInt64>(0)
    let cacheHits = Atomic<UInt64>(0), cacheMisses = Atomic<UInt64>(0)
}

/// A point-in-time view of one table on one shard.
public struct TableSnapshot: Sendable {
    public let spec: TableSpec
    public let rows: UInt64
    public let cachedRows: UInt64
    public let cacheCapacityRows: UInt64
    public let bytesOnDisk: UInt64
    public let pulls, pushes, rowsPulled, rowsPushed, cacheHits, cacheMisses: UInt64
}

/// One table's rows on one shard: RocksDB column family + hot-row cache + optimizer + initializer.
///
/// Concurrency: cache hits of pulls run under the shared lock; cache misses, pushes and drops take the
/// exclusive lock. Atomicity: a push validates everything, computes every new row into scratch memory,
/// writes them in one WAL batch (fsynced in sync mode), and only then installs them in the cache, so a
/// request is applied whole or not at all and an acknowledged push is durable per the shard's mode.
final class EmbeddingTable: @unchecked Sendable {
    let spec: TableSpec
    let addressing: RowAddressing
    let family: ColumnFamily
    let codec: RowCodec
    let optimizer: SparseOptimizer
    let initializer: RowInitializer
    let counters = TableCounters()
    private let db: RocksDatabase
    private let cache: HotRowCache
    private let lock = ReadWriteLock()
    private var rowCount: UInt64 = 0
    private var dropped = false
    private let sync: Bool

    init(spec: TableSpec, family: ColumnFamily, db: RocksDatabase, cacheRows: Int, sync: Bool) throws {
        self.spec = spec; self.family = family; self.db = db; self.sync = sync
        addressing = RowAddressing(spec: spec)
        codec = RowCodec(floatCount: spec.rowFloats, optimizerTag: spec.optimizer.kind.rawValue)
        optimizer = SparseOptimizer(config: spec.optimizer, dim: spec.dim)
        initializer = RowInitializer(config: spec.initializer, dim: spec.dim)
        cache = HotRowCache(rowFloats: spec.rowFloats, capacity: cacheRows)
        var n: UInt64 = 0
        try db.scan(family) { _, _ in n += 1; return true }
        rowCount = n
    }

    var dim: Int { spec.dim }

    /// Fills `out[i*dim ..< (i+1)*dim]` with the row of `keys[i]`; unseen rows get their initial value (not written).
    func pull(keys: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) throws(EngineError) {
        let dim = spec.dim
        var missing: [Int] = []
        try lock.withReadLock { () throws(EngineError) in
            if dropped { throw .unknownTable(spec.name) }
            for i in 0..<keys.count {
                if let s = cache.lookup(keys[i]) {
                    (out + i * dim).update(from: cache.row(s), count: dim)
                } else {
                    missing.append(i)
                }
            }
        }
        counters.cacheHits.add(UInt64(keys.count - missing.count), ordering: .relaxed)
        counters.cacheMisses.add(UInt64(missing.count), ordering: .relaxed)
        if !missing.isEmpty {
            try lock.withWriteLock { () throws(EngineError) in
                if dropped { throw .unknownTable(spec.name) }
                let scratch = RowScratch(rowFloats: spec.rowFloats, count: missing.count)
                try load(missing.map { keys[$0] }, into: scratch)
                for (j, i) in missing.enumerated() {
                    (out + i * dim).update(from: scratch.row(j), count: dim)
                    if let s = cache.claim(keys[i]) {
                        cache.row(s).update(from: scratch.row(j), count: spec.rowFloats)
                        cache.setStep(s, scratch.steps[j]); cache.setPersisted(s, scratch.persisted[j])
                    }
                }
            }
        }
        counters.pulls.add(1, ordering: .relaxed)
        counters.rowsPulled.add(UInt64(keys.count), ordering: .relaxed)
    }

    /// Reads rows not in the cache (or cached) into `scratch`: stored rows decoded, unseen rows initialised.
    /// Caller holds the exclusive lock.
    private func load(_ keys: [UInt64], into scratch: RowScratch) throws(EngineError) {
        var dbIndex: [Int] = []
        for (j, k) in keys.enumerated() {
            if let s = cache.lookup(k) {
                scratch.row(j).update(from: cache.row(s), count: spec.rowFloats)
                scratch.steps[j] = cache.step(s); scratch.persisted[j] = cache.isPersisted(s)
            } else {
                dbIndex.append(j)
            }
        }
        guard !dbIndex.isEmpty else { return }
        let keyBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: dbIndex.count * RowKey.length, alignment: 8)
        defer { keyBytes.deallocate() }
        for (n, j) in dbIndex.enumerated() {
            RowKey.write(slot: addressing.slot(ofRowKey: keys[j]), key: keys[j], to: keyBytes.baseAddress! + n * RowKey.length)
        }
        var found = [Bool](repeating: false, count: dbIndex.count)
        do {
            try db.multiGet(family, keys: UnsafeRawBufferPointer(keyBytes), keyLength: RowKey.length, count: dbIndex.count) { n, bytes in
                let j = dbIndex[n]
                do { scratch.steps[j] = try codec.decode(bytes, into: scratch.row(j)) } catch let e as RowCodecError {
                    throw EngineError.storage("table '\(spec.name)' row \(keys[j]): \(e.description)")
                }
                scratch.persisted[j] = true
                found[n] = true
            }
        } catch let e as EngineError { throw e } catch { throw .storage("\(error)") }
        for (n, j) in dbIndex.enumerated() where !found[n] {
            initializer.fill(scratch.row(j), rowKey: keys[j])
            optimizer.initializeState(scratch.row(j))
            scratch.steps[j] = 0; scratch.persisted[j] = false
        }
    }

    /// Applies one aggregated gradient per distinct key. `gradients` holds keys.count * dim floats.
    /// All or nothing: on a storage error no row changes. Returns the number of rows updated.
    func push(keys: [UInt64], gradients: UnsafePointer<Float>) throws(EngineError) -> Int {
        let dim = spec.dim, rf = spec.rowFloats
        let scratch = RowScratch(rowFloats: rf, count: keys.count)
        let valueLength = codec.encodedLength
        try lock.withWriteLock { () throws(EngineError) in
            if dropped { throw .unknownTable(spec.name) }
            try load(keys, into: scratch)
            for j in 0..<keys.count {
                optimizer.apply(scratch.row(j), gradient: gradients + j * dim, step: &scratch.steps[j])
            }
            let batch = WriteBatch()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: keys.count * (RowKey.length + valueLength), alignment: 8)
            defer { buffer.deallocate() }
            for j in 0..<keys.count {
                let k = buffer.baseAddress! + j * (RowKey.length + valueLength)
                RowKey.write(slot: addressing.slot(ofRowKey: keys[j]), key: keys[j], to: k)
                codec.encode(floats: scratch.row(j), step: scratch.steps[j], into: k + RowKey.length)
                batch.put(family, key: UnsafeRawBufferPointer(start: k, count: RowKey.length),
                          value: UnsafeRawBufferPointer(start: k + RowKey.length, count: valueLength))
            }
            do { try db.write(batch, sync: sync) } catch { throw .storage("table '\(spec.name)': \(error)") }
            // Durable (per the mode): now install into the cache.
            for j in 0..<keys.count {
                if !scratch.persisted[j] { rowCount += 1 }
                if let s = cache.claim(keys[j]) {
                    cache.row(s).update(from: scratch.row(j), count: rf)
                    cache.setStep(s, scratch.steps[j]); cache.setPersisted(s, true)
                }
            }
        }
        counters.pushes.add(1, ordering: .relaxed)
        counters.rowsPushed.add(UInt64(keys.count), ordering: .relaxed)
        return keys.count
    }

    /// Marks the table dropped (waiting for in-flight requests) and forgets cached rows.
    func markDropped() {
        lock.withWriteLock { dropped = true; cache.removeAll() }
    }

    func snapshot() -> TableSnapshot {
        let (rows, cached) = lock.withReadLock { (rowCount, UInt64(cache.count)) }
        let c = counters
        return TableSnapshot(spec: spec, rows: rows, cachedRows: cached, cacheCapacityRows: UInt64(cache.capacity),
                             bytesOnDisk: db.bytesUsed(family),
                             pulls: c.pulls.load(ordering: .relaxed), pushes: c.pushes.load(ordering: .relaxed),
                             rowsPulled: c.rowsPulled.load(ordering: .relaxed), rowsPushed: c.rowsPushed.load(ordering: .relaxed),
                             cacheHits: c.cacheHits.load(ordering: .relaxed), cacheMisses: c.cacheMisses.load(ordering: .relaxed))
    }
}

/// Contiguous scratch rows for one request, with per-row step and persisted flag. Freed on deinit.
final class RowScratch {
    let rowFloats: Int
    let floats: UnsafeMutablePointer<Float>
    var steps: [UInt32]
    var persisted: [Bool]
    init(rowFloats: Int, count: Int) {
        self.rowFloats = rowFloats
        floats = .allocate(capacity: max(1, rowFloats * count))
        steps = [UInt32](repeating: 0, count: count)
        persisted = [Bool](repeating: false, count: count)
    }
    deinit { floats.deallocate() }
    @inline(__always) func row(_ j: Int) -> UnsafeMutablePointer<Float> { floats + j * rowFloats }
}
