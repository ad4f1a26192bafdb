import Dispatch

/// A table's in-memory rows, split into independently locked stripes by a hash of the row key, so pulls,
/// pushes and the flusher touching different rows proceed at once.
///
/// Invariant: stripe `i` holds exactly the rows whose `stripe(of: key) == i`, and is only ever touched
/// while its mutex is held (`withStripe`, `withStripes`, `withStripesInTurn`, `withAll`). Locks are taken in ascending stripe
/// order whenever more than one is held, so no two holders can deadlock.
public final class RowStore: @unchecked Sendable {
    public let stripeCount: Int
    public let rowFloats: Int
    private let shift: UInt64
    private let locks: [PThreadMutex]
    private let stripes: [RowStripe]
    public let budget: RowBudget
    /// Apply turns (`withStripesInTurn`): `turns[i]` is the ticket whose turn it is in stripe `i` (every
    /// lower ticket has passed it), guarded by `locks[i]`; `turnTaken[i]` is signalled when it moves.
    private let turns: UnsafeMutableBufferPointer<UInt64>
    private let turnTaken: [PThreadCondition]

    /// `capacity` rows in all (split evenly); `stripes` is rounded up to a power of two, and lowered so each
    /// stripe holds at least 256 rows (a small cache split further would no longer bound its total).
    public init(rowFloats: Int, capacity: Int, stripes requested: Int = 64) {
        var n = 1
        while n < max(1, min(requested, capacity / 256)) { n <<= 1 }
        stripeCount = n
        self.rowFloats = rowFloats
        shift = UInt64(64 - n.trailingZeroBitCount)
        locks = (0..<n).map { _ in PThreadMutex() }
        let budget = RowBudget(capacity: capacity)
        self.budget = budget
        stripes = (0..<n).map { _ in RowStripe(rowFloats: rowFloats, budget: budget) }
        turns = .allocate(capacity: n)
        turns.initialize(repeating: 0)
        turnTaken = locks.map { PThreadCondition($0) }
    }
    deinit { turns.deallocate() }

    /// Total capacity in rows (shared by the stripes).
    public var capacity: Int { budget.capacity }
    /// Rows in memory, from the shared counter (no stripe lock: callable with stripes held).
    public var liveRows: Int { budget.liveRows }

    @inline(__always) public func stripe(of key: UInt64) -> Int {
        stripeCount == 1 ? 0 : Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always) public func withStripe<R, E: Error>(_ i: Int, _ body: (RowStripe) throws(E) -> R) throws(E) -> R {
        locks[i].lock(); defer { locks[i].unlock() }
        return try body(stripes[i])
    }

    /// Runs `body` once per stripe of `plan` that has keys, each under its stripe's lock, in ascending order.
    @inline(__always)
    public func withStripes<E: Error>(_ plan: StripePlan, _ body: (RowStripe, _ stripe: Int, _ positions: UnsafeBufferPointer<Int32>) throws(E) -> Void) throws(E) {
        for i in 0..<stripeCount where plan.starts[i + 1] > plan.starts[i] {
            locks[i].lock(); defer { locks[i].unlock() }
            try body(stripes[i], i, plan.positions(of: i))
        }
    }

    /// Runs `body` once per stripe of `plan` that has keys, each under its stripe's lock, like `withStripes`,
    /// but with the stripes cut into `parts` ascending runs holding about as many keys each, the runs on as
    /// many threads at once (the caller's thread runs one and returns when all are done); `body` gets its
    /// run's index. Each thread holds one stripe lock at a time. `body` may write only its stripe's rows and
    /// memory no other run writes (per run or per position). `parts` 1 is `withStripes`.
    public func withStripesSplit(_ plan: StripePlan, parts requested: Int,
                                 _ body: (_ part: Int, RowStripe, _ stripe: Int, _ positions: UnsafeBufferPointer<Int32>) -> Void) {
        let parts = max(1, min(requested, stripeCount))
        guard parts > 1 else { withStripes(plan) { body(0, $0, $1, $2) }; return }
        // Run r covers stripes bounds[r]..<bounds[r + 1]: cut where the keys before reach r / parts of them.
        var bounds = [Int](repeating: stripeCount, count: parts + 1)
        bounds[0] = 0
        let total = plan.starts[stripeCount]
        var s = 0
        for r in 1..<parts {
            while s < stripeCount, plan.starts[s] * parts < total * r { s += 1 }
            bounds[r] = s
        }
        let stripes = self.stripes, locks = self.locks
        withoutActuallyEscaping(body) { body in
            let box = SplitWork { part in
                for i in bounds[part]..<bounds[part + 1] where plan.starts[i + 1] > plan.starts[i] {
                    locks[i].lock(); defer { locks[i].unlock() }
                    body(part, stripes[i], i, plan.positions(of: i))
                }
            }
            DispatchQueue.concurrentPerform(iterations: parts) { box.body($0) }
        }
    }

    /// Runs `body` once per stripe of `plan` that has keys, each under its stripe's lock, like `withStripes`,
    /// but as apply turn `ticket`: in every stripe (ascending, those without keys too) it waits until every
    /// lower ticket has passed, then passes. Tickets are handed out 0, 1, 2, ... by the owner (under a lock
    /// of its own, in the order their updates must reach each row), and every ticket handed out must pass
    /// (`withStripesInTurn` or `passTurn`) or later ones wait forever. So updates taking turns reach every
    /// row in ticket order while two of them work in different stripes at once.
    public func withStripesInTurn(_ plan: StripePlan, ticket: UInt64, _ body: (RowStripe, _ stripe: Int, _ positions: UnsafeBufferPointer<Int32>) -> Void) {
        inTurn(ticket) { i in if plan.starts[i + 1] > plan.starts[i] { body(stripes[i], i, plan.positions(of: i)) } }
    }

    /// Passes apply turn `ticket` in every stripe without touching a row (an update that failed before it
    /// applied anything).
    public func passTurn(_ ticket: UInt64) { inTurn(ticket) { _ in } }

    /// Turn `ticket` through every stripe in ascending order: waits for it under the stripe's lock, runs
    /// `visit(stripe)`, hands the stripe to the next ticket.
    @inline(__always)
    private func inTurn(_ ticket: UInt64, _ visit: (Int) -> Void) {
        for i in 0..<stripeCount {
            locks[i].lock(); defer { locks[i].unlock() }
            while turns[i] != ticket { turnTaken[i].wait() }
            visit(i)
            turns[i] = ticket &+ 1
            turnTaken[i].broadcast()
        }
    }

    /// Waits until every ticket below `ticket` has passed every stripe: with the owner's ticket lock held
    /// (no ticket handed out meanwhile), every update that took a turn is then applied. Holds no stripe lock
    /// on return.
    public func waitForTurns(below ticket: UInt64) {
        for i in 0..<stripeCount {
            locks[i].lock(); defer { locks[i].unlock() }
            while turns[i] < ticket { turnTaken[i].wait() }
        }
    }

    /// Runs `body` with every stripe locked (ascending): nothing else touches any row meanwhile.
    public func withAll<R, E: Error>(_ body: ([RowStripe]) throws(E) -> R) throws(E) -> R {
        for l in locks { l.lock() }
        defer { for l in locks.reversed() { l.unlock() } }
        return try body(stripes)
    }

    /// Sums of the stripes' counters, each read under its lock (a moment-by-moment total, not a snapshot).
    public var counts: (live: Int, dirty: Int, unstored: Int, evictions: UInt64) {
        var l = 0, d = 0, u = 0
        var e: UInt64 = 0
        for i in 0..<stripeCount { withStripe(i) { s in l += s.live; d += s.dirtyCount; u += s.unstoredCount; e &+= s.evictions } }
        return (l, d, u, e)
    }

    /// Groups `count` keys by stripe (a counting sort; positions keep their order within a stripe).
    public func plan(_ keys: UnsafeBufferPointer<UInt64>) -> StripePlan { StripePlan(keys, store: self) }
}

/// A run of `RowStore.withStripesSplit` handed to the threads that run the runs at once: each writes only
/// what its run owns (see there), and the caller waits for all of them, so sharing it is safe.
private struct SplitWork: @unchecked Sendable {
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
}

/// The positions of a batch's keys grouped by stripe: `starts[i]..<starts[i+1]` of `order` are the positions
/// (indices into the batch) whose keys live in stripe i, ascending. Built once per request; owns its memory.
public final class StripePlan {
    public let starts: UnsafeMutableBufferPointer<Int>
    public let order: UnsafeMutableBufferPointer<Int32>

    init(_ keys: UnsafeBufferPointer<UInt64>, store: RowStore) {
        let n = store.stripeCount
        starts = .allocate(capacity: n + 1)
        starts.initialize(repeating: 0)
        order = .allocate(capacity: max(1, keys.count))
        let stripeOf = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(1, keys.count))
        defer { stripeOf.deallocate() }
        for i in 0..<keys.count {
            let s = store.stripe(of: keys[i])
            stripeOf[i] = Int32(s)
            starts[s + 1] += 1
        }
        for i in 0..<n { starts[i + 1] += starts[i] }
        let next = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
        defer { next.deallocate() }
        for i in 0..<n { next[i] = starts[i] }
        for i in 0..<keys.count {
            let s = Int(stripeOf[i])
            order[next[s]] = Int32(i)
            next[s] += 1
        }
    }
    deinit { starts.deallocate(); order.deallocate() }

    @inline(__always) public func positions(of stripe: Int) -> UnsafeBufferPointer<Int32> {
        UnsafeBufferPointer(rebasing: order[starts[stripe]..<starts[stripe + 1]])
    }
}
