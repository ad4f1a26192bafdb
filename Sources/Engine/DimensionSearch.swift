import Foundation
import Vocabulary
import Storage

/// A DNIS table's state as the engine's API hands it out (see `DnisState`).
public typealias DnisStateFields = (pruned: Bool, version: UInt64, alpha: [Float], threshold: Float, assignmentRound: UInt32)

/// Mutable DNIS state of one table on one shard: alpha (blocks x dim, row-major, in [0, 1]) with its version,
/// whether alpha has been folded into the rows (pruned), the cut applied to rows created after pruning, and
/// the number of block assignments. Guarded by the table lock; persisted under `dnis/<table>`.
struct DnisState: Equatable {
    var pruned = false
    var version: UInt64 = 0
    var threshold: Float = 0
    var assignmentRound: UInt32 = 0
    var alpha: [Float]

    init(blocks: Int, dim: Int) { alpha = [Float](repeating: 1, count: blocks * dim) }

    /// [pruned u32][assignment round u32][version u64][threshold f32][alpha f32...], little-endian.
    var encoded: [UInt8] {
        var out = [UInt8](repeating: 0, count: 20 + 4 * alpha.count)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(pruned ? 1 : 0), as: UInt32.self)
            b.storeBytes(of: assignmentRound, toByteOffset: 4, as: UInt32.self)
            b.storeBytes(of: version, toByteOffset: 8, as: UInt64.self)
            b.storeBytes(of: threshold, toByteOffset: 16, as: Float.self)
            alpha.withUnsafeBytes { (b.baseAddress! + 20).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return out
    }
    init?(decoding bytes: [UInt8], blocks: Int, dim: Int) {
        guard bytes.count == 20 + 4 * blocks * dim else { return nil }
        self.init(blocks: blocks, dim: dim)
        bytes.withUnsafeBytes { b in
            pruned = b.loadUnaligned(as: UInt32.self) != 0
            assignmentRound = b.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
            version = b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            threshold = b.loadUnaligned(fromByteOffset: 16, as: Float.self)
            for i in 0..<alpha.count { alpha[i] = b.loadUnaligned(fromByteOffset: 20 + 4 * i, as: Float.self) }
        }
    }
}

/// The DNIS rules applied to one table's rows (`SparseRowFormat` without growth scores; meta word 0 = push
/// count, meta word 1 = block). Pure functions of the row, the config and the table's `DnisState`.
///
/// Search mode: every entry is active; the model sees e = v * alpha[block] (pulls), pushes carry dL/de and the
/// shard applies dL/dv = dL/de * alpha[block] (logged after the chain rule, so replay does not depend on
/// alpha). Pruned mode: alpha is folded into the rows; inactive entries read 0 and are never updated.
public struct DimensionSearch: Sendable {
    public let config: DnisConfig
    public let format: SparseRowFormat
    var dim: Int { format.dim }
    var lastBlock: Int { config.blocks - 1 }

    public init(config: DnisConfig, format: SparseRowFormat) { self.config = config; self.format = format }

    @inline(__always) func block(_ row: UnsafePointer<Float>) -> Int { min(lastBlock, Int(format.meta(row, 1))) }
    @inline(__always) func count(_ row: UnsafePointer<Float>) -> UInt32 { format.meta(row, 0) }

    /// A fresh row (weights and state initialised densely): all entries active, count 0, the last (least
    /// frequent) block. After pruning, the row is also scaled by the last block's alpha and cut at the
    /// prune threshold, as pruning would have treated it.
    func initialize(_ row: UnsafeMutablePointer<Float>, state: DnisState) {
        let f = format
        for w in 0..<f.wordCount {
            let bits = w == f.wordCount - 1 && dim % 32 != 0 ? (UInt32(1) << UInt32(dim % 32)) - 1 : UInt32.max
            row[f.maskOffset + w] = Float(bitPattern: bits); row[f.firedOffset + w] = Float(bitPattern: bits)
        }
        f.setMeta(row, 0, 0); f.setMeta(row, 1, UInt32(lastBlock))
        if state.pruned { fold(row, alpha: state.alpha, cut: state.threshold) }
    }

    /// Folds alpha[block] into the row's active entries and deactivates those whose folded magnitude is below
    /// `cut` (or exactly zero).
    func fold(_ row: UnsafeMutablePointer<Float>, alpha: [Float], cut: Float) {
        let b = block(row) * dim
        for k in 0..<dim where format.isActive(row, k) {
            let v = row[k] * alpha[b + k]
            if abs(v) < cut || v == 0 { deactivate(row, k) } else { row[k] = v }
        }
    }

    func deactivate(_ row: UnsafeMutablePointer<Float>, _ k: Int) {
        format.setBit(row, format.maskOffset, k, false)
        row[k] = 0
        for s in 0..<format.stateSlots { row[(1 + s) * dim + k] = format.stateFill[s] }
    }

    /// What a pull returns: v * alpha[block] while searching, the stored (folded, masked) row after pruning.
    @inline(__always) func view(_ row: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, state: DnisState) {
        if state.pruned { out.update(from: row, count: dim); return }
        let b = block(row) * dim
        state.alpha.withUnsafeBufferPointer { a in for k in 0..<dim { out[k] = row[k] * a[b + k] } }
    }

    /// Chain rule of a push while searching: dL/dv = dL/de * alpha[block], in place.
    func chainRule(_ row: UnsafePointer<Float>, gradient g: UnsafeMutablePointer<Float>, state: DnisState) {
        guard !state.pruned else { return }
        let b = block(row) * dim
        for k in 0..<dim { g[k] *= state.alpha[b + k] }
    }

    /// After the optimizer updated a row: counts the push and keeps pruned entries at zero.
    func afterUpdate(_ row: UnsafeMutablePointer<Float>) {
        format.setMeta(row, 0, count(row) &+ 1)
        for k in 0..<dim where !format.isActive(row, k) {
            row[k] = 0
            for s in 0..<format.stateSlots { row[(1 + s) * dim + k] = format.stateFill[s] }
        }
    }

    /// Adds this row's share of dL/dalpha: partial[block][k] += (dL/de)[k] * v[k].
    func accumulateAlphaGradient(_ row: UnsafePointer<Float>, gradient g: UnsafePointer<Float>, into partial: inout [Float]) {
        let b = block(row) * dim
        for k in 0..<dim { partial[b + k] += g[k] * row[k] }
    }

    /// One alpha step (DNIS): add the L1 subgradient, normalise each block's gradient by the mean of its
    /// absolute values (+1e-8), SGD, clamp to [0, 1].
    public static func updateAlpha(_ alpha: inout [Float], gradient: [Float], blocks: Int, dim: Int, learningRate: Float, l1: Float) {
        precondition(alpha.count == blocks * dim && gradient.count == blocks * dim)
        for b in 0..<blocks {
            var g = (0..<dim).map { k -> Float in
                let a = alpha[b * dim + k]
                return gradient[b * dim + k] + l1 * (a > 0 ? 1 : (a < 0 ? -1 : 0))
            }
            let scale = g.reduce(0) { $0 + abs($1) } / Float(dim) + 1e-8
            for k in 0..<dim {
                g[k] /= scale
                alpha[b * dim + k] = min(1, max(0, alpha[b * dim + k] - learningRate * g[k]))
            }
        }
    }
}
