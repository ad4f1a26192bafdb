/// A bounded in-memory cache of decoded rows (weights + optimizer state), each with its optimizer step,
/// the sequence number of the last update-log record applied to it, an `exists` flag and a `dirty` flag.
///
/// Invariants: at most `capacity` rows. A clean row equals its stored RocksDB row, or (when not `exists`)
/// its deterministic initial value with nothing stored. A dirty row is newer than RocksDB; its updates are
/// in the table's update log, and it is never evicted: the owner must flush it first. Rows live in
/// 4096-row chunks allocated on demand, so an empty cache costs nothing. CLOCK eviction.
/// Not thread-safe: the owning table serialises access (lookups under its shared lock only set the
/// advisory reference bits).
public final class HotRowCache {
    public let rowFloats: Int
    public let capacity: Int
    private static let chunkRows = 4096
    private var chunks: [UnsafeMutablePointer<Float>] = []
    private var keys: [UInt64] = []
    private var steps: [UInt32] = []
    private var seqs: [UInt64] = []
    private var exists: [Bool] = []
    private var dirty: [Bool] = []
    private var referenced: UnsafeMutablePointer<UInt8>
    private var index = UInt64Map()
    private var hand = 0
    public private(set) var dirtyCount = 0
    /// Rows evicted or forgotten so far. A reader that fetched rows from storage may install them only if
    /// this did not change since its read: otherwise a row updated, flushed and evicted meanwhile would be
    /// replaced by the older image it read.
    public private(set) var evictions: UInt64 = 0

    public init(rowFloats: Int, capacity: Int) {
        self.rowFloats = rowFloats
        self.capacity = max(0, capacity)
        referenced = .allocate(capacity: max(1, self.capacity))
    }
    deinit { chunks.forEach { $0.deallocate() }; referenced.deallocate() }

    public var count: Int { keys.count }

    /// The slot of a cached row, marking it recently used, or nil.
    @inline(__always) public func lookup(_ key: UInt64) -> Int? {
        guard let s = index.get(key) else { return nil }
        referenced[s] = 1
        return s
    }

    @inline(__always) public func row(_ slot: Int) -> UnsafeMutablePointer<Float> {
        chunks[slot / Self.chunkRows] + (slot % Self.chunkRows) * rowFloats
    }
    @inline(__always) public func key(_ slot: Int) -> UInt64 { keys[slot] }
    @inline(__always) public func step(_ slot: Int) -> UInt32 { steps[slot] }
    @inline(__always) public func seq(_ slot: Int) -> UInt64 { seqs[slot] }
    @inline(__always) public func exists(_ slot: Int) -> Bool { exists[slot] }
    @inline(__always) public func isDirty(_ slot: Int) -> Bool { dirty[slot] }

    /// Sets a row's metadata after its floats were written.
    @inline(__always) public func set(_ slot: Int, step: UInt32, seq: UInt64, exists e: Bool, dirty d: Bool) {
        steps[slot] = step; seqs[slot] = seq; exists[slot] = e
        if dirty[slot] != d { dirtyCount += d ? 1 : -1; dirty[slot] = d }
    }
    /// Marks a dirty row clean (after it was written to RocksDB).
    public func markClean(_ slot: Int) { if dirty[slot] { dirty[slot] = false; dirtyCount -= 1 } }

    /// Slots of all dirty rows.
    public func dirtySlots() -> [Int] { (0..<keys.count).filter { dirty[$0] } }

    /// Returns a slot for `key`: its existing slot, a free one, or a clean row evicted by CLOCK. Returns nil
    /// when the capacity is zero or every row is dirty (flush, then retry). The caller fills a new slot.
    public func claim(_ key: UInt64) -> Int? {
        if let s = index.get(key) { referenced[s] = 1; return s }
        guard capacity > 0 else { return nil }
        if keys.count < capacity {
            let s = keys.count
            if s / Self.chunkRows >= chunks.count { chunks.append(.allocate(capacity: Self.chunkRows * rowFloats)) }
            keys.append(key); steps.append(0); seqs.append(0); exists.append(false); dirty.append(false)
            referenced[s] = 1
            index.set(key, s)
            return s
        }
        // Two sweeps: the first may only clear reference bits.
        for _ in 0..<(2 * capacity) {
            let s = hand
            hand = (hand + 1) % capacity
            if dirty[s] { continue }
            if referenced[s] != 0 { referenced[s] = 0; continue }
            index.remove(keys[s])
            evictions &+= 1
            keys[s] = key; steps[s] = 0; seqs[s] = 0; exists[s] = false; referenced[s] = 1
            index.set(key, s)
            return s
        }
        return nil
    }

    /// Forgets every row (the table was dropped).
    public func removeAll() {
        index = UInt64Map(); keys.removeAll(); steps.removeAll(); seqs.removeAll(); exists.removeAll(); dirty.removeAll()
        hand = 0; dirtyCount = 0; evictions &+= 1
    }
}

/// Open-addressing hash map from UInt64 keys to non-negative Int values (linear probing, backward-shift
/// deletion, multiplicative hashing). Much cheaper than `Dictionary` (SipHash) on the row-lookup hot path.
/// Not thread-safe.
public struct UInt64Map {
    private var keys: [UInt64]
    private var values: [Int32]     // -1 = empty
    private var mask: Int
    public private(set) var count = 0

    public init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        keys = [UInt64](repeating: 0, count: n); values = [Int32](repeating: -1, count: n); mask = n - 1
    }

    @inline(__always) private func home(_ k: UInt64) -> Int { Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask }

    @inline(__always) public func get(_ k: UInt64) -> Int? {
        var i = home(k)
        return keys.withUnsafeBufferPointer { kp in
            values.withUnsafeBufferPointer { vp in
                while true {
                    let v = vp[i]
                    if v < 0 { return nil }
                    if kp[i] == k { return Int(v) }
                    i = (i + 1) & mask
                }
            }
        }
    }

    public mutating func set(_ k: UInt64, _ v: Int) {
        if (count + 1) * 2 > keys.count { grow() }
        var i = home(k)
        while values[i] >= 0 {
            if keys[i] == k { values[i] = Int32(v); return }
            i = (i + 1) & mask
        }
        keys[i] = k; values[i] = Int32(v); count += 1
    }

    /// Inserts `k` with `v` unless present; returns the existing value or nil when inserted.
    public mutating func getOrInsert(_ k: UInt64, _ v: Int) -> Int? {
        if (count + 1) * 2 > keys.count { grow() }
        var i = home(k)
        while values[i] >= 0 {
            if keys[i] == k { return Int(values[i]) }
            i = (i + 1) & mask
        }
        keys[i] = k; values[i] = Int32(v); count += 1
        return nil
    }

    public mutating func remove(_ k: UInt64) {
        var i = home(k)
        while true {
            if values[i] < 0 { return }
            if keys[i] == k { break }
            i = (i + 1) & mask
        }
        // Backward-shift deletion keeps probe sequences intact.
        var j = i
        while true {
            values[i] = -1
            while true {
                j = (j + 1) & mask
                if values[j] < 0 { count -= 1; return }
                let h = home(keys[j])
                // Move j to i if its home is not cyclically in (i, j].
                if (i <= j) ? (h <= i || h > j) : (h <= i && h > j) { break }
            }
            keys[i] = keys[j]; values[i] = values[j]; i = j
        }
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2); values = [Int32](repeating: -1, count: oldKeys.count * 2)
        mask = keys.count - 1; count = 0
        for i in 0..<oldKeys.count where oldValues[i] >= 0 { set(oldKeys[i], Int(oldValues[i])) }
    }
}
