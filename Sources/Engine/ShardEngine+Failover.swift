import Foundation
import Vocabulary
import Storage

/// The point of a table's update log a replica must confirm before a push is acknowledged with
/// `--ack-replicas 1`: the table incarnation and a sequence at or after the push's.
public struct ReplicationPoint: Sendable, Hashable {
    public let table: String
    public let incarnation: UInt64
    public let sequence: UInt64
}

/// Roles and epochs for followers and failover (see FAILOVER AND EPOCHS in the proto). A data directory
/// records its role ("follower" while it copies a primary, "primary" once promoted) and its primary epoch;
/// a primary whose map in force names a higher epoch for its shard index than its own is fenced.
extension ShardEngine {
    /// This shard's primary epoch (0 until promoted).
    public var primaryEpoch: UInt64 { mapLock.withLock { epoch } }

    /// The address writes must go to when this primary is fenced (its map names a higher epoch for its
    /// shard index than its own), else nil.
    public var fencedBy: String? {
        mapLock.withLock {
            guard configuration.shardIndex < members.count else { return nil }
            let m = members[configuration.shardIndex]
            return (m.epoch ?? 0) > epoch ? m.address : nil
        }
    }

    /// Whether this directory was promoted from a follower to the primary its map names at its epoch.
    public var isPromotedPrimary: Bool {
        mapLock.withLock {
            role == "primary" && configuration.shardIndex < members.count && (members[configuration.shardIndex].epoch ?? 0) == epoch
        }
    }

    /// Marks this directory as a follower's copy (durably). WRONG_STATE when it holds tables it did not
    /// copy as a follower (a primary's data would silently diverge from the primary it now follows).
    public func becomeFollower() throws(EngineError) {
        let current = mapLock.withLock { role }
        if current == "follower" { return }
        guard tableNames().isEmpty else {
            throw .wrongState("data directory \(configuration.dataDirectory) holds tables of a primary (role \(current ?? "primary")): a follower needs an empty --data-dir (or the one it followed with before)")
        }
        try persistRole("follower", epoch: nil)
    }

    /// Makes this shard the primary of its index at `epoch`: records the epoch and role durably, then adopts
    /// `spec` (which must name `epoch` for this shard index). Idempotent for the same epoch.
    public func promote(epoch newEpoch: UInt64, spec: ClusterSpec) throws(EngineError) {
        try checkPromotion(epoch: newEpoch, spec: spec)
        try persistRole("primary", epoch: newEpoch)
        try adoptShardMap(spec)
    }

    /// Throws unless `promote(epoch:spec:)` would accept: `spec` names `newEpoch` (> 0) for this shard index,
    /// and the epoch is above this shard's (or equal to it once already promoted at it).
    public func checkPromotion(epoch newEpoch: UInt64, spec: ClusterSpec) throws(EngineError) {
        let index = configuration.shardIndex
        guard index < spec.shards.count, (spec.shards[index].epoch ?? 0) == newEpoch, newEpoch > 0 else {
            throw .invalidSpec(table: "-", message: "Promote: the shard map must name epoch \(newEpoch) (> 0) for shard \(index)")
        }
        let (current, currentRole) = mapLock.withLock { (epoch, role) }
        guard newEpoch > current || (newEpoch == current && currentRole == "primary") else {
            throw .wrongState("shard \(index) is already at primary epoch \(current); a promotion needs a higher epoch than \(current), got \(newEpoch)")
        }
    }

    private func persistRole(_ newRole: String, epoch newEpoch: UInt64?) throws(EngineError) {
        mapLock.lock(); defer { mapLock.unlock() }
        do {
            let b = WriteBatch()
            b.put(db.defaultFamily, key: Self.roleKey, value: Array(newRole.utf8))
            if let newEpoch { b.put(db.defaultFamily, key: Self.epochKey, value: Array(String(newEpoch).utf8)) }
            try db.write(b, sync: true)
        } catch { throw .storage("persisting role \(newRole): \(error)") }
        role = newRole
        if let newEpoch { epoch = newEpoch }
    }

    /// The log point a replica must confirm for the last update applied to `table`.
    public func replicationPoint(table name: String) throws(EngineError) -> ReplicationPoint {
        try withTable(name) { t in ReplicationPoint(table: name, incarnation: t.identity.incarnation, sequence: t.lastSequence) }
    }
}
