import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// A cluster checkpoint as the shards hold it: complete when every shard has its part.
public struct ClusterCheckpoint: Sendable, Codable {
    public var name: String
    public var createdUnixMs: UInt64
    public var shardsWithPart: [Int]
    public var shardCount: Int
    public var tables: [String]
    public var bytes: UInt64
    /// An incremental checkpoint: the checkpoint it is a delta of.
    public var base: String? = nil
    public var complete: Bool { shardsWithPart.count == shardCount }
}

extension EmbedPSAdmin {
    func thawAll(_ name: String) async {
        await withTaskGroup(of: Void.self) { group in
            for s in 0..<shardCount { group.addTask { _ = try? await self.call(shard: s, ShardRPC.thaw, Wire.CheckpointRequest(name: name)) } }
        }
    }

    /// Runs `body` on every shard while all of them are frozen under `name` (updates refused with
    /// UNAVAILABLE, which clients retry), then thaws them, also on failure. Shards thaw by themselves after
    /// `freezeSeconds` if this process dies.
    func whileFrozen<T: Sendable>(_ name: String, freezeSeconds: UInt32, _ body: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        do {
            _ = try await callAll(ShardRPC.freeze, Wire.CheckpointRequest(name: name, freezeSeconds: freezeSeconds))
            let out = try await withThrowingTaskGroup(of: (Int, T).self) { group in
                for s in 0..<shardCount { group.addTask { (s, try await body(s)) } }
                var parts = [T?](repeating: nil, count: shardCount)
                for try await (s, r) in group { parts[s] = r }
                return parts.compactMap { $0 }
            }
            await thawAll(name)
            return out
        } catch {
            await thawAll(name)
            throw error
        }
    }

    /// A consistent cluster checkpoint: every shard frozen (a cut at one moment), each writes its part
    /// (`checkpoints/NAME` in its data directory), then all thaw. Returns the parts in shard order.
    /// With `base`, an incremental checkpoint: each shard stores what changed since its part of `base`.
    public func createCheckpoint(name: String, base: String? = nil, freezeSeconds: UInt32 = 30) async throws -> [Wire.CheckpointInfo] {
        guard Names.isValid(name) else { throw ClientError.invalidArgument(NameError(kind: .checkpoint, name: name).description) }
        if let base, !Names.isValid(base) { throw ClientError.invalidArgument(NameError(kind: .checkpoint, name: base).description) }
        let request = Wire.CheckpointRequest(name: name, freezeSeconds: freezeSeconds, base: base ?? "")
        return try await whileFrozen(name, freezeSeconds: freezeSeconds) { s in
            try await self.call(shard: s, ShardRPC.createCheckpoint, request)
        }
    }

    /// Checkpoints found on the shards, oldest first, with the shards that hold a part of each.
    public func listCheckpoints() async throws -> [ClusterCheckpoint] {
        let perShard = try await callAll(ShardRPC.listCheckpoints, Wire.ListTablesRequest()).map(\.checkpoints)
        var byName: [String: ClusterCheckpoint] = [:]
        for (s, parts) in perShard.enumerated() {
            for p in parts {
                var c = byName[p.name] ?? ClusterCheckpoint(name: p.name, createdUnixMs: p.createdUnixMs, shardsWithPart: [], shardCount: shardCount, tables: p.tables, bytes: 0,
                                                            base: p.base.isEmpty ? nil : p.base)
                c.shardsWithPart.append(s); c.bytes += p.bytes; c.createdUnixMs = min(c.createdUnixMs, p.createdUnixMs)
                byName[p.name] = c
            }
        }
        return byName.values.sorted { $0.createdUnixMs < $1.createdUnixMs }
    }

    /// Restores every shard to its part of checkpoint `name` (all frozen meanwhile). Refuses an incomplete
    /// checkpoint before changing anything.
    public func restoreCheckpoint(name: String, freezeSeconds: UInt32 = 120) async throws -> [Wire.CheckpointInfo] {
        guard let c = try await listCheckpoints().first(where: { $0.name == name }) else {
            throw ClientError.invalidArgument("no checkpoint '\(name)' on the cluster (embedps-admin checkpoint list)")
        }
        guard c.complete else {
            throw ClientError.inconsistentCluster("checkpoint '\(name)' has parts on shards \(c.shardsWithPart) only, of \(shardCount): not restoring")
        }
        let request = Wire.CheckpointRequest(name: name, freezeSeconds: freezeSeconds)
        let parts = try await whileFrozen(name, freezeSeconds: freezeSeconds) { s in
            try await self.call(shard: s, ShardRPC.restoreCheckpoint, request)
        }
        forgetRoutes()
        return parts
    }
}
