import Foundation
import Vocabulary
import Storage

/// (sequence, wall clock) samples of a table: the sequence number it had reached at which time, so eviction
/// by seconds becomes a sequence cutoff without a time in every row. One sample a second at most, at most
/// `capacity`; when full, every other sample of the older half is dropped (coarser further back). Also
/// remembers when the last eviction pass ran. Saved with each checkpoint.
struct SequenceClock {
    static let capacity = 4096
    private(set) var samples: [(seq: UInt64, time: Double)] = []
    /// Wall-clock time the last eviction pass started and ended (0: none since start), its rows afterwards,
    /// and the row growth rate measured between the two passes before (rows a second).
    var lastPass: Double = 0
    var lastPassEnd: Double = 0
    var rowsAfterLastPass: UInt64 = 0
    var growthPerSecond: Double = 0
    /// How long the last pass took (seconds).
    var lastPassSeconds: Double = 0

    init() {}

    /// Records that the table had reached `seq` at `time`.
    mutating func note(seq: UInt64, at time: Double) {
        if let last = samples.last, time - last.time < 1 || seq == last.seq { return }
        samples.append((seq, time))
        if samples.count > Self.capacity {
            let half = samples.count / 2
            samples = samples[..<half].enumerated().filter { $0.offset % 2 == 0 }.map(\.element) + samples[half...]
        }
    }

    /// The largest sequence the table had reached at or before `time` (0 when no sample is that old): every
    /// row last updated at or below it was last updated no later than `time`.
    func sequence(atOrBefore time: Double) -> UInt64 {
        var best: UInt64 = 0
        for s in samples where s.time <= time { best = max(best, s.seq) }
        return best
    }

    var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(samples.count * 16)
        for s in samples {
            withUnsafeBytes(of: s.seq.littleEndian) { out += $0 }
            withUnsafeBytes(of: s.time.bitPattern.littleEndian) { out += $0 }
        }
        return out
    }

    init?(encoded: [UInt8]) {
        guard encoded.count % 16 == 0 else { return nil }
        samples = encoded.withUnsafeBytes { b in
            (0..<(encoded.count / 16)).map { i in
                (UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16 * i, as: UInt64.self)),
                 Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16 * i + 8, as: UInt64.self))))
            }
        }
    }
}

/// Which rows a pass evicts by rule (the time-to-live cutoff, the norm threshold), and how the budget rule
/// bins a row by its policy key.
struct EvictionRules {
    var seqCutoff: UInt64 = 0          // evict rows last updated at or below this sequence (0: no TTL rule)
    var minL2Norm: Float = 0
    var policy: EvictionConfig.Policy = .leastRecentlyUpdated
    var binScale: Double = 1

    /// The budget histogram's bin of a row: its last-update sequence (LRU) or update count (LFU), scaled.
    @inline(__always) func bin(seq: UInt64, step: UInt32) -> Int {
        switch policy {
        case .leastRecentlyUpdated: min(EmbeddingTable.evictionBins - 1, Int(Double(seq) * binScale))
        case .leastFrequentlyUpdated: min(EmbeddingTable.evictionBins - 1, Int(step))
        }
    }
}

extension EmbeddingTable {
    static let evictionBins = 65536
    /// Rows deleted per exclusive section (pushes wait at most one such section).
    static let evictionBatch = 8192

    /// Rows of the table on this shard (stored + dirty never stored).
    var rowCount: UInt64 { storedRows + UInt64(store.counts.unstored) }

    /// The shortest time between the end of one background pass and the start of the next for the budget.
    static let budgetPassGap = 0.25

    /// Whether the flusher should run a pass now: the interval passed since the last one, or the table's
    /// `rows` reached max_rows (then at most every `budgetPassGap` seconds after the last pass ended).
    func evictionDue(now: Double, rows: UInt64) -> Bool {
        guard let e = spec.eviction else { return false }
        let (last, lastEnd) = clock.withLock { ($0.lastPass, $0.lastPassEnd) }
        if now - last >= Double(e.intervalSeconds) { return true }
        return e.maxRows > 0 && now - lastEnd >= Self.budgetPassGap && rows >= e.maxRows
    }

    /// The row count a budget pass evicts down to. On demand: 0.995 x max_rows. In the background, rows keep
    /// arriving while a pass runs and until the next one, so the pass leaves room for what the growth rate
    /// measured between passes brings in that time (at least 0.5%, at most 1% of max_rows): rows then stay
    /// within 1% under max_rows (creation is capped at max_rows; new ids past it are refused until the next
    /// pass, which a faster stream reaches sooner).
    func budgetTarget(_ maxRows: UInt64, onDemand: Bool) -> Int {
        let m = Double(maxRows)
        guard !onDemand else { return Int(m * 0.995) }
        let (growth, lastDuration) = clock.withLock { ($0.growthPerSecond, $0.lastPassSeconds) }
        let headroom = min(0.01 * m, max(0.005 * m, growth * (2 * lastDuration + Self.budgetPassGap)))
        return Int(m - headroom)
    }

    /// One eviction pass (see `EvictionConfig` in the proto): a checkpoint first (no logged update is older
    /// than what is deleted), then a scan of the stored rows deciding by the rules, deleting in batches inside
    /// short exclusive sections that keep every row updated since the checkpoint. The budget rule applies
    /// once rows reach max_rows, down to `budgetTarget` (`onDemand`: 0.995x). Returns (rows evicted, rows
    /// afterwards).
    func evict(onDemand: Bool) throws(EngineError) -> (evicted: Int, rowsAfter: UInt64) {
        guard let e = spec.eviction else { return (0, rowCount) }
        let now = Date().timeIntervalSince1970
        let rowsAtStart = rowCount
        clock.withLock { c in
            // Rows added a second between the end of the last pass and now.
            if c.lastPassEnd > 0, now > c.lastPassEnd, rowsAtStart > c.rowsAfterLastPass {
                c.growthPerSecond = Double(rowsAtStart - c.rowsAfterLastPass) / (now - c.lastPassEnd)
            }
            c.lastPass = now
        }
        defer {
            let after = rowCount
            let end = Date().timeIntervalSince1970
            clock.withLock { $0.lastPassEnd = end; $0.lastPassSeconds = max(0, end - now); $0.rowsAfterLastPass = after }
        }
        try checkpoint()
        let (checkpointSeq, lastSeq) = commit.withLock { ($0.checkpointSeq, $0.lastSeq) }
        var rules = EvictionRules()
        rules.minL2Norm = e.minL2Norm
        rules.policy = e.policy
        if e.ttlUpdates > 0, lastSeq > e.ttlUpdates { rules.seqCutoff = lastSeq - e.ttlUpdates }
        if e.ttlSeconds > 0 { rules.seqCutoff = max(rules.seqCutoff, clock.withLock { $0.sequence(atOrBefore: now - Double(e.ttlSeconds)) }) }
        rules.seqCutoff = min(rules.seqCutoff, checkpointSeq)
        rules.binScale = Double(Self.evictionBins - 1) / Double(max(1, lastSeq))
        let rf = spec.rowFloats, dim = spec.dim
        let row = UnsafeMutablePointer<Float>.allocate(capacity: rf)
        defer { row.deallocate() }
        /// Decodes a stored row's header (and weights when the norm rule needs them); nil for non-row keys.
        func inspect(_ k: UnsafeRawBufferPointer, _ v: UnsafeRawBufferPointer) throws(EngineError) -> (key: UInt64, seq: UInt64, step: UInt32, norm: Float)? {
            guard let (_, key) = RowKey.decode(k) else { return nil }
            let header: (step: UInt32, seq: UInt64)
            do { header = try codec.decode(v, into: row) } catch { throw .storage("table '\(spec.name)' row \(key): \(error.description)") }
            var norm: Float = 0
            if rules.minL2Norm > 0 { for c in 0..<dim { norm += row[c] * row[c] }; norm = norm.squareRoot() }
            return (key, header.seq, header.step, norm)
        }
        func ruledOut(_ r: (key: UInt64, seq: UInt64, step: UInt32, norm: Float)) -> Bool {
            (rules.seqCutoff > 0 && r.seq <= rules.seqCutoff) || (rules.minL2Norm > 0 && r.norm < rules.minL2Norm)
        }
        var batch: [UInt64] = []
        var evicted = 0
        func take(_ key: UInt64) throws(EngineError) {
            batch.append(key)
            if batch.count == Self.evictionBatch { evicted += try deleteEvicted(batch, checkpointSeq: checkpointSeq); batch.removeAll(keepingCapacity: true) }
        }
        let rows = rowCount
        if e.maxRows > 0 && rows >= e.maxRows {
            // The budget rule, in one scan: rows the other rules take go at once; the others are remembered
            // with their bin of the policy key (12 bytes a row), and the lowest bins go until the rows left
            // are at the target.
            var histogram = [Int](repeating: 0, count: Self.evictionBins)
            var keptKeys: [UInt64] = [], keptBins: [UInt16] = []
            keptKeys.reserveCapacity(Int(rows)); keptBins.reserveCapacity(Int(rows))
            var ruled = 0
            try scanStored { (k, v) throws(EngineError) in
                guard let r = try inspect(k, v) else { return }
                if ruledOut(r) { ruled += 1; try take(r.key); return }
                let b = rules.bin(seq: r.seq, step: r.step)
                histogram[b] += 1
                keptKeys.append(r.key); keptBins.append(UInt16(b))
            }
            var excess = max(0, Int(rows) - ruled - budgetTarget(e.maxRows, onDemand: onDemand))
            if excess > 0 {
                var cut = 0
                while cut < Self.evictionBins && histogram[cut] <= excess { excess -= histogram[cut]; cut += 1 }
                var ties = excess
                for (key, b) in zip(keptKeys, keptBins) {
                    if Int(b) < cut { try take(key) } else if Int(b) == cut && ties > 0 { ties -= 1; try take(key) }
                }
            }
        } else if rules.seqCutoff > 0 || rules.minL2Norm > 0 {
            try scanStored { (k, v) throws(EngineError) in
                guard let r = try inspect(k, v), ruledOut(r) else { return }
                try take(r.key)
            }
        }
        if !batch.isEmpty { evicted += try deleteEvicted(batch, checkpointSeq: checkpointSeq) }
        counters.rowsEvicted.add(UInt64(evicted), ordering: .relaxed)
        counters.evictionPasses.add(1, ordering: .relaxed)
        return (evicted, rowCount)
    }

    /// Visits every stored (key, value) of the table's family.
    private func scanStored(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(EngineError) -> Void) throws(EngineError) {
        do {
            try db.scan(family) { k, v in try body(k, v); return true }
        } catch let e as EngineError { throw e } catch { throw .storage("table '\(spec.name)' eviction scan: \(error)") }
    }

    /// Deletes `keys` (rows the scan chose) in one exclusive section, keeping any updated since the pass's
    /// checkpoint (cached dirty or newer, pinned, or stored with a newer sequence): an operation record of the
    /// victims, one synced RocksDB batch (rows and the stored-row counter), then the cached copies. Returns the
    /// rows deleted.
    private func deleteEvicted(_ keys: [UInt64], checkpointSeq: UInt64) throws(EngineError) -> Int {
        try withExclusive { (state, stripes) throws(EngineError) -> Int in
            var victims: [UInt64] = []
            var uncached: [UInt64] = []
            for k in keys {
                let stripe = stripes[store.stripe(of: k)]
                if let slot = stripe.find(k) {
                    if stripe.isLoading(slot) || stripe.pinCount(slot) > 0 || stripe.isDirty(slot) || stripe.has(slot, RowState.flushing)
                        || stripe.seq(slot) > checkpointSeq || !stripe.exists(slot) { continue }
                    victims.append(k)
                } else {
                    uncached.append(k)
                }
            }
            if !uncached.isEmpty {
                // Stored copies of rows not cached: keep those written again since the checkpoint.
                let scratch = RowScratch(rowFloats: spec.rowFloats, count: uncached.count)
                try readStored(uncached, into: scratch)
                for (j, k) in uncached.enumerated() where scratch.exists[j] && scratch.seqs[j] <= checkpointSeq { victims.append(k) }
            }
            guard !victims.isEmpty else { return 0 }
            // Logged first (followers and a replay delete the same rows), then deleted.
            let seq = try commitOperation(.removeRows(victims), .local, &state)
            try afterLogging { () throws(EngineError) in try deleteStoredRows(victims, removedAt: seq, stripes, what: "eviction") }
            return victims.count
        }
    }

    /// Inside an exclusive section: deletes stored rows `victims` with a removal record each (for incremental
    /// exports and checkpoints) and the stored-row counter in one synced batch, then their cached copies.
    func deleteStoredRows(_ victims: [UInt64], removedAt seq: UInt64, _ stripes: [RowStripe], what: String) throws(EngineError) {
        let b = WriteBatch()
        let removedAt = withUnsafeBytes(of: seq.littleEndian) { Array($0) }
        for k in victims {
            let slot = addressing.slot(ofRowKey: k)
            b.delete(family, key: RowKey.encode(slot: slot, key: k))
            b.put(family, key: RemovedRowKey.encode(slot: slot, key: k), value: removedAt)
        }
        var count = storedRows >= UInt64(victims.count) ? storedRows - UInt64(victims.count) : 0
        b.put(family, key: Self.storedRowsKey, value: withUnsafeBytes(of: &count) { Array($0) })
        do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)' \(what): \(error)") }
        storedRowsCount.store(count, ordering: .relaxed)
        if rowCap > 0 { rowsApprox.subtract(victims.count, ordering: .relaxed) }
        for k in victims {
            let stripe = stripes[store.stripe(of: k)]
            if let slot = stripe.find(k) { stripe.remove(slot) }
        }
    }
}
