/// SplitMix64 (Steele, Lea, Flood 2014): the deterministic generator behind initial row values, benchmark
/// workloads, shuffles and negative sampling. Never Swift's per-process-seeded generators: results must be
/// reproducible across processes, runs and languages.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    @inline(__always) public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A uniform double in [0, 1) from the top 53 bits.
    @inline(__always) public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
