import Foundation
import Engine

/// `--ack-replicas 1` on a primary (see ACKNOWLEDGED BY A REPLICA in the proto): what followers confirmed of
/// each table incarnation's update log, and the pushes waiting for a confirmation. Invariant: every waiter
/// is answered exactly once, with true when a confirmation reached its sequence, with false at its deadline.
/// Confirmations only grow. Thread-safe.
public final class ReplicaAcks: @unchecked Sendable {
    /// Replicas that must confirm before a push is acknowledged (0 or 1).
    public let required: Int
    public let timeoutSeconds: Double
    private struct Key: Hashable { let table: String; let incarnation: UInt64 }
    private struct Waiter { let id: UInt64; let sequence: UInt64; let started: UInt64; let done: @Sendable (Bool) -> Void }
    private let lock = NSLock()
    private var confirmed: [Key: UInt64] = [:]
    private var waiters: [Key: [Waiter]] = [:]
    private var nextID: UInt64 = 0
    private var counts = (acknowledged: UInt64(0), timedOut: UInt64(0), waitNanos: UInt64(0))

    public init(required: Int, timeoutSeconds: Double) {
        self.required = required; self.timeoutSeconds = timeoutSeconds
    }

    /// A follower holds every record of `table` (incarnation) through `sequence` durably.
    func confirm(table: String, incarnation: UInt64, through sequence: UInt64) {
        let key = Key(table: table, incarnation: incarnation)
        let ready: [Waiter] = lock.withLock {
            guard sequence > confirmed[key, default: 0] else { return [] }
            confirmed[key] = sequence
            guard let list = waiters[key] else { return [] }
            let (done, rest) = (list.filter { $0.sequence <= sequence }, list.filter { $0.sequence > sequence })
            waiters[key] = rest.isEmpty ? nil : rest
            let now = DispatchTime.now().uptimeNanoseconds
            counts.acknowledged += UInt64(done.count)
            for w in done { counts.waitNanos += now &- w.started }
            return done
        }
        for w in ready { w.done(true) }
    }

    /// Calls `done(true)` once a follower confirmed `point`, or `done(false)` after the timeout.
    func wait(for point: ReplicationPoint, _ done: @escaping @Sendable (Bool) -> Void) {
        let key = Key(table: point.table, incarnation: point.incarnation)
        let id: UInt64? = lock.withLock {
            if confirmed[key, default: 0] >= point.sequence { counts.acknowledged += 1; return nil }
            nextID += 1
            waiters[key, default: []].append(Waiter(id: nextID, sequence: point.sequence, started: DispatchTime.now().uptimeNanoseconds, done: done))
            return nextID
        }
        guard let id else { return done(true) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds) { [self] in
            let expired: Waiter? = lock.withLock {
                guard var list = waiters[key], let i = list.firstIndex(where: { $0.id == id }) else { return nil }
                let w = list.remove(at: i)
                waiters[key] = list.isEmpty ? nil : list
                counts.timedOut += 1
                return w
            }
            expired?.done(false)
        }
    }

    /// Pushes acknowledged after a confirmation, pushes answered NOT_REPLICATED, and the mean wait (ms).
    public var summary: (acknowledged: UInt64, timedOut: UInt64, meanWaitMs: Double) {
        lock.withLock {
            (counts.acknowledged, counts.timedOut, counts.acknowledged == 0 ? 0 : Double(counts.waitNanos) / Double(counts.acknowledged) / 1e6)
        }
    }
}
