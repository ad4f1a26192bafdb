import Foundation
import Vocabulary
import Storage

/// A page of exported rows.
public struct ExportPage: Sendable {
    public var keys: [UInt64] = []
    public var values: [Float] = []
    /// First page: the table's last sequence after the export's checkpoint (0 on later pages).
    public var version: UInt64 = 0
    /// (slot, row key) to resume after; nil when the table is done.
    public var next: (slot: UInt16, key: UInt64)? = nil
}

extension EmbeddingTable {
    /// Up to `limit` stored rows after `cursor` in (slot, row key) order, as a pull would return them. The
    /// first page (no cursor) checkpoints the table, so the pages cover every row written before. Cached dirty
    /// rows are newer than the stored ones and are returned instead.
    func exportRows(after cursor: (slot: UInt16, key: UInt64)?, limit: Int, since: UInt64 = 0) throws(EngineError) -> ExportPage {
        var version: UInt64 = 0
        if cursor == nil {
            try checkpoint()
            version = lastSequence
        }
        let dim = spec.dim
        let dnisState = dnisBox.withLock { $0 }
        var page = ExportPage()
        page.version = version
        let row = UnsafeMutablePointer<Float>.allocate(capacity: spec.rowFloats)
        let view = UnsafeMutablePointer<Float>.allocate(capacity: dim)
        defer { row.deallocate(); view.deallocate() }
        var start: [UInt8]? = nil
        if let c = cursor { start = RowKey.encode(slot: c.slot, key: c.key) }
        var last: (UInt16, UInt64)? = nil
        do {
            try db.scan(family, from: start) { k, v in
                guard let (slot, key) = RowKey.decode(k) else { return false }   // past the rows: the stored-row counter
                if let c = cursor, slot == c.slot && key == c.key { return true }   // resume strictly after the cursor
                if page.keys.count == limit { page.next = last.map { (slot: $0.0, key: $0.1) }; return false }
                let dirty = store.withStripe(store.stripe(of: key)) { stripe -> Bool in
                    guard let s = stripe.find(key), stripe.isDirty(s) else { return false }
                    row.update(from: stripe.row(s), count: spec.rowFloats)
                    return true
                }
                if !dirty {
                    let seq: UInt64
                    do { seq = try codec.decode(v, into: row).seq } catch { throw EngineError.storage("table '\(spec.name)' row \(key): \(error)") }
                    // Incremental: a stored row not updated after `since` is left out (a dirty one changed after
                    // the first page's checkpoint, so after `since`).
                    if since > 0 && seq <= since { return true }
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

    /// Up to `limit` keys of rows removed (evicted) after sequence `since` and not stored again, in (slot,
    /// row key) order after `cursor`, for incremental exports.
    func removedRows(after cursor: (slot: UInt16, key: UInt64)?, limit: Int, since: UInt64) throws(EngineError) -> ExportPage {
        var page = ExportPage()
        if cursor == nil { page.version = lastSequence }
        let start = cursor.map { RemovedRowKey.encode(slot: $0.slot, key: $0.key) } ?? [RemovedRowKey.prefix]
        var candidates: [(slot: UInt16, key: UInt64)] = []
        var more = false
        do {
            try db.scan(family, from: start) { k, v in
                guard let (slot, key) = RemovedRowKey.decode(k) else { return false }
                if let c = cursor, slot == c.slot && key == c.key { return true }
                if candidates.count == limit { more = true; return false }
                let at = v.count == 8 ? UInt64(littleEndian: v.loadUnaligned(as: UInt64.self)) : 0
                if at > since { candidates.append((slot, key)) }
                return true
            }
        } catch let e as EngineError { throw e } catch { throw .storage("table '\(spec.name)' removed rows: \(error)") }
        // A row admitted again after its removal is a change, not a removal.
        let scratch = RowScratch(rowFloats: spec.rowFloats, count: candidates.count)
        try readStored(candidates.map(\.key), into: scratch)
        for (j, c) in candidates.enumerated() where !scratch.exists[j] && !store.withStripe(store.stripe(of: c.key), { st in st.find(c.key).map { st.exists($0) } ?? false }) {
            page.keys.append(c.key)
        }
        if more, let last = candidates.last { page.next = last }
        return page
    }

    /// Sets the weights of rows `keys` (distinct) to `values` with fresh optimizer state, durably (rows
    /// stamped with the current log sequence so no earlier logged update is replayed onto them). Dense
    /// tables only. All or nothing.
    func importRows(keys: [UInt64], values: UnsafePointer<Float>) throws(EngineError) {
        guard codec.sparse == nil else {
            throw .invalidSpec(table: spec.name, message: "import is for dense tables; sparse and DNIS rows carry masks (restore a checkpoint instead)")
        }
        let dim = spec.dim, rf = spec.rowFloats
        try withExclusive { (state, stripes) throws(EngineError) in
            let scratch = RowScratch(rowFloats: rf, count: keys.count)
            try load(keys, into: scratch, stripes)
            for j in 0..<keys.count {
                let row = scratch.row(j)
                row.update(from: values + j * dim, count: dim)
                optimizer.initializeState(row)
                scratch.steps[j] = 0
            }
            // The rows bypass the update log: followers must copy rows again. Counted (durably) first, so a
            // crash in between costs at most a needless copy, never a missed import.
            var generation = rowsGeneration.load(ordering: .relaxed) + 1
            let b = WriteBatch()
            b.put(db.defaultFamily, key: identity.rowsGenerationKey, value: withUnsafeBytes(of: &generation) { Array($0) })
            do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)' import: \(error)") }
            rowsGeneration.store(generation, ordering: .relaxed)
            try installExclusive(keys: keys, rows: scratch, state: &state, stripes)
        }
    }

    /// Writes scratch row j for `keys[j]` to RocksDB in one synced batch (through RocksDB's WAL, with the
    /// stored-row counter), stamped with the current log sequence (so no earlier logged update is replayed onto
    /// it), and replaces cached copies with clean ones. Inside an exclusive section; every committed update
    /// is made durable and written first, so a stamped row never hides an update newer than the stamp.
    /// Installs of at least this many rows are ingested as an SST file instead of written through the memtable.
    static let ingestMinimumRows = 1024

    func installExclusive(keys: [UInt64], rows scratch: RowScratch, state: inout CommitState, _ stripes: [RowStripe],
                          keepSequences: Bool = false) throws(EngineError) {
        try flushAllExclusive(stripes, lastSeq: state.lastSeq)
        let lastSeq = state.lastSeq, rf = spec.rowFloats
        let seqOf = { (j: Int) in keepSequences ? scratch.seqs[j] : lastSeq }
        let batch = RowBatch(codec: codec, capacity: keys.count)
        var newRows = 0
        for j in 0..<keys.count {
            batch.add(slot: addressing.slot(ofRowKey: keys[j]), key: keys[j], row: scratch.row(j), step: scratch.steps[j], seq: seqOf(j))
            if !scratch.exists[j] { newRows += 1 }
        }
        var count = storedRows + UInt64(newRows)
        let counter = withUnsafeBytes(of: &count) { Array($0) }
        do {
            if keys.count >= Self.ingestMinimumRows {
                // Bulk: one SST file ingested (no memtable, no WAL), then the row counter (synced). The counter
                // stays out of the file so files of disjoint key ranges do not overlap; a crash between the two
                // steps leaves the rows in and the counter short by this batch (stats only).
                try batch.ingest(into: db, family: family)
                let b = WriteBatch()
                b.put(family, key: Self.storedRowsKey, value: counter)
                try db.write(b, sync: true)
            } else {
                let b = WriteBatch()
                batch.add(to: b, family: family)
                b.put(family, key: Self.storedRowsKey, value: counter)
                try db.write(b, sync: true)
            }
        } catch { throw .storage("table '\(spec.name)': \(error)") }
        storedRowsCount.store(count, ordering: .relaxed)
        counters.rowsFlushed.add(UInt64(keys.count), ordering: .relaxed)
        // A follower's copy (`keepSequences`) also warms the cache while it has room: the log records that
        // follow then find their rows in memory instead of reading RocksDB.
        var room = keepSequences ? max(0, store.capacity - store.liveRows) : 0
        for j in 0..<keys.count {
            if let (stripe, slot) = cached(keys[j], stripes) {
                stripe.row(slot).update(from: scratch.row(j), count: rf)
                stripe.setState(slot, step: scratch.steps[j], seq: seqOf(j), exists: true, stored: true, dirty: false)
            } else if room > 0 {
                let stripe = stripes[store.stripe(of: keys[j])]
                guard stripe.find(keys[j]) == nil else { continue }
                let slot = stripe.insert(keys[j], clock: 0)
                stripe.fill(slot, from: scratch.row(j), step: scratch.steps[j], seq: seqOf(j), exists: true, stored: true)
                room -= 1
            }
        }
    }
}
