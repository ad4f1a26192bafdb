import Vocabulary

/// A growable buffer of trivially-copyable values in stable-until-growth memory. Not thread-safe.
struct GrowableBuffer<T> {
    private(set) var base: UnsafeMutablePointer<T>
    private(set) var capacity: Int
    init(capacity: Int, fill: T) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
        base.initialize(repeating: fill, count: self.capacity)
    }
    mutating func grow(to n: Int, fill: T) {
        guard n > capacity else { return }
        let c = max(n, capacity * 2)
        let b = UnsafeMutablePointer<T>.allocate(capacity: c)
        b.moveInitialize(from: base, count: capacity)
        (b + capacity).initialize(repeating: fill, count: c - capacity)
        base.deallocate()
        base = b; capacity = c
    }
    func free() { base.deallocate() }
    @inline(__always) subscript(i: Int) -> T {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }
}

/// What a cached row is (bits of `RowStripe.state`).
public enum RowState {
    /// The row has been written at least once (stored in RocksDB, or dirty here).
    public static let exists: UInt8 = 1
    /// RocksDB holds an image of the row (older than this one when dirty).
    public static let stored: UInt8 = 2
    /// Newer than RocksDB; its updates are in the update log. Never evicted.
    public static let dirty: UInt8 = 4
    /// An image is being written by the flusher. Never evicted.
    public static let flushing: UInt8 = 8
    /// A placeholder whose contents are being read from RocksDB; not valid yet. Never evicted.
    public static let loading: UInt8 = 16
    /// An unused slot (on the free list).
    public static let free: UInt8 = 32
}

/// One stripe of a table's in-memory rows: decoded rows (weights + optimizer state, full width) with their
/// optimizer step, the sequence number of the last update-log record applied, the sequence of the first
/// update since the row was last clean, state bits (`RowState`), a pin count and a CLOCK counter.
///
/// Invariants: every live slot's key is in `index`, and no free slot's is; `dirtyCount` and
/// `unstoredCount` count the live slots with `dirty`, and with `dirty` and not `stored`; a dirty, flushing,
/// loading or pinned row is never evicted; `live <= capacity` except while every evictable row is gone
/// (the stripe then grows past its capacity and `trim` brings it back). Eviction is CLOCK with a 2-bit
/// counter: rows enter with 0 (probation) from pulls and 1 from pushes, each hit adds 1 (up to 3), and the
/// hand takes one from each row it passes, evicting rows at 0, so a stream of rows seen once (a uniform push
/// phase) cycles through probation without evicting rows that are hit again and again.
/// Not thread-safe: the owner (`RowStore`) guards each stripe with its lock.
public final class RowStripe {
    public let rowFloats: Int
    public var capacity: Int
    static let chunkRows = 1024
    private var chunks: [UnsafeMutablePointer<Float>] = []
    private var keys: GrowableBuffer<UInt64>
    private var steps: GrowableBuffer<UInt32>
    private var seqs: GrowableBuffer<UInt64>
    private var firstDirty: GrowableBuffer<UInt64>
    private var flushSeqs: GrowableBuffer<UInt64>
    private var states: GrowableBuffer<UInt8>
    private var pins: GrowableBuffer<UInt16>
    private var clocks: GrowableBuffer<UInt8>
    private var index = UInt64Map()
    private var freeSlots: [Int32] = []
    private var hand = 0
    /// Slots ever used (live + free).
    public private(set) var slotCount = 0
    public private(set) var live = 0
    public private(set) var dirtyCount = 0
    public private(set) var unstoredCount = 0
    /// Rows evicted so far. A reader that fetched rows from storage may install them only if this did not
    /// change since its read: otherwise a row updated, flushed and evicted meanwhile would be replaced by
    /// the older image it read.
    public private(set) var evictions: UInt64 = 0

    public init(rowFloats: Int, capacity: Int) {
        self.rowFloats = rowFloats
        self.capacity = max(0, capacity)
        let initial = min(max(16, capacity), 1024)
        keys = GrowableBuffer(capacity: initial, fill: 0); steps = GrowableBuffer(capacity: initial, fill: 0)
        seqs = GrowableBuffer(capacity: initial, fill: 0); firstDirty = GrowableBuffer(capacity: initial, fill: 0)
        flushSeqs = GrowableBuffer(capacity: initial, fill: 0); states = GrowableBuffer(capacity: initial, fill: RowState.free)
        pins = GrowableBuffer(capacity: initial, fill: 0); clocks = GrowableBuffer(capacity: initial, fill: 0)
    }
    deinit {
        chunks.forEach { $0.deallocate() }
        keys.free(); steps.free(); seqs.free(); firstDirty.free(); flushSeqs.free(); states.free(); pins.free(); clocks.free()
    }

    // MARK: lookup and slots

    /// The slot of `key`, if cached (placeholders included; check `isLoading`).
    @inline(__always) public func find(_ key: UInt64) -> Int? { index.get(key) }
    /// Marks a hit for CLOCK.
    @inline(__always) public func touch(_ slot: Int) { if clocks[slot] < 3 { clocks[slot] &+= 1 } }

    @inline(__always) public func row(_ slot: Int) -> UnsafeMutablePointer<Float> {
        chunks[slot / Self.chunkRows] + (slot % Self.chunkRows) * rowFloats
    }
    @inline(__always) public func key(_ slot: Int) -> UInt64 { keys[slot] }
    @inline(__always) public func step(_ slot: Int) -> UInt32 { steps[slot] }
    @inline(__always) public func seq(_ slot: Int) -> UInt64 { seqs[slot] }
    @inline(__always) public func firstDirtySeq(_ slot: Int) -> UInt64 { firstDirty[slot] }
    @inline(__always) public func state(_ slot: Int) -> UInt8 { states[slot] }
    @inline(__always) public func has(_ slot: Int, _ bit: UInt8) -> Bool { states[slot] & bit != 0 }
    @inline(__always) public func isLoading(_ slot: Int) -> Bool { states[slot] & RowState.loading != 0 }
    @inline(__always) public func exists(_ slot: Int) -> Bool { states[slot] & RowState.exists != 0 }
    @inline(__always) public func isDirty(_ slot: Int) -> Bool { states[slot] & RowState.dirty != 0 }
    @inline(__always) public func pinCount(_ slot: Int) -> Int { Int(pins[slot]) }

    /// A new slot for `key` (which must be absent): a free slot, a row evicted by CLOCK, or a new slot past
    /// the capacity when nothing can be evicted. The slot starts as a placeholder (`loading`) with no other
    /// state; the caller fills it with `fill`.
    public func insert(_ key: UInt64, clock: UInt8) -> Int {
        let slot: Int
        if let f = freeSlots.popLast() {
            slot = Int(f)
        } else if live >= capacity, let victim = evictOne() {
            slot = victim
        } else {
            slot = appendSlot()
        }
        keys[slot] = key; steps[slot] = 0; seqs[slot] = 0; firstDirty[slot] = 0; flushSeqs[slot] = 0
        states[slot] = RowState.loading; pins[slot] = 0; clocks[slot] = clock
        index.set(key, slot)
        live += 1
        return slot
    }

    private func appendSlot() -> Int {
        let slot = slotCount
        if slot / Self.chunkRows >= chunks.count { chunks.append(.allocate(capacity: Self.chunkRows * rowFloats)) }
        let n = slot + 1
        keys.grow(to: n, fill: 0); steps.grow(to: n, fill: 0); seqs.grow(to: n, fill: 0); firstDirty.grow(to: n, fill: 0)
        flushSeqs.grow(to: n, fill: 0); states.grow(to: n, fill: RowState.free); pins.grow(to: n, fill: 0); clocks.grow(to: n, fill: 0)
        slotCount = n
        return slot
    }

    /// Fills a placeholder (or overwrites a clean row) with an image read from storage or initialised:
    /// `stored` tells whether RocksDB holds it, `exists` whether the row was ever written.
    public func fill(_ slot: Int, from row: UnsafePointer<Float>, step: UInt32, seq: UInt64, exists: Bool, stored: Bool) {
        precondition(states[slot] & (RowState.dirty | RowState.flushing) == 0, "fill of a dirty row")
        self.row(slot).update(from: row, count: rowFloats)
        steps[slot] = step; seqs[slot] = seq
        states[slot] = (exists ? RowState.exists : 0) | (stored ? RowState.stored : 0)
    }

    /// Removes a live row that is not dirty, flushing or pinned.
    public func remove(_ slot: Int) {
        precondition(states[slot] & (RowState.dirty | RowState.flushing | RowState.free) == 0 && pins[slot] == 0, "removing a busy row")
        index.remove(keys[slot])
        states[slot] = RowState.free
        freeSlots.append(Int32(slot))
        live -= 1
        evictions &+= 1
    }

    /// The CLOCK victim: a live row neither dirty, flushing, loading nor pinned, with counter 0; counters
    /// of rows passed over drop by one. Nil after four revolutions without one.
    private func evictOne() -> Int? {
        guard slotCount > 0 else { return nil }
        let busy = RowState.dirty | RowState.flushing | RowState.loading | RowState.free
        for _ in 0..<(4 * slotCount) {
            let s = hand
            hand += 1; if hand == slotCount { hand = 0 }
            if states[s] & busy != 0 || pins[s] != 0 { continue }
            if clocks[s] > 0 { clocks[s] -= 1; continue }
            index.remove(keys[s])
            states[s] = RowState.free
            live -= 1
            evictions &+= 1
            return s
        }
        return nil
    }

    /// Evicts clean rows until the stripe is back within its capacity (after it grew past it); returns rows evicted.
    @discardableResult
    public func trim() -> Int {
        var n = 0
        while live > capacity, let s = evictOne() { freeSlots.append(Int32(s)); n += 1 }
        return n
    }

    // MARK: pins

    @inline(__always) public func pin(_ slot: Int) { pins[slot] &+= 1 }
    @inline(__always) public func unpin(_ slot: Int) { pins[slot] &-= 1 }

    // MARK: updates and flushing

    /// Records an update of sequence `seq` (the row's floats and step were already written in place): the
    /// row becomes dirty (remembering `seq` as its first dirty update when it was clean) and exists.
    @inline(__always) public func markUpdated(_ slot: Int, step: UInt32, seq: UInt64) {
        steps[slot] = step; seqs[slot] = seq
        let s = states[slot]
        if s & RowState.dirty == 0 {
            firstDirty[slot] = seq
            dirtyCount += 1
            if s & RowState.stored == 0 { unstoredCount += 1 }
        }
        states[slot] = s | RowState.dirty | RowState.exists
    }

    /// Overwrites a row's metadata without an update (imports, migrations, rewrites): `dirty` marks it newer
    /// than RocksDB (with `seq` as its first dirty update) or, when false, equal to RocksDB.
    public func setState(_ slot: Int, step: UInt32, seq: UInt64, exists: Bool, stored: Bool, dirty: Bool) {
        precondition(states[slot] & RowState.flushing == 0, "rewriting a row being flushed")
        let old = states[slot]
        if old & RowState.dirty != 0 { dirtyCount -= 1; if old & RowState.stored == 0 { unstoredCount -= 1 } }
        steps[slot] = step; seqs[slot] = seq
        var s: UInt8 = (exists ? RowState.exists : 0) | (stored ? RowState.stored : 0)
        if dirty { s |= RowState.dirty; firstDirty[slot] = seq; dirtyCount += 1; if !stored { unstoredCount += 1 } }
        states[slot] = s
    }

    /// Starts flushing a dirty row: its current image is being written (remember `seq(slot)`).
    @inline(__always) public func beginFlush(_ slot: Int) {
        states[slot] |= RowState.flushing
        flushSeqs[slot] = seqs[slot]
    }

    /// Ends a flush of `slot`: when `written`, RocksDB now holds the image of sequence `flushSeq`, so the row
    /// is clean unless it was updated meanwhile (then it stays dirty, first dirty at the update after it).
    public func endFlush(_ slot: Int, written: Bool) {
        var s = states[slot] & ~RowState.flushing
        if written {
            if s & RowState.stored == 0 { s |= RowState.stored; if s & RowState.dirty != 0 { unstoredCount -= 1 } }
            if seqs[slot] == flushSeqs[slot] {
                if s & RowState.dirty != 0 { dirtyCount -= 1; s &= ~RowState.dirty }
            } else {
                firstDirty[slot] = flushSeqs[slot] + 1
            }
        }
        states[slot] = s
    }

    /// Calls `body(slot)` for every live slot.
    public func forEachLive(_ body: (Int) throws -> Void) rethrows {
        for s in 0..<slotCount where states[s] & RowState.free == 0 { try body(s) }
    }

    /// The smallest first-dirty sequence among dirty rows, or nil when none is dirty.
    public var oldestDirtySeq: UInt64? {
        guard dirtyCount > 0 else { return nil }
        var m = UInt64.max
        for s in 0..<slotCount where states[s] & RowState.dirty != 0 { m = min(m, firstDirty[s]) }
        return m
    }

    /// Forgets every row (the table was dropped or its rows replaced wholesale). No row may be pinned.
    public func removeAll() {
        index = UInt64Map(); freeSlots.removeAll()
        for s in 0..<slotCount { states[s] = RowState.free; freeSlots.append(Int32(s)) }
        freeSlots.reverse()
        live = 0; dirtyCount = 0; unstoredCount = 0; hand = 0; evictions &+= 1
    }

    #if DEBUG
    /// Checks the counters against the slots (debug builds; tests call it after operations).
    public func checkInvariants() {
        var l = 0, d = 0, u = 0
        for s in 0..<slotCount where states[s] & RowState.free == 0 {
            l += 1
            precondition(index.get(keys[s]) == s, "slot \(s) not indexed")
            if states[s] & RowState.dirty != 0 { d += 1; if states[s] & RowState.stored == 0 { u += 1 } }
        }
        precondition(l == live && d == dirtyCount && u == unstoredCount && index.count == live,
                     "stripe counters: live \(live)/\(l) dirty \(dirtyCount)/\(d) unstored \(unstoredCount)/\(u) index \(index.count)")
    }
    #endif
}
