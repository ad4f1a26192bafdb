import Foundation
import Client

/// Coalesces concurrent lookups of one table: requests arriving within `window` seconds of the first one
/// are merged into a single client pull of their distinct ids, and each caller gets its own rows back.
/// Callers block (they run on server threads); the pull itself runs on Swift concurrency. Thread-safe.
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
        let first = lock.withLock { () -> Bool in
            let isFirst = pending[table] == nil
            pending[table, default: []].append(w)
            return isFirst
        }
        if first {
            queue.asyncAfter(deadline: .now() + window) { [self] in flush(table) }
        }
        w.done.wait()
        return try w.result.get()
    }

    private func flush(_ table: String) {
        let waiters = lock.withLock { () -> [Waiter] in
            let w = pending.removeValue(forKey: table) ?? []
            backendPulls += 1; batchedRequests += UInt64(w.count)
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
        }
    }
}
