import Foundation
import Vocabulary
import Storage

/// The dynamic-sparsity (DSL) rules applied to one table's rows in their in-memory form (`SparseRowFormat`).
/// Pure functions of the row, the table's `SparsityConfig` and the row key; thread-safe for distinct rows.
///
/// Invariants kept: an inactive entry has weight 0 and the optimizer's initial state; a new row has exactly
/// `activePerRow` active entries chosen by a seeded shuffle of (seed, row key); `fired` ⊇ `mask`.
public struct DynamicSparsity: Sendable {
    public let config: SparsityConfig
    public let format: SparseRowFormat
    public let activePerRow: Int

    public init(config: SparsityConfig, format: SparseRowFormat) {
        self.config = config; self.format = format; activePerRow = config.activePerRow(dim: format.dim)
    }

    /// Draws the initial mask of a fresh row (weights and state already initialised densely) and clears the
    /// entries left inactive.
    public func initialize(_ row: UnsafeMutablePointer<Float>, rowKey: UInt64) {
        let f = format, dim = f.dim
        (row + f.maskOffset).update(repeating: 0, count: 2 * f.wordCount)
        (row + f.scoreOffset).update(repeating: 0, count: dim)
        var order = Array(0..<dim)
        var rng = SplitMix64(seed: EmbedHash.xxh64(rowKey, seed: config.seed ^ 0x5350_4152_5345))
        for i in 0..<activePerRow {
            let k = i + Int(rng.next() % UInt64(dim - i))
            order.swapAt(i, k)
            f.setBit(row, f.maskOffset, order[i], true)
            f.setBit(row, f.firedOffset, order[i], true)
        }
        for j in 0..<dim where !f.isActive(row, j) { clearEntry(row, j) }
    }

    /// Zeroes the weight of entry `j` and resets its optimizer state.
    @inline(__always) public func clearEntry(_ row: UnsafeMutablePointer<Float>, _ j: Int) {
        row[j] = 0
        for s in 0..<format.stateSlots { row[(1 + s) * format.dim + j] = format.stateFill[s] }
    }

    /// After the optimizer updated every entry of a row with gradient `g`: restores inactive entries (weight 0,
    /// initial state) and adds |g| to their growth score, decayed by `growthDecay^pushesSinceRowUpdate` first
    /// (kept at float16 precision).
    public func afterUpdate(_ row: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, pushesSinceRowUpdate: UInt64) {
        let f = format
        let decay = Float(pow(Double(config.growthDecay), Double(min(pushesSinceRowUpdate, 1 << 20))))
        for j in 0..<f.dim where !f.isActive(row, j) {
            clearEntry(row, j)
            // Rounded to float16, the stored precision, so a row reads back exactly as it was in memory.
            row[f.scoreOffset + j] = Float(Float16(row[f.scoreOffset + j] * decay + abs(g[j])))
        }
    }

    /// The growth score of inactive entry `j` as of `pushesSinceRowUpdate` pushes after the row's last update.
    @inline(__always) public func growthScore(_ row: UnsafePointer<Float>, _ j: Int, pushesSinceRowUpdate: UInt64) -> Float {
        row[format.scoreOffset + j] * Float(pow(Double(config.growthDecay), Double(min(pushesSinceRowUpdate, 1 << 20))))
    }

    public func prune(_ row: UnsafeMutablePointer<Float>, _ j: Int) {
        format.setBit(row, format.maskOffset, j, false)
        clearEntry(row, j)
        row[format.scoreOffset + j] = 0
    }

    /// Activates entry `j` at weight 0 with fresh optimizer state.
    public func grow(_ row: UnsafeMutablePointer<Float>, _ j: Int) {
        format.setBit(row, format.maskOffset, j, true)
        format.setBit(row, format.firedOffset, j, true)
        clearEntry(row, j)
        row[format.scoreOffset + j] = 0
    }
}

extension TableSpec {
    /// Floats of a row in memory: weights then optimizer state (then the sparse parts, see `SparseRowFormat`).
    public var rowFloats: Int { sparseFormat?.memoryFloats ?? dim * (1 + optimizer.kind.stateSlots) }

    /// The masked row layout of a dynamic-sparsity table (with growth scores) or of a DNIS table (meta words:
    /// push count, block).
    public var sparseFormat: SparseRowFormat? {
        if sparsity != nil { return SparseRowFormat(dim: dim, stateSlots: optimizer.kind.stateSlots, stateFill: stateFill) }
        if dnis != nil { return SparseRowFormat(dim: dim, stateSlots: optimizer.kind.stateSlots, stateFill: stateFill, growthScores: false, metaWords: 2) }
        return nil
    }
}
