import Foundation
import Vocabulary
import Storage

extension EmbeddingTable {
    /// Stored rows of `slot` after row key `after` (all when nil), at most `limit`, in their encoded form
    /// (the caller checkpointed the table and keeps writes to the slot out).
    func encodedRows(slot: UInt16, after: UInt64?, limit: Int) throws(EngineError) -> [(key: UInt64, row: [UInt8])] {
        try lock.withReadLock { () throws(EngineError) -> [(key: UInt64, row: [UInt8])] in
            if dropped { throw .unknownTable(spec.name) }
            var out: [(key: UInt64, row: [UInt8])] = []
            do {
                try db.scan(family, from: RowKey.encode(slot: slot, key: after ?? 0)) { k, v in
                    guard let (s, key) = RowKey.decode(k), s == slot else { return false }
                    if let after, key <= after { return true }
                    if out.count == limit { return false }
                    out.append((key, Array(v)))
                    return true
                }
            } catch { throw .storage("table '\(spec.name)' slot \(slot): \(error)") }
            return out
        }
    }

    /// Installs rows migrated from another shard verbatim (weights, optimizer state, masks), re-stamped with
    /// this table's current log sequence so no earlier local log record is replayed onto them. Durable on
    /// return; replaces any stored or cached copy.
    func installEncodedRows(_ rows: [(key: UInt64, row: [UInt8])]) throws(EngineError) {
        try lock.withWriteLock { () throws(EngineError) in
            if dropped { throw .unknownTable(spec.name) }
            let keys = rows.map(\.key)
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: rows.count)
            try load(keys, into: scratch)   // for `exists`; every row is then decoded over in full
            for (j, r) in rows.enumerated() {
                do { (scratch.steps[j], _) = try r.row.withUnsafeBytes { try codec.decode($0, into: scratch.row(j)) } } catch {
                    throw .malformed("migrated row \(r.key) of '\(spec.name)': \(error)")
                }
            }
            try installLocked(keys: keys, rows: scratch)
        }
    }

    /// Deletes every row of `slots` (migrated away): dirty rows are written first, then the slot ranges are
    /// deleted in one synced batch and the hot-row cache is emptied (it refills from RocksDB). Returns the
    /// rows deleted.
    func dropSlots(_ slots: [UInt16]) throws(EngineError) -> Int {
        try lock.withWriteLock { () throws(EngineError) -> Int in
            if dropped { return 0 }
            try flushDirtyLocked(cache.dirtySlots().map { cache.key($0) })
            var deleted = 0
            let b = WriteBatch()
            do {
                for slot in slots {
                    try db.scan(family, from: RowKey.encode(slot: slot, key: 0)) { k, _ in
                        guard let (s, _) = RowKey.decode(k), s == slot else { return false }
                        deleted += 1
                        return true
                    }
                    let end = slot == UInt16.max ? [UInt8](repeating: 0xff, count: RowKey.length + 1) : RowKey.encode(slot: slot + 1, key: 0)
                    b.deleteRange(family, from: RowKey.encode(slot: slot, key: 0), to: end)
                }
                try db.write(b, sync: true)
            } catch { throw .storage("table '\(spec.name)': \(error)") }
            cache.removeAll()
            rowCount -= UInt64(min(UInt64(deleted), rowCount))
            return deleted
        }
    }
}
