import Foundation
import Engine
import RPC
import EmbedPSWire
import Vocabulary
import ServiceSupport

/// The freeze of a shard for cluster checkpoints and restores. While frozen (under a name), methods whose
/// contract says `FROZEN_REFUSES` (everything that changes rows, tables or the map) are refused with
/// UNAVAILABLE / FROZEN instead of waiting, so no server thread blocks; reads keep being served. `freeze`
/// returns once the updates already inside have left. A freeze ends with `thaw` or by itself after its
/// timeout. Thread-safe.
final class RequestGate: UpdateGate, @unchecked Sendable {
    private let condition = NSCondition()
    private var active = 0
    private var frozenBy: String? = nil
    private var generation = 0
    /// The last freeze that ended by itself (its timeout passed before a thaw), until the next freeze.
    private var expired: (owner: String, seconds: Double)? = nil
    /// Set on a follower: every update is refused with FAILED_PRECONDITION / NOT_PRIMARY naming it.
    private var primary: String? = nil

    /// Makes this shard refuse updates naming `address` as the primary (a follower, or a fenced old
    /// primary; see REPLICATION in the proto), or accept them again with nil.
    func refuseUpdates(primary address: String?) { condition.withLock { primary = address } }
    var followedPrimary: String? { condition.withLock { primary } }

    /// Admits an update, or throws UNAVAILABLE / FROZEN (FAILED_PRECONDITION / NOT_PRIMARY on a follower).
    func enter() throws {
        condition.lock(); defer { condition.unlock() }
        if let p = primary { throw EngineError.notPrimary(primary: p).rpcStatus }
        if let f = frozenBy {
            throw RPCStatus(.unavailable, "shard is frozen for '\(f)' (a few seconds): updates are paused; retry",
                            detail: Wire.ErrorDetail(reason: .frozen, frozenBy: f))
        }
        active += 1
    }
    func leave() {
        condition.lock(); active -= 1; condition.broadcast(); condition.unlock()
    }

    /// Freezes under `owner` (idempotent for the same owner), waiting up to 30 s for updates in flight;
    /// thaws by itself after `autoThawSeconds`. `busyCode` is what a caller gets while another freeze holds.
    func freeze(_ owner: String, autoThawSeconds: Double, busyCode: StatusCode = .aborted) throws {
        condition.lock(); defer { condition.unlock() }
        if let f = frozenBy, f != owner {
            let reason: Wire.ErrorReason = busyCode == .unavailable ? .frozen : .busy
            throw RPCStatus(busyCode, "shard is already frozen for '\(f)'; try again when it is done", detail: Wire.ErrorDetail(reason: reason, frozenBy: f))
        }
        frozenBy = owner
        expired = nil
        generation += 1
        let g = generation
        let deadline = Date().addingTimeInterval(30)
        while active > 0 {
            if !condition.wait(until: deadline) {
                frozenBy = nil
                throw RPCStatus(.deadlineExceeded, "updates in flight did not finish within 30 s; not frozen",
                                detail: Wire.ErrorDetail(reason: .busy, frozenBy: owner))
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + autoThawSeconds) { [weak self] in self?.expire(owner, generation: g, after: autoThawSeconds) }
    }

    private func expire(_ owner: String, generation g: Int, after seconds: Double) {
        condition.lock(); defer { condition.unlock() }
        guard frozenBy == owner, g == generation else { return }
        frozenBy = nil
        expired = (owner, seconds)
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

    /// Throws unless frozen under `owner`: ABORTED / BUSY when that freeze ended by itself before `what`
    /// arrived (the operation should start over with a new freeze), FAILED_PRECONDITION / WRONG_STATE when
    /// there was no such freeze.
    func requireFrozen(by owner: String, for what: String) throws {
        condition.lock(); defer { condition.unlock() }
        if frozenBy == owner { return }
        if let e = expired, e.owner == owner {
            throw RPCStatus(.aborted, "\(what) '\(owner)': the shard's freeze ended by itself after \(Int(e.seconds)) s before this call arrived; run the whole operation again (or give it a longer freeze)",
                            detail: Wire.ErrorDetail(reason: .busy, frozenBy: owner))
        }
        throw RPCStatus(.failedPrecondition, .wrongState, "\(what) '\(owner)' needs the shard frozen under that name first (Freeze)")
    }
}

/// The shard's engine, replaceable by a checkpoint restore. Invariant: the engine is closed or replaced only
/// when no call is inside it (`withEngine` counts them); calls arriving meanwhile get UNAVAILABLE with
/// reason RESTORING (or SHUTTING_DOWN after `close`). Thread-safe.
public final class ShardHost: @unchecked Sendable {
    public let configuration: ShardEngineConfiguration
    let gate = RequestGate()
    private enum State { case serving(ShardEngine), restoring, failed(String), closed }
    /// Set on a follower: its copy loop (replication state for TableStats).
    public var follower: Follower? {
        get { condition.withLock { followerBox } }
        set { condition.withLock { followerBox = newValue }; try? refreshWriteRole() }
    }

    /// Refuses writes (NOT_PRIMARY) while this shard follows a primary or is fenced by a newer epoch in its
    /// map; accepts them otherwise. Call after anything that changes either.
    public func refreshWriteRole() throws {
        let primary = try follower?.primary ?? withEngine { $0.fencedBy } ?? condition.withLock { leaseRefusal }
        gate.refuseUpdates(primary: primary)
    }

    /// With an etcd lease (`LeaseKeeper`): while this primary cannot show it holds its shard's lease, writes
    /// are refused naming `holder` (the lease's holder, or "" when unknown); nil accepts them again.
    public func setLeaseRefusal(_ holder: String?) throws {
        condition.withLock { leaseRefusal = holder }
        try refreshWriteRole()
    }
    private var leaseRefusal: String? = nil

    /// Failover: stops copying (when following), makes the engine the primary at `epoch` under `spec`, and
    /// accepts writes unless `spec` fences it after all.
    public func promote(epoch: UInt64, spec: ClusterSpec) throws {
        // Checked by the engine's own rule before the copy stops, so a refused request leaves the follower following.
        try withEngine { try $0.checkPromotion(epoch: epoch, spec: spec) }
        if let f = follower {
            f.stop()
            condition.withLock { followerBox = nil }
        }
        try withEngine { try $0.promote(epoch: epoch, spec: spec) }
        try refreshWriteRole()
    }
    private var followerBox: Follower? = nil
    private let condition = NSCondition()
    private var state: State
    private var inside = 0

    public init(engine: ShardEngine, configuration: ShardEngineConfiguration) {
        state = .serving(engine); self.configuration = configuration
    }

    /// Runs `body` with the engine, counted as a call in flight (a restore or close waits for it).
    public func withEngine<R>(_ body: (ShardEngine) throws -> R) throws -> R {
        let engine = try enter()
        defer { leave() }
        do { return try body(engine) } catch EngineError.closed { throw unavailableNow() }
    }

    private func enter() throws -> ShardEngine {
        condition.lock(); defer { condition.unlock() }
        guard case .serving(let e) = state else { throw unavailableLocked() }
        inside += 1
        return e
    }
    private func leave() {
        condition.lock(); inside -= 1; if inside == 0 { condition.broadcast() }; condition.unlock()
    }
    private func unavailableNow() -> RPCStatus { condition.withLock { unavailableLocked() } }
    private func unavailableLocked() -> RPCStatus {
        switch state {
        case .restoring, .serving: RPCStatus(.unavailable, .restoring, "shard \(configuration.shardIndex) is restoring a checkpoint: retry shortly")
        case .failed(let why): RPCStatus(.internalError, .storage, "shard \(configuration.shardIndex) could not reopen its data after a restore (\(why)); restart it")
        case .closed: RPCStatus(.unavailable, .shuttingDown, "shard \(configuration.shardIndex) is shutting down; retry on another replica or later")
        }
    }

    /// Replaces this shard's data with its part of checkpoint `name` and reopens it. The caller holds the
    /// freeze gate; calls in flight finish first, calls arriving meanwhile get UNAVAILABLE / RESTORING.
    func restore(name: String) throws -> CheckpointInfo {
        do { try Names.check(name, as: .checkpoint) } catch { throw error }
        let dir = ShardEngine.checkpointPath(dataDirectory: configuration.dataDirectory, name: name)
        guard let info = ShardEngine.readCheckpoint(dir) else { throw EngineError.unknownCheckpoint(name) }
        let old: ShardEngine = try condition.withLock {
            guard case .serving(let e) = state else { throw unavailableLocked() }
            state = .restoring
            while inside > 0 { condition.wait() }
            return e
        }
        old.close(checkpoint: false)
        do {
            try ShardEngine.installCheckpoint(from: dir, into: configuration.dataDirectory, shardIndex: configuration.shardIndex)
            let reopened = try ShardEngine(configuration)
            try reopened.applyCheckpointDeltas(of: dir)
            reopened.startCheckpointer()
            condition.withLock { state = .serving(reopened) }
            return info
        } catch {
            condition.withLock { state = .failed("\(error)") }
            throw EngineError.storage("restoring checkpoint '\(name)' on shard \(configuration.shardIndex): \(error)")
        }
    }

    /// Stops the engine (final checkpoint) once no call is inside. Call after the server stopped.
    public func close() {
        let engine: ShardEngine? = condition.withLock {
            guard case .serving(let e) = state else { state = .closed; return nil }
            state = .closed
            while inside > 0 { condition.wait() }
            return e
        }
        engine?.close(checkpoint: true)
    }
}
