/// Open-addressing hash map from UInt64 keys to non-negative Int values (linear probing, backward-shift
/// deletion, multiplicative hashing). Much cheaper than `Dictionary` (SipHash) on the row-lookup hot path.
/// Not thread-safe.
public struct UInt64Map {
    @usableFromInline var keys: [UInt64]
    @usableFromInline var values: [Int32]     // -1 = empty
    @usableFromInline var mask: Int
    public private(set) var count = 0

    public init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        keys = [UInt64](repeating: 0, count: n); values = [Int32](repeating: -1, count: n); mask = n - 1
    }

    @inlinable @inline(__always) func home(_ k: UInt64) -> Int { Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask }

    /// The value of `k`, or nil. Inlinable: the row-lookup hot path calls it from other modules.
    @inlinable @inline(__always) public func get(_ k: UInt64) -> Int? {
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

/// Whether every key is greater than the one before (so no two are equal): a batch its sender sorted needs no
/// `UInt64Map` to find duplicates.
public func isStrictlyIncreasing(_ keys: UnsafeBufferPointer<UInt64>) -> Bool {
    var i = 1
    while i < keys.count { if keys[i] <= keys[i - 1] { return false }; i += 1 }
    return true
}
