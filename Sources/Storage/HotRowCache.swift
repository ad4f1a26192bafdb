/// A bounded in-memory cache of decoded rows (weights + optimizer state + step), with CLOCK eviction.
///
/// Invariants: at most `capacity` rows; every cached row equals the row last written to RocksDB, or, when
/// not `isPersisted`, the row's deterministic initial value with nothing stored (the cache
/// is write-through: the owner installs a row only after its write batch was accepted by the WAL), so
/// evicting never loses data. Rows are stored in 4096-row chunks allocated on demand, so an empty cache
/// costs nothing. Not thread-safe: the owning table serialises access (shared lookups under its read lock
/// only touch the reference bits, which are advisory).
public final class HotRowCache {
    public let rowFloats: Int
    public let capacity: Int
    private static let chunkRows = 4096
    private var chunks: [UnsafeMutablePointer<Float>] = []
    private var keys: [UInt64] = []
    private var steps: [UInt32] = []
    private var persisted: [Bool] = []
    private var referenced: UnsafeMutablePointer<UInt8>
    private var index: [UInt64: Int32] = [:]
    private var hand = 0
    public private(set) var hits: UInt64 = 0
    public private(set) var misses: UInt64 = 0

    public init(rowFloats: Int, capacity: Int) {
        self.rowFloats = rowFloats
        self.capacity = max(0, capacity)
        referenced = .allocate(capacity: max(1, self.capacity))
    }
    deinit { chunks.forEach { $0.deallocate() }; referenced.deallocate() }

    public var count: Int { keys.count }

    /// The slot of a cached row, marking it recently used, or nil.
    @inline(__always) public func lookup(_ key: UInt64) -> Int? {
        guard let s = index[key] else { return nil }
        referenced[Int(s)] = 1
        return Int(s)
    }
    /// Counts hits and misses of a batch (kept separate so shared lookups do not race on counters).
    public func record(hits h: Int, misses m: Int) { hits &+= UInt64(h); misses &+= UInt64(m) }

    @inline(__always) public func row(_ slot: Int) -> UnsafeMutablePointer<Float> {
        chunks[slot / Self.chunkRows] + (slot % Self.chunkRows) * rowFloats
    }
    @inline(__always) public func step(_ slot: Int) -> UInt32 { steps[slot] }
    @inline(__always) public func setStep(_ slot: Int, _ value: UInt32) { steps[slot] = value }
    /// False for a row holding its initial value that was never written (a pulled, unseen row).
    @inline(__always) public func isPersisted(_ slot: Int) -> Bool { persisted[slot] }
    @inline(__always) public func setPersisted(_ slot: Int, _ value: Bool) { persisted[slot] = value }

    /// Returns a slot for `key` (existing or newly claimed, evicting with CLOCK when full), or nil when the
    /// capacity is zero. The caller fills the row of a newly claimed slot.
    public func claim(_ key: UInt64) -> Int? {
        if let s = index[key] { referenced[Int(s)] = 1; return Int(s) }
        guard capacity > 0 else { return nil }
        if keys.count < capacity {
            let s = keys.count
            if s / Self.chunkRows >= chunks.count {
                chunks.append(.allocate(capacity: Self.chunkRows * rowFloats))
            }
            keys.append(key); steps.append(0); persisted.append(false); referenced[s] = 1
            index[key] = Int32(s)
            return s
        }
        while true {
            if referenced[hand] == 0 { break }
            referenced[hand] = 0
            hand = (hand + 1) % capacity
        }
        let s = hand
        hand = (hand + 1) % capacity
        index.removeValue(forKey: keys[s])
        keys[s] = key; steps[s] = 0; persisted[s] = false; referenced[s] = 1
        index[key] = Int32(s)
        return s
    }

    /// Forgets every row (e.g. when the table is dropped).
    public func removeAll() {
        index.removeAll(); keys.removeAll(); steps.removeAll(); persisted.removeAll(); hand = 0
    }
}
