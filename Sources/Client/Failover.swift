import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// What `EmbedPSAdmin.failover` did. `oldPrimaryReachable` false means the follower was promoted at the
/// sequences it held (with --ack-replicas 1 on the old primary, every acknowledged push is among them).
public struct FailoverReport: Sendable, Codable {
    public struct Table: Sendable, Codable {
        public var name: String
        /// The old primary's last sequence (nil when it did not answer) and the promoted follower's.
        public var primarySequence: UInt64?
        public var promotedSequence: UInt64
    }
    public var shard: Int
    public var oldPrimary: String
    public var newPrimary: String
    public var epoch: UInt64
    public var mapVersion: UInt64
    public var oldPrimaryReachable: Bool
    public var tables: [Table]
    /// Addresses that did not take the new map (they learn it when they restart or refresh).
    public var notUpdated: [String]
    public var catchUpSeconds: Double
    public var seconds: Double
}

extension EmbedPSAdmin {
    /// Promotes a follower of `shard` to its primary (see FAILOVER AND EPOCHS in the proto): publishes the
    /// next map version naming `target` (default: the shard's first follower) at the next epoch, first to the
    /// old primary when it answers (which fences it: it refuses writes from then on) and then waits up to
    /// `catchUpSeconds` until the follower holds every record the old primary has; sends Promote; then the
    /// map to every other shard and follower. Safe to run again after a partial failure.
    public func failover(shard: Int, to target: String? = nil, catchUpSeconds: Double = 60,
                         progress: @Sendable (String) -> Void = { _ in }) async throws -> FailoverReport {
        let started = Date()
        _ = try? await refreshShardMap()
        let spec = self.spec
        guard shard >= 0, shard < spec.shards.count else {
            throw ClientError.invalidArgument("shard \(shard) is not in the map (\(spec.shards.count) shards)")
        }
        let current = spec.shards[shard]
        if let status = try? await client.callOnce(.address(current.address), ShardRPC.shardStatus, Wire.ShardStatusRequest(), timeoutMs: 3000),
           !status.follows.isEmpty, let epoch = current.epoch, target == nil || target == current.address {
            // A failover published this map but stopped before its Promote: finish that one.
            progress("the map already names follower \(current.address) at epoch \(epoch): promoting it")
            let promoted = try await client.callOnce(.address(current.address), ShardRPC.promote,
                                                     Wire.PromoteRequest(epoch: epoch, specJson: String(decoding: try spec.encoded(), as: UTF8.self)), timeoutMs: 30_000)
            let tables = promoted.tables.compactMap { t in t.spec.map { FailoverReport.Table(name: $0.name, primarySequence: nil, promotedSequence: t.lastSequence) } }
            return FailoverReport(shard: shard, oldPrimary: status.follows, newPrimary: current.address, epoch: epoch, mapVersion: spec.version,
                                  oldPrimaryReachable: false, tables: tables, notUpdated: [], catchUpSeconds: 0, seconds: Date().timeIntervalSince(started))
        }
        let followers = current.followers ?? []
        guard let to = target ?? followers.first else {
            throw ClientError.invalidArgument("shard \(shard) lists no followers in the shard map; start one (embedps-server --follow) and add it to the spec, or pass --to ADDRESS")
        }
        guard to != current.address else {
            throw ClientError.invalidArgument("\(to) is already the primary of shard \(shard) (epoch \(current.epoch ?? 0))")
        }
        // The next map: same slots, the shard addressed at the follower under a higher epoch.
        let epoch = (current.epoch ?? 0) + 1
        var members = spec.shards
        members[shard] = ClusterSpec.Shard(address: to, followers: followers.filter { $0 != to }, epoch: epoch)
        let map = slotMap
        let next = ClusterSpec(members: members, map: try SlotMap(version: map.version + 1, shardCount: map.shardCount, owners: map.owners))
        let nextJSON = String(decoding: try next.encoded(), as: UTF8.self)

        // 1. Fence the old primary (when it answers), then wait until the follower holds what it holds.
        var primarySeqs: [String: UInt64]? = nil
        do {
            _ = try await client.callOnce(.address(current.address), ShardRPC.setShardMap, Wire.ShardMapRequest(specJson: nextJSON), timeoutMs: 3000)
            let status = try await client.callOnce(.address(current.address), ShardRPC.shardStatus, Wire.ShardStatusRequest(), timeoutMs: 3000)
            primarySeqs = Dictionary(status.tables.compactMap { t in t.spec.map { ($0.name, t.lastSequence) } }, uniquingKeysWith: max)
            progress("fenced the old primary \(current.address) with map version \(next.version), epoch \(epoch)")
        } catch {
            progress("old primary \(current.address) did not answer (\(error)): promoting \(to) at the sequences it holds")
        }
        let catchUpStarted = Date()
        var followerSeqs: [String: UInt64] = [:]
        while true {
            let status = try await client.callOnce(.address(to), ShardRPC.shardStatus, Wire.ShardStatusRequest(), timeoutMs: 5000)
            followerSeqs = Dictionary(status.tables.compactMap { t in t.spec.map { ($0.name, t.lastSequence) } }, uniquingKeysWith: max)
            let replicated = Set(status.tables.filter(\.replicated).compactMap { $0.spec?.name })
            let behind = (primarySeqs ?? [:]).filter { replicated.contains($0.key) && followerSeqs[$0.key, default: 0] < $0.value }
            if behind.isEmpty { break }
            guard Date().timeIntervalSince(catchUpStarted) < catchUpSeconds else {
                throw ClientError.inconsistentCluster("follower \(to) did not catch up with \(current.address) within \(Int(catchUpSeconds)) s (behind on \(behind.keys.sorted().joined(separator: ", "))); the old primary stays fenced: run failover again")
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let catchUp = Date().timeIntervalSince(catchUpStarted)

        // 2. Promote, then 3. tell everyone else.
        let promoted = try await client.callOnce(.address(to), ShardRPC.promote, Wire.PromoteRequest(epoch: epoch, specJson: nextJSON), timeoutMs: 30_000)
        progress("promoted \(to) to primary of shard \(shard) at epoch \(promoted.epoch)")
        var notUpdated: [String] = []
        for address in Set(next.allAddresses).subtracting([to, current.address]).sorted() {
            do { _ = try await client.callOnce(.address(address), ShardRPC.setShardMap, Wire.ShardMapRequest(specJson: nextJSON), timeoutMs: 3000) } catch {
                // Followers refuse maps (they only copy); shards that are down learn the map when they start.
                if (error as? ClientError)?.detail?.reason != .notPrimary { notUpdated.append(address) }
            }
        }
        try client.adopt(next)
        let tables = promoted.tables.compactMap { t in
            t.spec.map { FailoverReport.Table(name: $0.name, primarySequence: primarySeqs?[$0.name], promotedSequence: t.lastSequence) }
        }
        return FailoverReport(shard: shard, oldPrimary: current.address, newPrimary: to, epoch: epoch, mapVersion: next.version,
                              oldPrimaryReachable: primarySeqs != nil, tables: tables.sorted { $0.name < $1.name }, notUpdated: notUpdated,
                              catchUpSeconds: catchUp, seconds: Date().timeIntervalSince(started))
    }
}
