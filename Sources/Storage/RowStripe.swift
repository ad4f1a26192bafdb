import Vocabulary
import Synchronization
import Glibc
import CLinux

/// The row budget stripes of one store share: rows live in all of them together, against one capacity, so
/// a stripe that hashing gave more keys than its share does not evict while others have room.
public final class RowBudget: Sendable {
    public let capacity: Int
    let live = Atomic<Int>(0)
    /// Inserts, in all stripes, that found the budget full (they evicted or grew their stripe): demand for
    /// room that only clean rows can meet, readable without the stripes' locks. The flusher and pushes
    /// write dirty rows for room only while it grows.
    let demands = Atomic<UInt64>(0)
    public init(capacity: Int) { self.capacity = max(0, capacity) }
    /// See `demands`.
    public var roomDemands: UInt64 { demands.load(ordering: .relaxed) }
    @inline(__always) var isFull: Bool { live.load(ordering: .relaxed) >= capacity }
    @inline(__always) var isOver: Bool { live.load(ordering: .relaxed) > capacity }
    public var liveRows: Int { live.load(ordering: .relaxed) }
    /// Whether the rows in memory reached the capacity (a new row must evict one).
    public var full: Bool { isFull }
}

/// Anonymous memory mapped in 2 MiB-aligned regions, for row chunks and large indexes: regions given
/// `huge` advice are backed by transparent huge pages where the kernel allows it (`madvise` mode), so a
/// random row touch costs one TLB entry per 2 MiB instead of per 4 KiB (the row store's working set is far
/// larger than the TLB's reach). Pages are committed on first touch.
enum MappedMemory {
    static let hugePageBytes = 2 << 20

    /// `bytes` (a multiple of the page size) of zeroed memory, 2 MiB-aligned.
    static func map(_ bytes: Int, huge: Bool) -> UnsafeMutableRawPointer {
        let span = bytes + hugePageBytes
        guard let raw = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            fatalError("row store: cannot map \(bytes) bytes (\(String(cString: strerror(errno)))); give the shard more memory or a smaller --cache-rows")
        }
        let start = Int(bitPattern: raw)
        let aligned = (start + hugePageBytes - 1) / hugePageBytes * hugePageBytes
        if aligned > start { munmap(raw, aligned - start) }
        let tail = start + span - (aligned + bytes)
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + bytes), tail) }
        let p = UnsafeMutableRawPointer(bitPattern: aligned)!
        if huge { _ = madvise(p, bytes, embedps_madv_hugepage) }
        return p
    }

    static func unmap(_ p: UnsafeMutableRawPointer, _ bytes: Int) { munmap(p, bytes) }
}

/// A row slot's metadata, in the first cache line of the slot, right before the row's floats (one line
/// holds everything a lookup, pin or update reads besides the row itself).
struct SlotMeta {
    var key: UInt64
    var seq: UInt64
    var firstDirty: UInt64
    var flushSeq: UInt64
    var step: UInt32
    var state: UInt8
    var clock: UInt8
    var pins: UInt16
}

/// Slot memory of a stripe: chunks of `chunkRows` slots of `stride` bytes (metadata line, then the row),
/// each chunk one 2 MiB mapped region; chunks after the first get huge-page advice (a stripe that filled
/// one chunk is a busy one). Slot addresses never move. Not thread-safe.
struct SlotArena {
    static let metaBytes = 64
    let stride: Int
    let chunkRows: Int
    let chunkBytes: Int
    private(set) var chunks: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var chunkCapacity = 4
    private(set) var chunkCount = 0

    init(rowFloats: Int) {
        let rowBytes = (rowFloats * 4 + 63) / 64 * 64
        stride = Self.metaBytes + rowBytes
        let h = MappedMemory.hugePageBytes
        chunkBytes = max(h, (16 * stride + h - 1) / h * h)
        chunkRows = chunkBytes / stride
        chunks = .allocate(capacity: chunkCapacity)
    }

    @inline(__always) func address(_ slot: Int) -> UnsafeMutableRawPointer {
        let s = UInt32(truncatingIfNeeded: slot), r = UInt32(truncatingIfNeeded: chunkRows)
        let c = s / r
        return chunks[Int(c)] + Int(s &- c &* r) &* stride
    }
    @inline(__always) func meta(_ slot: Int) -> UnsafeMutablePointer<SlotMeta> { address(slot).assumingMemoryBound(to: SlotMeta.self) }
    @inline(__always) func row(_ slot: Int) -> UnsafeMutablePointer<Float> { (address(slot) + Self.metaBytes).assumingMemoryBound(to: Float.self) }

    /// Slots the arena has memory for.
    var slotCapacity: Int { chunkCount * chunkRows }

    mutating func addChunk() {
        if chunkCount == chunkCapacity {
            let bigger = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: chunkCapacity * 2)
            bigger.moveInitialize(from: chunks, count: chunkCount)
            chunks.deallocate()
            chunks = bigger; chunkCapacity *= 2
        }
        let memory = MappedMemory.map(chunkBytes, huge: chunkCount > 0)
        memory.bindMemory(to: UInt8.self, capacity: chunkBytes)
        (chunks + chunkCount).initialize(to: memory)
        chunkCount += 1
    }

    func free() {
        for c in 0..<chunkCount { MappedMemory.unmap(chunks[c], chunkBytes) }
        chunks.deallocate()
    }
}

/// The key -> slot index of a stripe: open addressing with linear probing and backward-shift deletion over
/// 8-byte entries `(tag << 32) | (slot + 1)` (0 = empty), where `tag` is the low 32 bits of the key's
/// fmix64 hash and the home bucket is `tag & mask`. A tag match is confirmed against the key in the slot's
/// metadata, which the caller reads next anyway. Load factor at most 1/2. Not thread-safe.
struct SlotIndex {
    private(set) var entries: UnsafeMutablePointer<UInt64>
    private(set) var mask: Int
    private(set) var count = 0
    private var mapped: Bool

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        (entries, mapped) = Self.allocate(n)
        mask = n - 1
    }

    private static func allocate(_ n: Int) -> (UnsafeMutablePointer<UInt64>, Bool) {
        let bytes = n * 8
        if bytes >= 4 * MappedMemory.hugePageBytes {
            return (MappedMemory.map(bytes, huge: true).bindMemory(to: UInt64.self, capacity: n), true)
        }
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
        p.initialize(repeating: 0, count: n)
        return (p, false)
    }
    func free() {
        if mapped { MappedMemory.unmap(UnsafeMutableRawPointer(entries), (mask + 1) * 8) } else { entries.deallocate() }
    }

    @inline(__always) static func tag(_ key: UInt64) -> UInt64 {
        var k = key
        k ^= k >> 33; k &*= 0xff51_afd7_ed55_8ccd
        k ^= k >> 33; k &*= 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k & 0xffff_ffff
    }
    @inline(__always) func bucket(_ tag: UInt64) -> UnsafeMutablePointer<UInt64> { entries + (Int(truncatingIfNeeded: tag) & mask) }

    /// The slot of `key` (with `tag`), confirming tag matches with `keyOf(slot)`.
    @inline(__always) func get(_ key: UInt64, tag: UInt64, keyOf: (Int) -> UInt64) -> Int? {
        var i = Int(truncatingIfNeeded: tag) & mask
        while true {
            let e = entries[i]
            if e == 0 { return nil }
            if e >> 32 == tag {
                let slot = Int(truncatingIfNeeded: e & 0xffff_ffff) - 1
                if keyOf(slot) == key { return slot }
            }
            i = (i + 1) & mask
        }
    }

    /// The slot of the first entry with `tag` on the probe sequence of `tag`, without confirming its key:
    /// the slot a lookup of a key with this tag will most likely confirm (what a batch loop prefetches).
    @inline(__always) func candidate(tag: UInt64) -> Int? {
        var i = Int(truncatingIfNeeded: tag) & mask
        while true {
            let e = entries[i]
            if e == 0 { return nil }
            if e >> 32 == tag { return Int(truncatingIfNeeded: e & 0xffff_ffff) - 1 }
            i = (i + 1) & mask
        }
    }

    /// Adds `slot` for a key with `tag` that is not in the index.
    mutating func insert(tag: UInt64, slot: Int) {
        if (count + 1) * 2 > mask + 1 { grow() }
        var i = Int(truncatingIfNeeded: tag) & mask
        while entries[i] != 0 { i = (i + 1) & mask }
        entries[i] = tag << 32 | UInt64(slot + 1)
        count += 1
    }

    /// Removes the entry of `slot` (whose key has `tag`).
    mutating func remove(tag: UInt64, slot: Int) {
        let wanted = tag << 32 | UInt64(slot + 1)
        var i = Int(truncatingIfNeeded: tag) & mask
        while true {
            let e = entries[i]
            if e == 0 { return }
            if e == wanted { break }
            i = (i + 1) & mask
        }
        // Backward-shift deletion keeps probe sequences intact.
        var j = i
        while true {
            entries[i] = 0
            while true {
                j = (j + 1) & mask
                let e = entries[j]
                if e == 0 { count -= 1; return }
                let h = Int(truncatingIfNeeded: e >> 32) & mask
                // Move j to i if its home is not cyclically in (i, j].
                if (i <= j) ? (h <= i || h > j) : (h <= i && h > j) { break }
            }
            entries[i] = entries[j]; i = j
        }
    }

    private mutating func grow() {
        let old = entries, oldSize = mask + 1, oldMapped = mapped
        (entries, mapped) = Self.allocate(oldSize * 2)
        mask = oldSize * 2 - 1
        for i in 0..<oldSize where old[i] != 0 {
            var j = Int(truncatingIfNeeded: old[i] >> 32) & mask
            while entries[j] != 0 { j = (j + 1) & mask }
            entries[j] = old[i]
        }
        if oldMapped { MappedMemory.unmap(UnsafeMutableRawPointer(old), oldSize * 8) } else { old.deallocate() }
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
    /// Dirty, and RocksDB lacks updates of the row that only the table's checkpoint snapshot holds: set when
    /// the row is covered (`RowStripe.cover`), kept by its later updates (whose first-dirty sequence no
    /// longer says so), cleared only when an image of it is written to RocksDB. A checkpoint in RocksDB
    /// writes every such row whatever its first-dirty sequence.
    public static let snapshotHeld: UInt8 = 64
}

/// One stripe of a table's in-memory rows: decoded rows (weights + optimizer state, full width) with their
/// optimizer step, the sequence number of the last update-log record applied, the sequence of the first
/// update since the row was last clean, state bits (`RowState`), a pin count and a CLOCK counter, all in one
/// slot (`SlotArena`: a metadata cache line, then the row), found through `SlotIndex`.
///
/// Invariants: every live slot's key is in `index`, and no free slot's is; `dirtyCount` and
/// `unstoredCount` count the live slots with `dirty`, and with `dirty` and not `stored`; a dirty, flushing,
/// loading or pinned row is never evicted; the stripes sharing a `RowBudget` hold at most its capacity
/// except while an inserting stripe has nothing evictable (it then grows and `trim` brings it back).
/// Eviction is CLOCK with a 2-bit counter: rows enter with 0 (probation) from pulls and 1 from pushes, each
/// hit adds 1 (up to 3), and the hand takes one from each row it passes, evicting rows at 0, so a stream of
/// rows seen once (a uniform push phase) cycles through probation without evicting rows that are hit again
/// and again. Not thread-safe: the owner (`RowStore`) guards each stripe with its lock.
public final class RowStripe {
    public let rowFloats: Int
    public let budget: RowBudget
    /// The shared budget's capacity (rows in all stripes together).
    public var capacity: Int { budget.capacity }
    private var arena: SlotArena
    private var index = SlotIndex()
    private var freeSlots: [Int32] = []
    private var hand = 0
    /// Counts moments a row may have become evictable (unpinned to 0 pins, or made clean, while neither
    /// dirty, flushing, loading nor pinned). An eviction sweep that finds no victim remembers the count it
    /// saw (`noVictimAt`), and later inserts skip the sweep until it moves: while every unpinned row is dirty
    /// (a replay or a push burst through a small cache, with a batch's placeholders pinned) each insert
    /// would otherwise sweep the whole stripe for nothing, quadratic in the rows held.
    private var mayEvict: UInt64 = 0
    /// Slots the eviction hand has passed in all (the cost of finding victims).
    public private(set) var sweptSlots: UInt64 = 0
    private var noVictimAt: UInt64 = .max
    /// Slots ever used (live + free).
    public private(set) var slotCount = 0
    public private(set) var live = 0
    public private(set) var dirtyCount = 0
    public private(set) var unstoredCount = 0
    /// Rows evicted so far. A reader that fetched rows from storage may install them only if this did not
    /// change since its read: otherwise a row updated, flushed and evicted meanwhile would be replaced by
    /// the older image it read.
    public private(set) var evictions: UInt64 = 0
    /// How far ahead the batch loops prefetch: index buckets `far` positions ahead, slots `near` ahead.
    static let prefetchFar = 12
    static let prefetchNear = 6

    /// A stripe with a budget of its own.
    public convenience init(rowFloats: Int, capacity: Int) { self.init(rowFloats: rowFloats, budget: RowBudget(capacity: capacity)) }

    public init(rowFloats: Int, budget: RowBudget) {
        self.rowFloats = rowFloats
        self.budget = budget
        arena = SlotArena(rowFloats: rowFloats)
    }
    deinit {
        arena.free()
        index.free()
    }

    // MARK: lookup and slots

    @inline(__always) private func meta(_ slot: Int) -> UnsafeMutablePointer<SlotMeta> { arena.meta(slot) }
    @inline(__always) private func lookup(_ key: UInt64) -> Int? {
        index.get(key, tag: SlotIndex.tag(key)) { arena.meta($0).pointee.key }
    }

    /// The slot of `key`, if cached (placeholders included; check `isLoading`).
    @inline(__always) public func find(_ key: UInt64) -> Int? { lookup(key) }
    /// Marks a hit for CLOCK.
    @inline(__always) public func touch(_ slot: Int) { let m = meta(slot); if m.pointee.clock < 3 { m.pointee.clock &+= 1 } }

    @inline(__always) public func row(_ slot: Int) -> UnsafeMutablePointer<Float> { arena.row(slot) }
    @inline(__always) public func key(_ slot: Int) -> UInt64 { meta(slot).pointee.key }
    @inline(__always) public func step(_ slot: Int) -> UInt32 { meta(slot).pointee.step }
    @inline(__always) public func seq(_ slot: Int) -> UInt64 { meta(slot).pointee.seq }
    @inline(__always) public func firstDirtySeq(_ slot: Int) -> UInt64 { meta(slot).pointee.firstDirty }
    @inline(__always) public func state(_ slot: Int) -> UInt8 { meta(slot).pointee.state }
    @inline(__always) public func has(_ slot: Int, _ bit: UInt8) -> Bool { meta(slot).pointee.state & bit != 0 }
    @inline(__always) public func isLoading(_ slot: Int) -> Bool { has(slot, RowState.loading) }
    @inline(__always) public func exists(_ slot: Int) -> Bool { has(slot, RowState.exists) }
    @inline(__always) public func isDirty(_ slot: Int) -> Bool { has(slot, RowState.dirty) }
    @inline(__always) public func pinCount(_ slot: Int) -> Int { Int(meta(slot).pointee.pins) }

    /// A new slot for `key` (which must be absent): a free slot, a row evicted by CLOCK, or a new slot past
    /// the capacity when nothing can be evicted. The slot starts as a placeholder (`loading`) with no other
    /// state; the caller fills it with `fill`.
    public func insert(_ key: UInt64, clock: UInt8) -> Int {
        let slot: Int
        let full = budget.isFull
        if full { budget.demands.add(1, ordering: .relaxed) }
        // Only clean rows can go: when every live row is dirty (a burst of pushes the flusher has not written
        // yet, or a replay), grow instead of sweeping the whole stripe for nothing.
        if full, live > dirtyCount, let victim = evictOne() {
            slot = victim
        } else if let f = freeSlots.popLast() {
            slot = Int(f)
        } else {
            slot = appendSlot()
        }
        meta(slot).pointee = SlotMeta(key: key, seq: 0, firstDirty: 0, flushSeq: 0, step: 0, state: RowState.loading, clock: clock, pins: 0)
        index.insert(tag: SlotIndex.tag(key), slot: slot)
        live += 1
        budget.live.add(1, ordering: .relaxed)
        return slot
    }

    private func appendSlot() -> Int {
        let slot = slotCount
        if slot >= arena.slotCapacity { arena.addChunk() }
        slotCount = slot + 1
        return slot
    }

    /// Fills a placeholder (or overwrites a clean row) with an image read from storage or initialised:
    /// `stored` tells whether RocksDB holds it, `exists` whether the row was ever written.
    public func fill(_ slot: Int, from row: UnsafePointer<Float>, step: UInt32, seq: UInt64, exists: Bool, stored: Bool) {
        let m = meta(slot)
        precondition(m.pointee.state & (RowState.dirty | RowState.flushing) == 0, "fill of a dirty row")
        arena.row(slot).update(from: row, count: rowFloats)
        m.pointee.step = step; m.pointee.seq = seq
        m.pointee.state = (exists ? RowState.exists : 0) | (stored ? RowState.stored : 0)
        noteIfEvictable(m)
    }

    /// Removes a live row that is not dirty, flushing or pinned.
    public func remove(_ slot: Int) {
        let m = meta(slot)
        precondition(m.pointee.state & (RowState.dirty | RowState.flushing | RowState.free) == 0 && m.pointee.pins == 0, "removing a busy row")
        release(slot)
        freeSlots.append(Int32(slot))
    }

    /// Takes a live slot out of the index and the counts (a removal or an eviction; `evictions` counts both).
    private func release(_ slot: Int) {
        let m = meta(slot)
        index.remove(tag: SlotIndex.tag(m.pointee.key), slot: slot)
        m.pointee.state = RowState.free
        live -= 1
        budget.live.subtract(1, ordering: .relaxed)
        evictions &+= 1
    }

    /// The CLOCK victim: a live row neither dirty, flushing, loading nor pinned, with counter 0; counters
    /// of rows passed over drop by one. Nil after four revolutions without one.
    private func evictOne() -> Int? {
        guard slotCount > 0 else { return nil }
        guard noVictimAt != mayEvict else { return nil }
        let busy = RowState.dirty | RowState.flushing | RowState.loading | RowState.free
        let steps = 4 * slotCount
        for step in 0..<steps {
            let s = hand
            hand += 1; if hand == slotCount { hand = 0 }
            let m = meta(s)
            if m.pointee.state & busy != 0 || m.pointee.pins != 0 { continue }
            if m.pointee.clock > 0 { m.pointee.clock -= 1; continue }
            release(s)
            sweptSlots &+= UInt64(step + 1)
            return s
        }
        sweptSlots &+= UInt64(steps)
        noVictimAt = mayEvict
        return nil
    }

    /// Counts a row that may now be evictable (see `mayEvict`).
    @inline(__always) private func noteIfEvictable(_ m: UnsafeMutablePointer<SlotMeta>) {
        if m.pointee.pins == 0 && m.pointee.state & (RowState.dirty | RowState.flushing | RowState.loading | RowState.free) == 0 { mayEvict &+= 1 }
    }

    /// Evicts clean rows of this stripe while the shared budget is over its capacity (after stripes grew
    /// past it); returns rows evicted.
    @discardableResult
    public func trim() -> Int {
        var n = 0
        while budget.isOver, live > dirtyCount, let s = evictOne() { freeSlots.append(Int32(s)); n += 1 }
        return n
    }
    /// Whether the shared budget is over its capacity.
    public var overBudget: Bool { budget.isOver }

    // MARK: batch operations (the hot paths: one call per stripe, the per-row work inside this module)

    /// Prefetches for position `k` of a batch loop: the index bucket of the key `far` positions ahead, and
    /// the slot (metadata line and the first `rowLines` lines of the row) of the key `near` positions ahead,
    /// found through its bucket, prefetched `far - near` iterations before.
    @inline(__always)
    private func prefetchAhead(_ keys: UnsafePointer<UInt64>, _ positions: UnsafeBufferPointer<Int32>, _ k: Int, rowLines: Int) {
        let n = positions.count
        if k + Self.prefetchFar < n { embedps_prefetch(index.bucket(SlotIndex.tag(keys[Int(positions[k + Self.prefetchFar])]))) }
        if k + Self.prefetchNear < n {
            // The slot whose key the lookup will compare: the first entry with the key's tag, which is not
            // the home bucket's entry for about a quarter of the keys at this index's load.
            if let slot = index.candidate(tag: SlotIndex.tag(keys[Int(positions[k + Self.prefetchNear])])) {
                let a = arena.address(slot)
                embedps_prefetch_write(a)
                for l in 0..<rowLines { embedps_prefetch(a + SlotArena.metaBytes + l * 64) }
            }
        }
    }

    /// Copies the rows of `keys[p]` for each position `p` into `out + p * width` (`view` transforms a row
    /// instead of copying its first `width` floats when given); positions whose row is not cached (or still
    /// loading) are passed to `miss`. Cached rows get a CLOCK hit.
    public func copyRows(_ keys: UnsafePointer<UInt64>, _ positions: UnsafeBufferPointer<Int32>, into out: UnsafeMutablePointer<Float>, width: Int,
                         view: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)?, miss: (Int32) -> Void) {
        let rowLines = (width * 4 + 63) / 64
        for k in 0..<positions.count {
            prefetchAhead(keys, positions, k, rowLines: rowLines)
            let p = positions[k]
            let i = Int(p)
            guard let slot = lookup(keys[i]) else { miss(p); continue }
            let m = meta(slot)
            if m.pointee.state & RowState.loading != 0 { miss(p); continue }
            if m.pointee.clock < 3 { m.pointee.clock &+= 1 }
            let row = arena.row(slot)
            if let view { view(row, out + i * width) } else { (out + i * width).update(from: row, count: width) }
        }
    }

    /// Pins the rows of `keys[p]` for each position `p`, inserting placeholders for rows not cached, and
    /// writes each one's slot to `slots[p]`; positions whose row must be read from storage (placeholders,
    /// new or another pusher's) are passed to `load`.
    public func pinRows(_ keys: UnsafePointer<UInt64>, _ positions: UnsafeBufferPointer<Int32>, slots: UnsafeMutablePointer<Int32>, load: (Int32) -> Void) {
        for k in 0..<positions.count {
            prefetchAhead(keys, positions, k, rowLines: 0)
            let p = positions[k]
            let i = Int(p)
            let slot: Int
            if let found = lookup(keys[i]) {
                slot = found
                let m = meta(slot)
                if m.pointee.clock < 3 { m.pointee.clock &+= 1 }
                if m.pointee.state & RowState.loading != 0 { load(p) }
            } else {
                slot = insert(keys[i], clock: 0)
                load(p)
            }
            meta(slot).pointee.pins &+= 1
            slots[i] = Int32(slot)
        }
        #if DEBUG
        checkInvariantsSometimes()
        #endif
    }

    /// Unpins the rows pinned by `pinRows`; placeholders nobody filled and nobody else pins are removed.
    public func unpinRows(_ positions: UnsafeBufferPointer<Int32>, slots: UnsafePointer<Int32>) {
        for p in positions {
            let slot = Int(slots[Int(p)])
            let m = meta(slot)
            m.pointee.pins &-= 1
            if m.pointee.pins == 0 && m.pointee.state & RowState.loading != 0 { remove(slot) } else { noteIfEvictable(m) }
        }
        #if DEBUG
        checkInvariantsSometimes()
        #endif
    }

    /// Applies update `seq` to pinned rows: for each position `p`, `update(row, p, &step, previousSeq)` changes
    /// the row in place (rows whose sequence already covers `seq` are skipped when `skipCovered`), then the row
    /// is marked updated, and unpinned when `unpin` (an updated row is dirty, so it stays resident without a
    /// pin). `source` (row `p` at `source + p * sourceStride`) is only prefetched. Returns how many rows
    /// became dirty.
    @discardableResult
    public func applyRows(_ positions: UnsafeBufferPointer<Int32>, slots: UnsafePointer<Int32>, seq: UInt64, skipCovered: Bool, unpin: Bool,
                          source: UnsafeRawPointer?, sourceStride: Int,
                          update: (UnsafeMutablePointer<Float>, Int, inout UInt32, UInt64) -> Void) -> Int {
        var newlyDirty = 0
        let rowLines = (rowFloats * 4 + 63) / 64
        let sourceLines = (sourceStride + 63) / 64
        let n = positions.count
        for k in 0..<n {
            if k + Self.prefetchNear < n {
                let ahead = Int(positions[k + Self.prefetchNear])
                let a = arena.address(Int(slots[ahead]))
                for l in 0...rowLines { embedps_prefetch_write(a + l * 64) }
                if let source { for l in 0..<sourceLines { embedps_prefetch(source + ahead * sourceStride + l * 64) } }
            }
            let p = positions[k]
            let slot = Int(slots[Int(p)])
            let m = meta(slot)
            let before = m.pointee.seq
            if !(skipCovered && before >= seq) {
                var step = m.pointee.step
                update(arena.row(slot), Int(p), &step, before)
                if m.pointee.state & RowState.dirty == 0 { newlyDirty += 1 }
                markUpdated(slot, step: step, seq: seq)
            }
            if unpin {
                m.pointee.pins &-= 1
                if m.pointee.pins == 0 && m.pointee.state & RowState.loading != 0 { remove(slot) } else { noteIfEvictable(m) }
            }
        }
        if unpin && budget.isOver { trim() }
        #if DEBUG
        checkInvariantsSometimes()
        #endif
        return newlyDirty
    }

    // MARK: pins

    @inline(__always) public func pin(_ slot: Int) { meta(slot).pointee.pins &+= 1 }
    @inline(__always) public func unpin(_ slot: Int) { let m = meta(slot); m.pointee.pins &-= 1; noteIfEvictable(m) }

    // MARK: updates and flushing

    /// Records an update of sequence `seq` (the row's floats and step were already written in place): the
    /// row becomes dirty (remembering `seq` as its first dirty update when it was clean) and exists.
    @inline(__always) public func markUpdated(_ slot: Int, step: UInt32, seq: UInt64) {
        let m = meta(slot)
        m.pointee.step = step; m.pointee.seq = seq
        let s = m.pointee.state
        if s & RowState.dirty == 0 {
            m.pointee.firstDirty = seq
            dirtyCount += 1
            if s & RowState.stored == 0 { unstoredCount += 1 }
        } else if m.pointee.firstDirty == Self.covered {
            m.pointee.firstDirty = seq
        }
        m.pointee.state = s | RowState.dirty | RowState.exists
    }

    /// The first-dirty sequence of a dirty row whose current image is in the table's checkpoint snapshot: it
    /// is newer than RocksDB (still dirty, never evicted) but holds no update the checkpoint does not cover,
    /// so it keeps no log record alive (`oldestDirtySeq` passes over it) until its next update.
    public static let covered = UInt64.max

    /// Records that a dirty row's current image was written to a checkpoint snapshot (see `covered`); it is
    /// `snapshotHeld` until an image of it reaches RocksDB.
    @inline(__always) public func cover(_ slot: Int) {
        let m = meta(slot)
        if m.pointee.state & RowState.dirty != 0 { m.pointee.firstDirty = Self.covered; m.pointee.state |= RowState.snapshotHeld }
    }
    /// Whether a dirty row's image is covered by a checkpoint snapshot (see `covered`).
    @inline(__always) public func isCovered(_ slot: Int) -> Bool {
        let m = meta(slot)
        return m.pointee.state & RowState.dirty != 0 && m.pointee.firstDirty == Self.covered
    }

    /// Recovery: installs a row read from a checkpoint snapshot as dirty and covered (newer than RocksDB,
    /// needing no log record), unless the cache already holds an image at least as new. Returns whether it
    /// became dirty (it was not dirty before).
    @discardableResult
    public func installCovered(key: UInt64, row: UnsafePointer<Float>, step: UInt32, seq: UInt64, stored: Bool) -> Bool {
        let slot: Int
        if let found = lookup(key) {
            let m = meta(found)
            guard m.pointee.state & (RowState.loading | RowState.flushing) == 0, m.pointee.pins == 0, m.pointee.seq < seq else { return false }
            slot = found
        } else {
            slot = insert(key, clock: 1)
        }
        let wasDirty = isDirty(slot)
        arena.row(slot).update(from: row, count: rowFloats)
        setState(slot, step: step, seq: seq, exists: true, stored: stored, dirty: true)
        cover(slot)
        return !wasDirty
    }

    /// Overwrites a row's metadata without an update (imports, migrations, rewrites): `dirty` marks it newer
    /// than RocksDB (with `seq` as its first dirty update) or, when false, equal to RocksDB.
    public func setState(_ slot: Int, step: UInt32, seq: UInt64, exists: Bool, stored: Bool, dirty: Bool) {
        let m = meta(slot)
        precondition(m.pointee.state & RowState.flushing == 0, "rewriting a row being flushed")
        let old = m.pointee.state
        if old & RowState.dirty != 0 { dirtyCount -= 1; if old & RowState.stored == 0 { unstoredCount -= 1 } }
        m.pointee.step = step; m.pointee.seq = seq
        var s: UInt8 = (exists ? RowState.exists : 0) | (stored ? RowState.stored : 0)
        if dirty { s |= RowState.dirty; m.pointee.firstDirty = seq; dirtyCount += 1; if !stored { unstoredCount += 1 } }
        m.pointee.state = s
        noteIfEvictable(m)
    }

    /// Starts flushing a dirty row: its current image is being written (remember `seq(slot)`).
    @inline(__always) public func beginFlush(_ slot: Int) {
        let m = meta(slot)
        m.pointee.state |= RowState.flushing
        m.pointee.flushSeq = m.pointee.seq
    }

    /// Ends a flush of `slot`: when `written`, RocksDB now holds the image of sequence `flushSeq`, so the row
    /// is clean unless it was updated meanwhile (then it stays dirty, first dirty at the update after it).
    public func endFlush(_ slot: Int, written: Bool) {
        let m = meta(slot)
        var s = m.pointee.state & ~RowState.flushing
        if written {
            // RocksDB now holds an image at least as new as any snapshot's.
            s &= ~RowState.snapshotHeld
            if s & RowState.stored == 0 { s |= RowState.stored; if s & RowState.dirty != 0 { unstoredCount -= 1 } }
            if m.pointee.seq == m.pointee.flushSeq {
                if s & RowState.dirty != 0 { dirtyCount -= 1; s &= ~RowState.dirty }
            } else {
                m.pointee.firstDirty = m.pointee.flushSeq + 1
            }
        }
        m.pointee.state = s
        noteIfEvictable(m)
    }

    /// Calls `body(slot)` for every live slot.
    public func forEachLive(_ body: (Int) throws -> Void) rethrows {
        for s in 0..<slotCount where meta(s).pointee.state & RowState.free == 0 { try body(s) }
    }

    /// Calls `body(slot)` for live slots from `start` up to (not including) `end`, in slot order, until it
    /// returns false; returns the slot it returned false for, or nil when the range was finished.
    public func scanLive(from start: Int, until end: Int = .max, _ body: (Int) -> Bool) -> Int? {
        var s = start
        let stop = min(end, slotCount)
        while s < stop {
            if meta(s).pointee.state & RowState.free == 0 && !body(s) { return s }
            s += 1
        }
        return nil
    }

    /// The smallest first-dirty sequence among dirty rows that are not covered by a checkpoint snapshot, or
    /// nil when there is none.
    public var oldestDirtySeq: UInt64? { dirtySequences.oldest }

    /// One pass over the rows: the smallest first-dirty sequence among dirty rows not covered by a checkpoint
    /// snapshot (nil when there is none) and how many rows are `snapshotHeld` (covered or updated since).
    public var dirtySequences: (oldest: UInt64?, snapshotHeld: Int) {
        guard dirtyCount > 0 else { return (nil, 0) }
        var m = UInt64.max, held = 0
        for s in 0..<slotCount {
            let meta = meta(s)
            let st = meta.pointee.state
            guard st & RowState.dirty != 0 else { continue }
            if st & RowState.snapshotHeld != 0 { held += 1 }
            if meta.pointee.firstDirty != Self.covered { m = min(m, meta.pointee.firstDirty) }
        }
        return (m == .max ? nil : m, held)
    }

    /// Takes back every row's cover (a snapshot that was not completed): covered rows get `firstDirty`, a
    /// sequence from which the update log still holds every record. With `keepingSnapshotHeld` (the previous
    /// checkpoint is a snapshot too, which still holds the older updates of the rows it covered) rows stay
    /// `snapshotHeld`; without, no snapshot holds anything and the flag is cleared.
    public func uncoverAll(firstDirty: UInt64, keepingSnapshotHeld: Bool) {
        guard dirtyCount > 0 else { return }
        for s in 0..<slotCount {
            let meta = meta(s)
            guard meta.pointee.state & RowState.dirty != 0 else { continue }
            if meta.pointee.firstDirty == Self.covered { meta.pointee.firstDirty = firstDirty }
            if !keepingSnapshotHeld { meta.pointee.state &= ~RowState.snapshotHeld }
        }
    }

    /// Forgets every row (the table was dropped or its rows replaced wholesale). No row may be pinned.
    public func removeAll() {
        budget.live.subtract(live, ordering: .relaxed)
        index.free()
        index = SlotIndex()
        freeSlots.removeAll()
        for s in 0..<slotCount { meta(s).pointee.state = RowState.free; freeSlots.append(Int32(s)) }
        freeSlots.reverse()
        live = 0; dirtyCount = 0; unstoredCount = 0; hand = 0; evictions &+= 1
    }

    #if DEBUG
    private var operationsSinceCheck = 0
    /// Debug builds check the invariants after batch operations: every time while the stripe is small,
    /// every 256th operation once it is large (a full check is linear in the slots).
    @inline(__always) func checkInvariantsSometimes() {
        operationsSinceCheck += 1
        if slotCount <= 2048 || operationsSinceCheck >= 256 { operationsSinceCheck = 0; checkInvariants() }
    }

    /// Checks the counters and the index against the slots (debug builds).
    public func checkInvariants() {
        var l = 0, d = 0, u = 0
        for s in 0..<slotCount where meta(s).pointee.state & RowState.free == 0 {
            l += 1
            let st = meta(s).pointee.state
            precondition(lookup(meta(s).pointee.key) == s, "slot \(s) not indexed")
            // A placeholder holds no update yet.
            precondition(st & RowState.loading == 0 || st & (RowState.dirty | RowState.flushing) == 0, "slot \(s): placeholder state \(st)")
            if st & RowState.dirty != 0 { d += 1; if st & RowState.stored == 0 { u += 1 } }
            precondition(st & RowState.snapshotHeld == 0 || st & RowState.dirty != 0, "slot \(s): snapshot-held but clean, state \(st)")
        }
        precondition(l == live && d == dirtyCount && u == unstoredCount && index.count == live,
                     "stripe counters: live \(live)/\(l) dirty \(dirtyCount)/\(d) unstored \(unstoredCount)/\(u) index \(index.count)")
    }
    #endif
}
