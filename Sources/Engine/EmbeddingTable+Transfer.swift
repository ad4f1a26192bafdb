import Foundation
import Vocabulary
import Storage

/// A page of exported rows.
public struct ExportPage: Sendable {
    public var keys: [UInt64] = []
    public var values: [Float] = []
    /// (slot, row key) to resume after; nil when the table is done.
    public var next: (slot: UInt16, key: UInt64)? = nil
}

extension EmbeddingTable {
    /// Up to `limit` stored rows after `cursor` in (slot, row key) order, as a pull would return them. The
    /// first page (no cursor) checkpoints the table, so the pages cover every row written before.
    func exportRows(after cursor: (slot: UInt16, key: UInt64)?, limit: Int) throws(EngineError) -> ExportPage {
        if cursor == nil { try checkpoint() }
        let dim = spec.dim
        return try lock.withReadLock { () throws(EngineError) -> ExportPage in
            if dropped { throw .unknownTable(spec.name) }
            var page = ExportPage()
            let row = UnsafeMutablePointer<Float>.allocate(capacity: spec.rowFloats)
            let view = UnsafeMutablePointer<Float>.allocate(capacity: dim)
            defer { row.deallocate(); view.deallocate() }
            var start: [UInt8]? = nil
            if let c = cursor { start = RowKey.encode(slot: c.slot, key: c.key) }
            var last: (UInt16, UInt64)? = nil
            do {
                try db.scan(family, from: start) { k, v in
                    guard let (slot, key) = RowKey.decode(k) else { throw EngineError.storage("table '\(spec.name)': malformed row key") }
                    if let c = cursor, slot == c.slot && key == c.key { return true }   // resume strictly after the cursor
                    if page.keys.count == limit { page.next = last.map { (slot: $0.0, key: $0.1) }; return false }
                    // A cached copy is newer than the stored one when dirty.
                    if let s = cache.lookup(key), cache.isDirty(s) { row.update(from: cache.row(s), count: spec.rowFloats) } else {
                        do { _ = try codec.decode(v, into: row) } catch { throw EngineError.storage("table '\(spec.name)' row \(key): \(error)") }
                    }
                    if let dnis { dnis.view(row, into: view, state: dnisState) } else { view.update(from: row, count: dim) }
                    page.keys.append(key)
                    page.values.append(contentsOf: UnsafeBufferPointer(start: view, count: dim))
                    last = (slot, key)
                    return true
                }
            } catch let e as EngineError { throw e } catch { throw .storage("table '\(spec.name)': \(error)") }
            return page
        }
    }

    /// Sets the weights of rows `keys` (distinct) to `values` with fresh optimizer state, durably (one synced
    /// RocksDB batch; rows stamped with the current log sequence so no earlier logged update is replayed onto
    /// them). Dense tables only. All or nothing.
    func importRows(keys: [UInt64], values: UnsafePointer<Float>) throws(EngineError) {
        guard codec.sparse == nil else {
            throw .invalidSpec(table: spec.name, message: "import is for dense tables; sparse and DNIS rows carry masks (restore a checkpoint instead)")
        }
        let dim = spec.dim, rf = spec.rowFloats
        try lock.withWriteLock { () throws(EngineError) in
            if dropped { throw .unknownTable(spec.name) }
            let scratch = RowScratch(rowFloats: rf, count: keys.count)
            try load(keys, into: scratch)
            for j in 0..<keys.count {
                let row = scratch.row(j)
                row.update(from: values + j * dim, count: dim)
                optimizer.initializeState(row)
                scratch.steps[j] = 0
            }
            try installLocked(keys: keys, rows: scratch)
        }
    }

    /// Writes scratch row j for `keys[j]` to RocksDB in one synced batch, stamped with the current log
    /// sequence (so no earlier logged update is replayed onto it), counts the rows new to this shard
    /// (`rows.exists` as loaded before) and replaces cached copies with clean ones. Caller holds the
    /// exclusive lock.
    func installLocked(keys: [UInt64], rows scratch: RowScratch) throws(EngineError) {
        let seq = logSeq, rf = spec.rowFloats
        let batch = RowBatch(codec: codec, capacity: keys.count)
        for j in 0..<keys.count {
            batch.add(slot: addressing.slot(ofRowKey: keys[j]), key: keys[j], row: scratch.row(j), step: scratch.steps[j], seq: seq)
        }
        let b = WriteBatch()
        batch.add(to: b, family: family)
        do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)': \(error)") }
        counters.rowsFlushed.add(UInt64(keys.count), ordering: .relaxed)
        for j in 0..<keys.count {
            if !scratch.exists[j] { rowCount += 1 }
            if let s = cache.lookup(keys[j]) {
                cache.row(s).update(from: scratch.row(j), count: rf)
                cache.set(s, step: scratch.steps[j], seq: seq, exists: true, dirty: false)
            }
        }
    }
}
