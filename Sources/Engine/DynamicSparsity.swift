import Foundation
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

/// Log-scale magnitude histograms shared by shards and the coordinator: 4096 bins, bin 0 for x == 0, bin b >= 1
/// for x in [2^((b-1)/32 - 48), 2^(b/32 - 48)), clamped at both ends. Monotone in x.
public enum MagnitudeHistogram {
    public static let bins = 4096
    @inline(__always) public static func bin(_ x: Float) -> Int {
        guard x > 0, x.isFinite else { return x > 0 ? bins - 1 : 0 }
        return min(bins - 1, max(1, Int(((log2(Double(x)) + 48) * 32).rounded(.down)) + 1))
    }

    /// Splits a global selection of `count` entries, taken in bin order (ascending bins, or descending with
    /// `descending`), into exact per-shard counts: each shard takes everything in the bins before the bin where
    /// the global count is reached, plus a share of that bin proportional to its entries there (largest
    /// remainder). The counts sum to min(count, total) and never exceed a shard's entries.
    public static func split(_ histograms: [[UInt64]], count: UInt64, descending: Bool = false) -> [UInt64] {
        var take = [UInt64](repeating: 0, count: histograms.count)
        var remaining = min(count, histograms.reduce(0) { $0 + $1.reduce(0, +) })
        let order: [Int] = descending ? Array((0..<bins).reversed()) : Array(0..<bins)
        for b in order where remaining > 0 {
            let inBin = histograms.map { b < $0.count ? $0[b] : 0 }
            let total = inBin.reduce(0, +)
            if total == 0 { continue }
            if total <= remaining {
                for s in take.indices { take[s] += inBin[s] }
                remaining -= total
                continue
            }
            // Boundary bin: proportional shares, remainders to the largest fractions (ties to the lower shard).
            let divided = inBin.map { total.dividingFullWidth($0.multipliedFullWidth(by: remaining)) }
            var shares = divided.map(\.quotient)
            var left = remaining - shares.reduce(0, +)
            let fractions = inBin.indices.map { (s: $0, r: divided[$0].remainder) }.sorted { $0.r != $1.r ? $0.r > $1.r : $0.s < $1.s }
            for f in fractions where left > 0 && shares[f.s] < inBin[f.s] { shares[f.s] += 1; left -= 1 }
            for s in take.indices { take[s] += shares[s] }
            remaining = 0
        }
        return take
    }

    /// Consecutive selections of `sizes[0]`, `sizes[1]`, ... entries in bin order (e.g. frequency blocks, most
    /// frequent first with `descending`): per block, per shard counts. Each block is split like `split` over
    /// what the earlier blocks left, so every shard's counts follow its own local order.
    public static func splitSequential(_ histograms: [[UInt64]], sizes: [UInt64], descending: Bool = false) -> [[UInt64]] {
        var left = histograms
        var out: [[UInt64]] = []
        for size in sizes {
            let take = split(left, count: size, descending: descending)
            for s in left.indices {
                var n = take[s]
                for b in (descending ? Array((0..<left[s].count).reversed()) : Array(0..<left[s].count)) where n > 0 {
                    let t = min(n, left[s][b]); left[s][b] -= t; n -= t
                }
            }
            out.append(take)
        }
        return out
    }

    /// The upper edge of `bin` (0 for bin 0).
    public static func upperEdge(_ bin: Int) -> Float { bin == 0 ? 0 : Float(pow(2.0, Double(bin) / 32 - 48)) }
}
