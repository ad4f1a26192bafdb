import Foundation
import Vocabulary
import Storage

/// One block of a DNIS table on one shard.
public struct DnisBlockReport: Sendable, Equatable {
    public var rows: UInt64 = 0, active: UInt64 = 0, storedBytes: UInt64 = 0, denseBytes: UInt64 = 0
}

/// One shard's view of a DNIS table (see `DnisReportResponse` in the .proto).
public struct DnisReport: Sendable, Equatable {
    public var pruned: Bool
    public var alphaVersion: UInt64
    public var alpha: [Float]
    public var blocks: [DnisBlockReport]
    public var frequencyHistogram = [UInt64](repeating: 0, count: MagnitudeHistogram.bins)
    public var magnitudeHistogram = [UInt64](repeating: 0, count: MagnitudeHistogram.bins)
    public var assignmentRound: UInt32
}

extension EmbeddingTable {
    var dnisKey: [UInt8] { identity.dnisKey }

    func requireDnis() throws(EngineError) -> DimensionSearch {
        guard let d = dnis else { throw .notDnis(spec.name) }
        return d
    }

    /// Per-block rows, entries and bytes, push-count and |alpha * v| histograms (a checkpoint is taken first).
    func dnisReport() throws(EngineError) -> DnisReport {
        let d = try requireDnis()
        let f = d.format, dim = spec.dim
        let denseLength = UInt64(RowCodec.headerLength + 4 * dim * (1 + f.stateSlots))
        return try rewriteQuiesced { (_, _, _) throws(EngineError) in
            let state = dnisBox.withLock { $0 }
            var r = DnisReport(pruned: state.pruned, alphaVersion: state.version, alpha: state.alpha,
                               blocks: [DnisBlockReport](repeating: DnisBlockReport(), count: d.config.blocks), assignmentRound: state.assignmentRound)
            try forEachStoredRow { _, row, _, _, length throws(EngineError) in
                let b = d.block(row)
                r.blocks[b].rows += 1; r.blocks[b].storedBytes += UInt64(length); r.blocks[b].denseBytes += denseLength
                r.frequencyHistogram[MagnitudeHistogram.bin(Float(d.count(row)))] += 1
                for k in 0..<dim where f.isActive(row, k) {
                    r.blocks[b].active += 1
                    let v = state.pruned ? row[k] : row[k] * state.alpha[b * dim + k]
                    r.magnitudeHistogram[MagnitudeHistogram.bin(abs(v))] += 1
                }
            }
            return r
        }
    }

    /// Assigns this shard's rows to blocks by push count (descending, ties by row key): the first take[0] to
    /// block 0, the next take[1] to block 1, ...; the rest to the last block. Returns rows per block. Logged as
    /// an operation (its parameters; the assignment is a pure function of the rows).
    func dnisAssign(take: [UInt64], origin: OperationOrigin = .local) throws(EngineError) -> [UInt64] {
        let d = try requireDnis()
        guard take.count <= d.config.blocks else {
            throw .malformed("\(take.count) block counts for table '\(spec.name)' with \(d.config.blocks) blocks")
        }
        let rf = spec.rowFloats, f = d.format
        return try rewriteQuiesced { (batch, state, stripes) throws(EngineError) in
            var (keys, steps, seqs, rows) = try loadAllRows()
            let counts = rows.withUnsafeBufferPointer { all in keys.indices.map { d.count(all.baseAddress! + $0 * rf) } }
            let order = keys.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : keys[$0] < keys[$1] }
            var perBlock = [UInt64](repeating: 0, count: d.config.blocks)
            var changed: [Int] = []
            var position = 0
            rows.withUnsafeMutableBufferPointer { all in
                for (b, n) in take.enumerated().map({ ($0.offset, $0.element) }) + [(d.config.blocks - 1, UInt64(keys.count))] {
                    var n = n
                    while n > 0 && position < order.count {
                        let i = order[position]
                        let row = all.baseAddress! + i * rf
                        if Int(f.meta(row, 1)) != b { f.setMeta(row, 1, UInt32(b)); changed.append(i) }
                        perBlock[b] += 1; position += 1; n -= 1
                    }
                }
            }
            _ = try commitOperation(.dnisAssign(take: take), origin, &state)
            rewrite(changed, keys: keys, steps: steps, seqs: seqs, rows: rows, into: batch, stripes)
            let next = dnisBox.withLock { s -> DnisState in s.assignmentRound += 1; return s }
            batch.put(db.defaultFamily, key: dnisKey, value: next.encoded)
            return perBlock
        }
    }

    /// Reads alpha; with `gradient`, first applies one alpha step (the caller checked this shard is the
    /// primary); with `setVersion`, replaces alpha when the version is newer. Updates are durable on return.
    func dnisAlpha(gradient: [Float], setVersion: UInt64, setAlpha: [Float]) throws(EngineError) -> DnisState {
        let d = try requireDnis()
        let n = d.config.blocks * spec.dim
        for (name, v) in [("gradient", gradient), ("alpha", setAlpha)] where !v.isEmpty {
            guard v.count == n else { throw .malformed("\(name) of \(v.count) floats for table '\(spec.name)', expected blocks x dim = \(n)") }
            guard v.allSatisfy(\.isFinite) else { throw .malformed("\(name) for table '\(spec.name)' has NaN or Inf: nothing was applied") }
        }
        if !setAlpha.isEmpty { guard setAlpha.allSatisfy({ $0 >= 0 && $0 <= 1 }) else { throw .malformed("alpha values must be in [0, 1]") } }
        return try withExclusive { (state, _) throws(EngineError) -> DnisState in
            var next = dnisBox.withLock { $0 }
            if !gradient.isEmpty {
                guard !next.pruned else { throw .dnisPruned(spec.name) }
                DimensionSearch.updateAlpha(&next.alpha, gradient: gradient, blocks: d.config.blocks, dim: spec.dim,
                                            learningRate: d.config.alphaLearningRate, l1: d.config.alphaL1)
                next.version += 1
            } else if setVersion > next.version && !setAlpha.isEmpty && !next.pruned {
                next.alpha = setAlpha; next.version = setVersion
            }
            if next != dnisBox.withLock({ $0 }) { try storeDnisState(next, .local, &state) }
            return next
        }
    }

    /// Adopts another shard's DNIS state when it is ahead (pruned while this one is not, or a newer alpha
    /// version): a shard joining by resharding learns alpha, the mode and the cut. Durable on return.
    func adoptDnisState(pruned: Bool, version: UInt64, alpha: [Float], threshold: Float, assignmentRound: UInt32) throws(EngineError) -> Bool {
        let d = try requireDnis()
        guard alpha.count == d.config.blocks * spec.dim, alpha.allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1 }), threshold.isFinite, threshold >= 0 else {
            throw .malformed("DNIS state for table '\(spec.name)' needs blocks x dim alpha values in [0, 1] and a finite threshold")
        }
        return try withExclusive { (state, _) throws(EngineError) -> Bool in
            let current = dnisBox.withLock { $0 }
            let ahead = (pruned && !current.pruned) || (pruned == current.pruned && version > current.version)
            guard ahead else { return false }
            var next = current
            next.pruned = pruned; next.version = version; next.alpha = alpha; next.threshold = threshold
            next.assignmentRound = max(next.assignmentRound, assignmentRound)
            try storeDnisState(next, .local, &state)
            return true
        }
    }

    /// The DNIS state (mode, alpha with its version, cut, assignment round).
    func currentDnisState() throws(EngineError) -> DnisState {
        _ = try requireDnis()
        return dnisBox.withLock { $0 }
    }

    /// This shard's part of dL/dalpha for a batch: sum over `keys` of gradient * raw row, per block. Changes nothing.
    func dnisAlphaGradient(keys: [UInt64], gradients: UnsafePointer<Float>) throws(EngineError) -> [Float] {
        let d = try requireDnis()
        return try withExclusive { (_, stripes) throws(EngineError) -> [Float] in
            guard !dnisBox.withLock({ $0.pruned }) else { throw .dnisPruned(spec.name) }
            var partial = [Float](repeating: 0, count: d.config.blocks * spec.dim)
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: keys.count)
            try load(keys, into: scratch, stripes)
            for j in 0..<keys.count { d.accumulateAlphaGradient(scratch.row(j), gradient: gradients + j * spec.dim, into: &partial) }
            return partial
        }
    }

    /// Prunes exactly `prune` active entries (smallest |alpha[block] * v|, ties by row key and column), folds
    /// alpha into every row and switches to pruned mode (rows created later are cut at `threshold`).
    /// All or nothing, durable on return. Returns (pruned, active entries left, rows). Logged as an operation
    /// (its parameters; the prune is a pure function of the rows and alpha).
    func dnisPrune(prune: UInt64, threshold: Float, origin: OperationOrigin = .local) throws(EngineError) -> (UInt64, UInt64, UInt64) {
        let d = try requireDnis()
        let rf = spec.rowFloats, f = d.format, dim = spec.dim
        guard threshold.isFinite, threshold >= 0 else { throw .malformed("prune threshold \(threshold) must be finite and >= 0") }
        return try rewriteQuiesced { (batch, state, stripes) throws(EngineError) in
            let current = dnisBox.withLock { $0 }
            guard !current.pruned else { throw .dnisPruned(spec.name) }
            var (keys, steps, seqs, rows) = try loadAllRows()
            struct Entry { var value: Float; var row: Int32; var column: Int32 }
            var entries: [Entry] = []
            let alpha = current.alpha
            rows.withUnsafeBufferPointer { all in
                for i in keys.indices {
                    let row = all.baseAddress! + i * rf, b = d.block(row)
                    for k in 0..<dim where f.isActive(row, k) {
                        entries.append(Entry(value: abs(row[k] * alpha[b * dim + k]), row: Int32(i), column: Int32(k)))
                    }
                }
            }
            guard prune <= UInt64(entries.count) else {
                throw .sparsityStepTooLarge(table: spec.name, message: "asked to prune \(prune) of \(entries.count) entries")
            }
            entries.sort { $0.value != $1.value ? $0.value < $1.value : (keys[Int($0.row)] != keys[Int($1.row)] ? keys[Int($0.row)] < keys[Int($1.row)] : $0.column < $1.column) }
            rows.withUnsafeMutableBufferPointer { all in
                for e in entries.prefix(Int(prune)) { d.deactivate(all.baseAddress! + Int(e.row) * rf, Int(e.column)) }
                // Fold alpha into what is left (cut 0: entries folded to exactly 0 are dropped too).
                for i in keys.indices { d.fold(all.baseAddress! + i * rf, alpha: alpha, cut: 0) }
            }
            let active = rows.withUnsafeBufferPointer { all in keys.indices.reduce(0) { $0 + UInt64(f.activeCount(all.baseAddress! + $1 * rf)) } }
            _ = try commitOperation(.dnisPrune(prune: prune, threshold: threshold), origin, &state)
            rewrite(Array(keys.indices), keys: keys, steps: steps, seqs: seqs, rows: rows, into: batch, stripes)
            var next = current
            next.pruned = true; next.threshold = threshold
            batch.put(db.defaultFamily, key: dnisKey, value: next.encoded)
            dnisBox.withLock { $0 = next }
            return (UInt64(entries.count) - active, active, UInt64(keys.count))
        }
    }

    /// Rows of `keys` in compact form: per row `wordCount` mask words, then the values of its set bits (as a
    /// pull would return them).
    func pullCompact(keys: [UInt64]) throws(EngineError) -> (masks: [UInt32], values: [Float]) {
        let d = try requireDnis()
        let f = d.format, dim = spec.dim
        return try withExclusive { (_, stripes) throws(EngineError) -> ([UInt32], [Float]) in
            let dnisState = dnisBox.withLock { $0 }
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: keys.count)
            try load(keys, into: scratch, stripes)
            var masks: [UInt32] = [], values: [Float] = []
            let view = UnsafeMutablePointer<Float>.allocate(capacity: dim)
            defer { view.deallocate() }
            for j in 0..<keys.count {
                let row = scratch.row(j)
                for w in 0..<f.wordCount { masks.append(f.word(row, f.maskOffset, w)) }
                d.view(row, into: view, state: dnisState)
                for k in 0..<dim where f.isActive(row, k) { values.append(view[k]) }
            }
            return (masks, values)
        }
    }
}
