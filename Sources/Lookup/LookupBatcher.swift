import Foundation
import Client

/// Coalesces concurrent lookups of one table (group commit): when no pull of the table is in flight, a
/// request is sent at once (after `window` seconds when a window is set); requests arriving while a pull is
/// in flight wait and then go together, merged into one client pull of their distinct ids, each caller
/// getting its own rows back. No added latency when idle, batching under load. Callers block (they run on
/// server threads); the pull itself runs on Swift concurrency. Thread-safe.
public final class LookupBatcher: @unchecked Sendable {
    final class Waiter: @unchecked Sendable {
        let ids: [UInt64]
        let done = DispatchSemaphore(value: 0)
        var result: Result<[Float], any Error> = .success([])
        init(ids: [UInt64]) { self.ids = ids }
    }
    let window: Double
    let pull: @Sendable (String, [UInt64]) async throws -> [Float]
    let dim: @Sendable (String) async throws -> Int
    private var pending: [String: [Waiter]] = [:]
    private var inFlight: Set<String> = []
    private let lock = NSLock()
    private let queue = DispatchQueue(label: "lookup-batcher", attributes: .concurrent)
    /// Backend pulls issued, and requests they served (requests / pulls = the batching factor).
    public private(set) var backendPulls: UInt64 = 0
    public private(set) var batchedRequests: UInt64 = 0

    public init(windowSeconds: Double, dim: @escaping @Sendable (String) async throws -> Int, pull: @escaping @Sendable (String, [UInt64]) async throws -> [Float]) {
        window = windowSeconds; self.dim = dim; self.pull = pull
    }

    /// The rows of `ids` (ids.count * dim floats), fetched in a batch with concurrent callers.
    public func rows(table: String, ids: [UInt64]) throws -> [Float] {
        let w = Waiter(ids: ids)
        let start = lock.withLock { () -> Bool in
            pending[table, default: []].append(w)
            return inFlight.insert(table).inserted
        }
        if start {
            if window > 0 { queue.asyncAfter(deadline: .now() + window) { [self] in flush(table) } } else { flush(table) }
        }
        w.done.wait()
        return try w.result.get()
    }

    private func flush(_ table: String) {
        let waiters = lock.withLock { () -> [Waiter] in
            let w = pending.removeValue(forKey: table) ?? []
            if w.isEmpty { inFlight.remove(table) } else { backendPulls += 1; batchedRequests += UInt64(w.count) }
            return w
        }
        guard !waiters.isEmpty else { return }
        var unique: [UInt64] = [], position: [UInt64: Int] = [:]
        for w in waiters { for id in w.ids where position[id] == nil { position[id] = unique.count; unique.append(id) } }
        let pull = self.pull, dim = self.dim
        let ids = unique, positions = position
        Task {
            do {
                let d = try await dim(table)
                let rows = try await pull(table, ids)
                for w in waiters {
                    var out = [Float](repeating: 0, count: w.ids.count * d)
                    for (i, id) in w.ids.enumerated() {
                        let p = positions[id]!
                        for k in 0..<d { out[i * d + k] = rows[p * d + k] }
                    }
                    w.result = .success(out)
                    w.done.signal()
                }
            } catch {
                for w in waiters { w.result = .failure(error); w.done.signal() }
            }
            // Requests that arrived meanwhile go out now as one pull.
            self.flush(table)
        }
    }
}
