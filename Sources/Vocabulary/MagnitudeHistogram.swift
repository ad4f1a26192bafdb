import Foundation

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
