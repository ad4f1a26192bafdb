import Vocabulary
import Synchronization

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
    /// CLOCK reference bits; set by lookups under the owner's shared lock, so atomic.
    private let referenced: UnsafeMutablePointer<Atomic<UInt8>>
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
        for i in 0..<max(1, self.capacity) { (referenced + i).initialize(to: Atomic(0)) }
    }
    deinit { chunks.forEach { $0.deallocate() }; referenced.deinitialize(count: max(1, capacity)); referenced.deallocate() }

    public var count: Int { keys.count }

    /// The slot of a cached row, marking it recently used, or nil.
    @inline(__always) public func lookup(_ key: UInt64) -> Int? {
        guard let s = index.get(key) else { return nil }
        (referenced + s).pointee.store(1, ordering: .relaxed)
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
        if let s = index.get(key) { (referenced + s).pointee.store(1, ordering: .relaxed); return s }
        guard capacity > 0 else { return nil }
        if keys.count < capacity {
            let s = keys.count
            if s / Self.chunkRows >= chunks.count { chunks.append(.allocate(capacity: Self.chunkRows * rowFloats)) }
            keys.append(key); steps.append(0); seqs.append(0); exists.append(false); dirty.append(false)
            (referenced + s).pointee.store(1, ordering: .relaxed)
            index.set(key, s)
            return s
        }
        // Two sweeps: the first may only clear reference bits.
        for _ in 0..<(2 * capacity) {
            let s = hand
            hand = (hand + 1) % capacity
            if dirty[s] { continue }
            if (referenced + s).pointee.load(ordering: .relaxed) != 0 { (referenced + s).pointee.store(0, ordering: .relaxed); continue }
            index.remove(keys[s])
            evictions &+= 1
            keys[s] = key; steps[s] = 0; seqs[s] = 0; exists[s] = false; (referenced + s).pointee.store(1, ordering: .relaxed)
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
