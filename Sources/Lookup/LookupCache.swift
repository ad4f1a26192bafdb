import Foundation

/// A bounded cache of rows for the lookup service: at most `capacity` rows, each served for at most
/// `ttl` seconds after it was fetched (training keeps changing rows; the TTL bounds staleness). Eviction is
/// least-recently-used, in batches of 1/8 of the capacity. Thread-safe (one lock).
public final class LookupCache: @unchecked Sendable {
    struct Key: Hashable { let table: String; let id: UInt64 }
    struct Entry { var values: [Float]; var fetched: Double; var used: UInt64 }
    public let capacity: Int
    public let ttl: Double
    private var entries: [Key: Entry] = [:]
    private var tick: UInt64 = 0
    private let lock = NSLock()

    public init(capacity: Int, ttlSeconds: Double) { self.capacity = capacity; ttl = ttlSeconds }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    public var count: Int { lock.withLock { entries.count } }

    /// Fills the rows of cached, fresh ids into `out` (row i at i*dim) and returns the indices it could not.
    public func lookup(table: String, ids: [UInt64], dim: Int, into out: UnsafeMutablePointer<Float>) -> [Int] {
        guard capacity > 0 else { return Array(ids.indices) }
        let now = Self.now()
        var missing: [Int] = []
        lock.withLock {
            for (i, id) in ids.enumerated() {
                let key = Key(table: table, id: id)
                if var e = entries[key], now - e.fetched <= ttl, e.values.count == dim {
                    tick += 1; e.used = tick; entries[key] = e
                    e.values.withUnsafeBufferPointer { (out + i * dim).update(from: $0.baseAddress!, count: dim) }
                } else {
                    missing.append(i)
                }
            }
        }
        return missing
    }

    /// Stores fetched rows (row j of `rows` for `ids[j]`).
    public func insert(table: String, ids: [UInt64], dim: Int, rows: UnsafePointer<Float>) {
        guard capacity > 0 else { return }
        let now = Self.now()
        lock.withLock {
            for (j, id) in ids.enumerated() {
                tick += 1
                entries[Key(table: table, id: id)] = Entry(values: Array(UnsafeBufferPointer(start: rows + j * dim, count: dim)), fetched: now, used: tick)
            }
            if entries.count > capacity {
                let excess = entries.count - capacity + capacity / 8
                for key in entries.sorted(by: { $0.value.used < $1.value.used }).prefix(excess).map(\.key) { entries.removeValue(forKey: key) }
            }
        }
    }
}
