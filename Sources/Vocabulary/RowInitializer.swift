import Foundation

/// Deterministic initial weights: a pure function of (initializer seed, row key, column), so every shard,
/// replica and restart gives an unseen row the same value without storing it.
/// Generator: SplitMix64 seeded with XXH64(row key, seed). Uniform: low + (high-low) * (x >> 40) / 2^24.
/// Normal: Box-Muller on pairs of 53-bit uniforms in (0, 1].
public struct RowInitializer: Sendable {
    public let config: InitializerConfig
    public let dim: Int
    public init(config: InitializerConfig, dim: Int) { self.config = config; self.dim = dim }

    public func fill(_ row: UnsafeMutablePointer<Float>, rowKey: UInt64) {
        var rng = SplitMix64(seed: EmbedHash.xxh64(rowKey, seed: config.seed))
        switch config.kind {
        case .zeros:
            row.update(repeating: 0, count: dim)
        case .uniform:
            let span = config.high - config.low
            for j in 0..<dim {
                let u = Float(rng.next() >> 40) * (1.0 / 16_777_216.0)
                row[j] = config.low + span * u
            }
        case .normal:
            var j = 0
            while j < dim {
                let u1 = (Double(rng.next() >> 11) + 1) * 0x1p-53
                let u2 = Double(rng.next() >> 11) * 0x1p-53
                let r = (-2 * log(u1)).squareRoot()
                row[j] = config.mean + config.stddev * Float(r * cos(2 * .pi * u2))
                if j + 1 < dim { row[j + 1] = config.mean + config.stddev * Float(r * sin(2 * .pi * u2)) }
                j += 2
            }
        }
    }

    public func values(rowKey: UInt64) -> [Float] {
        [Float](unsafeUninitializedCapacity: dim) { b, n in fill(b.baseAddress!, rowKey: rowKey); n = dim }
    }
}
