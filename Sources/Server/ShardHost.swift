import Foundation
import Engine
import RPC

/// Admission of requests to a shard, with a freeze for cluster checkpoints and restores. While frozen
/// (under a name), new requests are refused with UNAVAILABLE (clients retry) instead of waiting, so no
/// server thread blocks; `freeze` returns once the requests already inside have left. A freeze ends with
/// `thaw` or by itself after its timeout. Thread-safe.
final class RequestGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var active = 0
    private var frozenBy: String? = nil
    private var generation = 0

    func enter() throws {
        condition.lock(); defer { condition.unlock() }
        if let f = frozenBy { throw RPCStatus(.unavailable, "shard is frozen for checkpoint '\(f)' (a few seconds); retry") }
        active += 1
    }
    func leave() {
        condition.lock(); active -= 1; condition.broadcast(); condition.unlock()
    }

    /// Freezes under `owner` (idempotent for the same owner), waiting up to 30 s for in-flight requests;
    /// thaws by itself after `autoThawSeconds`.
    func freeze(_ owner: String, autoThawSeconds: Double) throws {
        condition.lock(); defer { condition.unlock() }
        if let f = frozenBy, f != owner { throw RPCStatus(.aborted, "shard is already frozen for '\(f)'; try again when it is done") }
        frozenBy = owner
        generation += 1
        let g = generation
        let deadline = Date().addingTimeInterval(30)
        while active > 0 {
            if !condition.wait(until: deadline) {
                frozenBy = nil
                throw RPCStatus(.deadlineExceeded, "in-flight requests did not finish within 30 s; not frozen")
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + autoThawSeconds) { [weak self] in _ = self?.thaw(owner, generation: g) }
    }

    /// Ends the freeze of `owner`; false when not frozen by it.
    @discardableResult
    func thaw(_ owner: String, generation g: Int? = nil) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard frozenBy == owner, g == nil || g == generation else { return false }
        frozenBy = nil
        return true
    }

    func isFrozen(by owner: String) -> Bool { condition.withLock { frozenBy == owner } }
}

/// The shard's engine, replaceable by a checkpoint restore. Invariant: the engine is only replaced while the
/// request gate is frozen and empty; requests read it inside the gate. Thread-safe.
public final class ShardHost: @unchecked Sendable {
    public let configuration: ShardEngineConfiguration
    let gate = RequestGate()
    private var current: ShardEngine?
    private let lock = NSLock()

    public init(engine: ShardEngine, configuration: ShardEngineConfiguration) {
        current = engine; self.configuration = configuration
    }

    /// The engine (fails only after a restore that could not reopen the data).
    public var engine: ShardEngine {
        get throws { guard let e = lock.withLock({ current }) else { throw RPCStatus(.internalError, "shard has no open data after a failed restore; restart it") }; return e }
    }

    /// Replaces this shard's data with its part of checkpoint `name` and reopens it. The caller holds the
    /// gate frozen.
    func restore(name: String) throws -> CheckpointInfo {
        let dir = ShardEngine.checkpointPath(dataDirectory: configuration.dataDirectory, name: name)
        guard let info = ShardEngine.readCheckpoint(dir) else {
            throw RPCStatus(.notFound, "shard \(configuration.shardIndex) has no checkpoint '\(name)' (embedps-admin checkpoint list)")
        }
        let old = lock.withLock { () -> ShardEngine? in let e = current; current = nil; return e }
        old?.close(checkpoint: false)
        try ShardEngine.installCheckpoint(from: dir, into: configuration.dataDirectory, shardIndex: configuration.shardIndex)
        let reopened = try ShardEngine(configuration)
        reopened.startCheckpointer()
        lock.withLock { current = reopened }
        return info
    }

    /// Stops the engine (final checkpoint). Call after the server stopped.
    public func close() { lock.withLock { current }?.close(checkpoint: true) }
}
