import Foundation
import Vocabulary
import Storage

/// One shard's view of a dynamic-sparsity table (see `SparsityReportResponse` in the .proto).
public struct SparsityReport: Sendable, Equatable {
    public var rows: UInt64 = 0
    public var active: UInt64 = 0
    public var inactive: UInt64 = 0
    public var fired: UInt64 = 0
    public var weightHistogram = [UInt64](repeating: 0, count: MagnitudeHistogram.bins)
    public var growthHistogram = [UInt64](repeating: 0, count: MagnitudeHistogram.bins)
    public var round: UInt32 = 0
    public var pushesSinceStep: UInt64 = 0
    public var storedBytes: UInt64 = 0
    public var denseBytes: UInt64 = 0
    public var activePerNewRow: UInt32 = 0
    public init() {}
}

/// What one prune-and-regrow step did on one shard.
public struct SparsityStepResult: Sendable, Equatable {
    public var pruned: UInt64, grown: UInt64, active: UInt64, round: UInt32, rows: UInt64
}

extension EmbeddingTable {
    var sparsityKey: [UInt8] { identity.sparsityKey }

    /// Decodes every stored row (inside an exclusive section after a full flush). `body` gets the row key,
    /// the decoded row (valid during the call), step, sequence number and stored length.
    func forEachStoredRow(_ body: (UInt64, UnsafeMutablePointer<Float>, UInt32, UInt64, Int) throws(EngineError) -> Void) throws(EngineError) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: spec.rowFloats)
        defer { row.deallocate() }
        do {
            try db.scan(family) { k, v in
                guard k.count == RowKey.length else { return true }   // the stored-row counter
                guard let (_, key) = RowKey.decode(k) else { throw EngineError.storage("table '\(spec.name)': malformed row key of \(k.count) bytes") }
                let (step, seq): (UInt32, UInt64)
                do { (step, seq) = try codec.decode(v, into: row) } catch { throw EngineError.storage("table '\(spec.name)' row \(key): \(error)") }
                try body(key, row, step, seq, v.count)
                return true
            }
        } catch let e as EngineError { throw e } catch { throw .storage("table '\(spec.name)': \(error)") }
    }

    /// The full in-memory form of row `key` (weights, state and, for sparse tables, score and bitmaps), as a
    /// push would see it: cached, stored or initial. For inspection and tests.
    func fullRow(key: UInt64) throws(EngineError) -> [Float] {
        try withExclusive { (_, stripes) throws(EngineError) -> [Float] in
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: 1)
            try load([key], into: scratch, stripes)
            return Array(UnsafeBufferPointer(start: scratch.row(0), count: spec.rowFloats))
        }
    }

    /// Every stored row decoded into memory (inside an exclusive section after a full flush).
    func loadAllRows() throws(EngineError) -> (keys: [UInt64], steps: [UInt32], seqs: [UInt64], rows: [Float]) {
        var keys: [UInt64] = [], steps: [UInt32] = [], seqs: [UInt64] = [], rows: [Float] = []
        try forEachStoredRow { key, row, step, seq, _ throws(EngineError) in
            keys.append(key); steps.append(step); seqs.append(seq)
            rows.append(contentsOf: UnsafeBufferPointer(start: row, count: spec.rowFloats))
        }
        return (keys, steps, seqs, rows)
    }

    /// Adds rewritten rows to `batch` and refreshes their cached copies (inside an exclusive section, after
    /// a full flush: cached copies are clean).
    func rewrite(_ indices: [Int], keys: [UInt64], steps: [UInt32], seqs: [UInt64], rows: [Float], into batch: WriteBatch, _ stripes: [RowStripe]) {
        let rf = spec.rowFloats
        let rowBatch = RowBatch(codec: codec, capacity: indices.count)
        rows.withUnsafeBufferPointer { all in
            for i in indices {
                let row = all.baseAddress! + i * rf
                rowBatch.add(slot: addressing.slot(ofRowKey: keys[i]), key: keys[i], row: row, step: steps[i], seq: seqs[i])
                if let (stripe, slot) = cached(keys[i], stripes) { stripe.row(slot).update(from: row, count: rf) }
            }
        }
        rowBatch.add(to: batch, family: family)
    }

    /// Counts, histograms and bytes of this shard's part of a sparse table (a checkpoint is taken first).
    func sparsityReport() throws(EngineError) -> SparsityReport {
        guard let sp = sparsity else { throw .notSparse(spec.name) }
        let f = sp.format
        let denseLength = UInt64(RowCodec.headerLength + 4 * f.dim * (1 + f.stateSlots))
        return try rewriteQuiesced { (_, state, _) throws(EngineError) in
            var r = SparsityReport()
            r.round = state.sparsityRound; r.pushesSinceStep = state.lastSeq - state.sparsityStepSeq; r.activePerNewRow = UInt32(sp.activePerRow)
            let now = state.lastSeq
            try forEachStoredRow { _, row, _, seq, length throws(EngineError) in
                r.rows += 1; r.storedBytes += UInt64(length); r.denseBytes += denseLength
                r.fired += UInt64(f.firedCount(row))
                for j in 0..<f.dim {
                    if f.isActive(row, j) {
                        r.active += 1; r.weightHistogram[MagnitudeHistogram.bin(abs(row[j]))] += 1
                    } else {
                        r.inactive += 1; r.growthHistogram[MagnitudeHistogram.bin(sp.growthScore(row, j, pushesSinceRowUpdate: now - seq))] += 1
                    }
                }
            }
            return r
        }
    }

    /// Prunes exactly `prune` active entries (smallest |w|) and grows exactly `grow` entries that were inactive
    /// before the step (largest decayed accumulated |gradient|); ties break by (row key, column). All or nothing,
    /// durable on return. Logged as an operation (its parameters: the step is a pure function of the rows and
    /// the sequence, so a follower or a replay computes the same rows).
    func sparsityStep(prune: UInt64, grow: UInt64, round: UInt32, origin: OperationOrigin = .local) throws(EngineError) -> SparsityStepResult {
        guard let sp = sparsity else { throw .notSparse(spec.name) }
        let f = sp.format, rf = spec.rowFloats
        return try rewriteQuiesced { (batch, state, stripes) throws(EngineError) in
            // Every row in memory: this shard's part of the table, decoded.
            var (keys, steps, seqs, rows) = try loadAllRows()
            struct Entry { var value: Float; var row: Int32; var column: Int32 }
            var active: [Entry] = [], inactive: [Entry] = []
            // The sequence before the step's own (the same here, on a follower and in a replay).
            let now: UInt64
            switch origin {
            case .local: now = state.lastSeq
            case .replicated(let s), .replayed(let s): now = s - 1
            }
            rows.withUnsafeMutableBufferPointer { all in
                for i in 0..<keys.count {
                    let row = all.baseAddress! + i * rf
                    for j in 0..<f.dim {
                        if f.isActive(row, j) { active.append(Entry(value: abs(row[j]), row: Int32(i), column: Int32(j))) } else {
                            inactive.append(Entry(value: sp.growthScore(row, j, pushesSinceRowUpdate: now - seqs[i]), row: Int32(i), column: Int32(j)))
                        }
                    }
                }
            }
            guard prune <= UInt64(active.count), grow <= UInt64(inactive.count) else {
                throw .sparsityStepTooLarge(table: spec.name, message: "asked to prune \(prune) of \(active.count) active and grow \(grow) of \(inactive.count) inactive entries")
            }
            func tieBreak(_ a: Entry, _ b: Entry) -> Bool { keys[Int(a.row)] != keys[Int(b.row)] ? keys[Int(a.row)] < keys[Int(b.row)] : a.column < b.column }
            active.sort { $0.value != $1.value ? $0.value < $1.value : tieBreak($0, $1) }
            inactive.sort { $0.value != $1.value ? $0.value > $1.value : tieBreak($0, $1) }
            var changed = Set<Int>()
            rows.withUnsafeMutableBufferPointer { all in
                for e in active.prefix(Int(prune)) { sp.prune(all.baseAddress! + Int(e.row) * rf, Int(e.column)); changed.insert(Int(e.row)) }
                for e in inactive.prefix(Int(grow)) { sp.grow(all.baseAddress! + Int(e.row) * rf, Int(e.column)); changed.insert(Int(e.row)) }
            }
            // The step's own sequence: pushes since the step count from it.
            let stepSeq = try commitOperation(.sparsityStep(prune: prune, grow: grow, round: round), origin, &state)
            rewrite(changed.sorted(), keys: keys, steps: steps, seqs: seqs, rows: rows, into: batch, stripes)
            var encoded = [UInt8](repeating: 0, count: 12)
            encoded.withUnsafeMutableBytes { $0.storeBytes(of: round, as: UInt32.self); $0.storeBytes(of: stepSeq, toByteOffset: 4, as: UInt64.self) }
            batch.put(db.defaultFamily, key: sparsityKey, value: encoded)
            state.sparsityRound = round; state.sparsityStepSeq = stepSeq
            let activeAfter = UInt64(active.count) - prune + grow
            return SparsityStepResult(pruned: prune, grown: grow, active: activeAfter, round: round, rows: UInt64(keys.count))
        }
    }
}
