import Foundation
import Vocabulary
import Storage

extension EmbeddingTable {
    /// Up to `limit` stored rows of `slots` (strictly ascending) in (slot, key) order and their encoded form,
    /// starting in `start` (one of them) after `after` (all of it when nil): one RocksDB scan per run of
    /// consecutive slots. For a migration the caller checkpointed the table and keeps writes to the slots
    /// out; a follower's bootstrap copy passes every slot from where it resumes.
    func encodedRows(slots: [UInt16], start: UInt16, after: UInt64?, limit: Int) throws(EngineError) -> [(key: UInt64, row: [UInt8])] {
        try checkHealthy()
        guard let first = slots.firstIndex(of: start) else { return [] }
        var out: [(key: UInt64, row: [UInt8])] = []
        var i = first
        do {
            while i < slots.count, out.count < limit {
                var j = i
                while j + 1 < slots.count, slots[j + 1] == slots[j] &+ 1 { j += 1 }
                let runStart = slots[i], runEnd = slots[j]
                let resume = i == first ? after : nil
                try db.scan(family, from: RowKey.encode(slot: runStart, key: resume ?? 0)) { k, v in
                    guard let (s, key) = RowKey.decode(k), s <= runEnd else { return false }
                    if let resume, s == runStart, key <= resume { return true }
                    if out.count == limit { return false }
                    out.append((key, Array(v)))
                    return true
                }
                i = j + 1
            }
        } catch { throw .storage("table '\(spec.name)' slots \(start)...: \(error)") }
        return out
    }

    /// Installs rows migrated from another shard verbatim (weights, optimizer state, masks), re-stamped with
    /// the sequence of their operation record (logged first, so followers and a replay install them too) so no
    /// earlier local log record is replayed onto them. Durable on return; replaces any stored or cached copy.
    func installEncodedRows(_ rows: [(key: UInt64, row: [UInt8])], origin: OperationOrigin = .local) throws(EngineError) {
        let keys = rows.map(\.key)
        guard Set(keys).count == keys.count else { throw .malformed("migrated rows of '\(spec.name)' repeat a row key") }
        if spec.hashMode == .fixedBudget, let bad = keys.first(where: { $0 >= spec.rowBudget }) {
            throw .malformed("migrated row key \(bad) is outside the budget \(spec.rowBudget) of '\(spec.name)'")
        }
        try withExclusive { (state, stripes) throws(EngineError) in
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: rows.count)
            try load(keys, into: scratch, stripes)   // for `exists`; every row is then decoded over in full
            for (j, r) in rows.enumerated() {
                do { (scratch.steps[j], _) = try r.row.withUnsafeBytes { try codec.decode($0, into: scratch.row(j)) } } catch {
                    throw .malformed("migrated row \(r.key) of '\(spec.name)': \(error)")
                }
            }
            try flushAllExclusive(stripes, lastSeq: state.lastSeq)
            _ = try commitOperation(.installRows(rows.map { .init(key: $0.key, row: $0.row) }), origin, &state)
            try afterLogging { () throws(EngineError) in try installExclusive(keys: keys, rows: scratch, state: &state, stripes) }
        }
    }

    /// Deletes every row of `slots` (migrated away): dirty rows are written first, then the slot ranges are
    /// deleted in one synced batch (with the stored-row counter) and the cached rows of those slots are
    /// forgotten. Returns the rows deleted.
    /// Logged as an operation first (followers and a replay drop the same slots).
    func dropSlots(_ slots: [UInt16], origin: OperationOrigin = .local) throws(EngineError) -> Int {
        let gone = Set(slots)
        return try withExclusive { (state, stripes) throws(EngineError) -> Int in
            try flushAllExclusive(stripes, lastSeq: state.lastSeq)
            _ = try commitOperation(.dropSlots(slots), origin, &state)
            return try afterLogging { () throws(EngineError) -> Int in try deleteSlotRows(slots, gone, stripes) }
        }
    }

    /// Inside an exclusive section after a full flush: deletes the rows of `slots` (`gone`, as a set) stored
    /// and cached. Returns the rows deleted.
    private func deleteSlotRows(_ slots: [UInt16], _ gone: Set<UInt16>, _ stripes: [RowStripe]) throws(EngineError) -> Int {
        var deleted = 0
        let b = WriteBatch()
        do {
            for slot in slots {
                try db.scan(family, from: RowKey.encode(slot: slot, key: 0)) { k, _ in
                    guard let (s, _) = RowKey.decode(k), s == slot else { return false }
                    deleted += 1
                    return true
                }
                let end = RowKey.encode(slot: slot + 1, key: 0)   // slots are < 4096, so slot + 1 never overflows
                b.deleteRange(family, from: RowKey.encode(slot: slot, key: 0), to: end)
            }
            var count = storedRows - UInt64(min(UInt64(deleted), storedRows))
            b.put(family, key: Self.storedRowsKey, value: withUnsafeBytes(of: &count) { Array($0) })
            try db.write(b, sync: true)
            storedRowsCount.store(count, ordering: .relaxed)
        } catch { throw .storage("table '\(spec.name)': \(error)") }
        for stripe in stripes {
            var doomed: [Int] = []
            stripe.forEachLive { slot in
                if gone.contains(addressing.slot(ofRowKey: stripe.key(slot))) && stripe.pinCount(slot) == 0 && !stripe.isLoading(slot) { doomed.append(slot) }
            }
            doomed.forEach { stripe.remove($0) }
        }
        return deleted
    }
}
