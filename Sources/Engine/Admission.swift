import Foundation
import Vocabulary
import Storage

/// A count-min sketch of 16-bit saturating counters: `depth` rows of `width` counters, each row indexed by
/// its own hash of the key. `increment` adds one in every row and returns the new estimate (the minimum over
/// the rows), which never undercounts and overcounts only through collisions. Not thread-safe.
struct CountMinSketch {
    static let depth = 4
    let width: Int
    private var counters: [UInt16]

    init(width: Int) {
        precondition(width > 0 && width & (width - 1) == 0, "sketch width must be a power of two")
        self.width = width
        counters = [UInt16](repeating: 0, count: Self.depth * width)
    }

    var bytes: Int { counters.count * 2 }

    @inline(__always) private func index(_ key: UInt64, row: Int) -> Int {
        row * width + Int(truncatingIfNeeded: EmbedHash.xxh64(key, seed: 0x5eed_0000 &+ UInt64(row))) & (width - 1)
    }

    /// Adds one to `key`'s counters; returns its new estimate.
    mutating func increment(_ key: UInt64) -> Int {
        var estimate = Int.max
        for r in 0..<Self.depth {
            let i = index(key, row: r)
            if counters[i] < UInt16.max { counters[i] &+= 1 }
            estimate = min(estimate, Int(counters[i]))
        }
        return estimate
    }

    /// The current estimate of `key` (no change).
    func estimate(_ key: UInt64) -> Int {
        (0..<Self.depth).reduce(Int.max) { min($0, Int(counters[index(key, row: $1)])) }
    }

    /// The counters as little-endian bytes (saved with a checkpoint).
    var encoded: [UInt8] {
        var out = [UInt8](repeating: 0, count: 8 + counters.count * 2)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt64(width).littleEndian, as: UInt64.self)
            for (i, c) in counters.enumerated() { b.storeBytes(of: c.littleEndian, toByteOffset: 8 + 2 * i, as: UInt16.self) }
        }
        return out
    }

    /// A sketch from `encoded` bytes of the same width, or nil when they do not match.
    init?(encoded: [UInt8], width: Int) {
        guard encoded.count == 8 + Self.depth * width * 2 else { return nil }
        let stored = encoded.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard stored == UInt64(width) else { return nil }
        self.init(width: width)
        encoded.withUnsafeBytes { b in for i in counters.indices { counters[i] = UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 8 + 2 * i, as: UInt16.self)) } }
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
