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
    /// Wall-clock time of the last eviction pass (0: none since start).
    var lastPass: Double = 0

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

/// Which rows a pass evicts: the time-to-live cutoff, the norm threshold, and the budget rule's threshold
/// (rows whose policy key is below `budgetBin`, plus `budgetTies` rows in that bin).
struct EvictionRules {
    var seqCutoff: UInt64 = 0          // evict rows last updated at or below this sequence (0: no TTL rule)
    var minL2Norm: Float = 0
    var policy: EvictionConfig.Policy = .leastRecentlyUpdated
    var budgetBin = -1                  // -1: no budget rule
    var budgetTies = 0
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

    /// Whether the flusher should run a pass now: the interval passed since the last one, or the rows are over
    /// 1.005 x max_rows (then at most one pass a second).
    func evictionDue(now: Double) -> Bool {
        guard let e = spec.eviction else { return false }
        let last = clock.withLock { $0.lastPass }
        if now - last >= Double(e.intervalSeconds) { return true }
        return e.maxRows > 0 && now - last >= 1 && Double(rowCount) > Double(e.maxRows) * 1.005
    }

    /// One eviction pass (see `EvictionConfig` in the proto): a checkpoint first (no logged update is older
    /// than what is deleted), then a scan of the stored rows deciding by the rules, deleting in batches inside
    /// short exclusive sections that keep every row updated since the checkpoint. `onDemand` applies the
    /// budget rule as soon as rows exceed max_rows (the background pass waits for 1.005x). Returns (rows
    /// evicted, rows afterwards).
    func evict(onDemand: Bool) throws(EngineError) -> (evicted: Int, rowsAfter: UInt64) {
        guard let e = spec.eviction else { return (0, rowCount) }
        let now = Date().timeIntervalSince1970
        clock.withLock { $0.lastPass = now }
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
        // The budget rule: how many rows over the target, and which bins of the policy key go.
        let rows = rowCount
        if e.maxRows > 0 && Double(rows) > Double(e.maxRows) * (onDemand ? 1 : 1.005) {
            var histogram = [Int](repeating: 0, count: Self.evictionBins)
            var ruled = 0
            try scanStored { (k, v) throws(EngineError) in
                guard let r = try inspect(k, v) else { return }
                if ruledOut(r) { ruled += 1 } else { histogram[rules.bin(seq: r.seq, step: r.step)] += 1 }
            }
            let target = Int(Double(e.maxRows) * 0.995)
            var excess = max(0, Int(rows) - ruled - target)
            if excess > 0 {
                var b = 0
                while b < Self.evictionBins && histogram[b] <= excess { excess -= histogram[b]; b += 1 }
                rules.budgetBin = b
                rules.budgetTies = excess
            }
        }
        guard rules.seqCutoff > 0 || rules.minL2Norm > 0 || rules.budgetBin >= 0 else {
            counters.evictionPasses.add(1, ordering: .relaxed)
            return (0, rows)
        }
        var ties = rules.budgetTies
        var batch: [UInt64] = []
        var evicted = 0
        try scanStored { (k, v) throws(EngineError) in
            guard let r = try inspect(k, v) else { return }
            var go = ruledOut(r)
            if !go && rules.budgetBin >= 0 {
                let b = rules.bin(seq: r.seq, step: r.step)
                if b < rules.budgetBin { go = true } else if b == rules.budgetBin && ties > 0 { go = true; ties -= 1 }
            }
            guard go else { return }
            batch.append(r.key)
            if batch.count == Self.evictionBatch { evicted += try deleteEvicted(batch, checkpointSeq: checkpointSeq); batch.removeAll(keepingCapacity: true) }
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
    /// checkpoint (cached dirty or newer, pinned, or stored with a newer sequence): one synced RocksDB batch
    /// (rows and the stored-row counter), then the cached copies. Returns the rows deleted.
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
            let b = WriteBatch()
            for k in victims { b.delete(family, key: RowKey.encode(slot: addressing.slot(ofRowKey: k), key: k)) }
            var count = storedRows >= UInt64(victims.count) ? storedRows - UInt64(victims.count) : 0
            b.put(family, key: Self.storedRowsKey, value: withUnsafeBytes(of: &count) { Array($0) })
            do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)' eviction: \(error)") }
            storedRowsCount.store(count, ordering: .relaxed)
            for k in victims {
                let stripe = stripes[store.stripe(of: k)]
                if let slot = stripe.find(k) { stripe.remove(slot) }
            }
            return victims.count
        }
    }
}
