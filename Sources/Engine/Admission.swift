import Foundation
import Vocabulary
import Storage

/// A count-min sketch of 16-bit counters with conservative update and aging: `depth` rows of `width` counters,
/// each row indexed by its own hash of the key. `increment` raises only the counters at the key's current
/// minimum (conservative update: collisions inflate estimates far less) and returns the new estimate (the
/// minimum over the rows). After every `width` increments all counters are halved (TinyLFU's reset), so the
/// estimate is a recent frequency: an id must recur within about `width` counted pushes to build up a count,
/// and a stream of ids seen once cannot saturate the sketch. Between halvings it never undercounts. Not
/// thread-safe.
struct CountMinSketch {
    static let depth = 4
    let width: Int
    private var counters: [UInt16]
    /// Increments since the last halving.
    private(set) var additions = 0

    init(width: Int) {
        precondition(width > 0 && width & (width - 1) == 0, "sketch width must be a power of two")
        self.width = width
        counters = [UInt16](repeating: 0, count: Self.depth * width)
    }

    var bytes: Int { counters.count * 2 }

    @inline(__always) private func index(_ key: UInt64, row: Int) -> Int {
        row * width + Int(truncatingIfNeeded: EmbedHash.xxh64(key, seed: 0x5eed_0000 &+ UInt64(row))) & (width - 1)
    }

    /// Counts one occurrence of `key`; returns its new estimate.
    mutating func increment(_ key: UInt64) -> Int {
        var slots = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &slots) { b in
            let idx = b.bindMemory(to: Int.self)
            var low = Int(UInt16.max)
            for r in 0..<Self.depth { idx[r] = index(key, row: r); low = min(low, Int(counters[idx[r]])) }
            if low < Int(UInt16.max) {
                for r in 0..<Self.depth where Int(counters[idx[r]]) == low { counters[idx[r]] = UInt16(low + 1) }
            }
        }
        let estimate = self.estimate(key)
        additions += 1
        if additions >= width { halve() }
        return estimate
    }

    /// Halves every counter (aging).
    mutating func halve() {
        for i in counters.indices { counters[i] >>= 1 }
        additions = 0
    }

    /// The current estimate of `key` (no change).
    func estimate(_ key: UInt64) -> Int {
        (0..<Self.depth).reduce(Int.max) { min($0, Int(counters[index(key, row: $1)])) }
    }

    /// [width u64][additions u64][counters u16...], little-endian (saved with a checkpoint).
    var encoded: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16 + counters.count * 2)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt64(width).littleEndian, as: UInt64.self)
            b.storeBytes(of: UInt64(additions).littleEndian, toByteOffset: 8, as: UInt64.self)
            for (i, c) in counters.enumerated() { b.storeBytes(of: c.littleEndian, toByteOffset: 16 + 2 * i, as: UInt16.self) }
        }
        return out
    }

    /// A sketch from `encoded` bytes of the same width, or nil when they do not match (a sketch saved with
    /// another width starts afresh).
    init?(encoded: [UInt8], width: Int) {
        guard encoded.count == 16 + Self.depth * width * 2 else { return nil }
        let (stored, added) = encoded.withUnsafeBytes { (UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)),
                                                         UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))) }
        guard stored == UInt64(width), added < UInt64(width) else { return nil }
        self.init(width: width)
        additions = Int(added)
        encoded.withUnsafeBytes { b in for i in counters.indices { counters[i] = UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 16 + 2 * i, as: UInt16.self)) } }
    }
}

/// Feature admission of one table on one shard (`AdmissionConfig`): decides, for pushed ids that have no
/// row yet, whether this push creates the row. Thread-safe (one lock around the sketch).
final class AdmissionFilter: @unchecked Sendable {
    let config: AdmissionConfig
    private let sketch: LockedBox<CountMinSketch>

    init(config: AdmissionConfig, saved: [UInt8]?) {
        self.config = config
        sketch = LockedBox(saved.flatMap { CountMinSketch(encoded: $0, width: config.sketchWidth) } ?? CountMinSketch(width: config.sketchWidth))
    }

    var sketchBytes: Int { sketch.withLock { $0.bytes } }

    /// Counts one push of each key (keys of rows that do not exist) and returns, per key, whether its row is
    /// created now: its count reached `minCount` (when set) and it drew under `probability` (when set; the draw
    /// is a pure function of the key and its count, so replays and retries decide alike).
    func admit(_ keys: [UInt64]) -> [Bool] {
        let counts = sketch.withLock { s in keys.map { s.increment($0) } }
        return zip(keys, counts).map { key, count in
            if config.minCount > 1 && count < config.minCount { return false }
            if config.probability > 0 && config.probability < 1 {
                let draw = Double(EmbedHash.xxh64(key, seed: 0xad31_0000 &+ UInt64(count)) >> 11) / Double(1 << 53)
                return draw < Double(config.probability)
            }
            return true
        }
    }

    /// The sketch's bytes, to save with a checkpoint.
    var encoded: [UInt8] { sketch.withLock { $0.encoded } }
}
