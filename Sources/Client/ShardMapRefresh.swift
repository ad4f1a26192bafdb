import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSClient {
    /// Map refreshes one pull or push may need while a resharding moves slot after slot.
    static let maxMapRefreshes = 64

    /// Fetches the shard map from every shard and follower of the map in use (one attempt each, a short
    /// deadline: a dead primary must not hold up learning about its replacement) and routes by the newest.
    /// Returns its version.
    @discardableResult
    public func refreshShardMap() async throws -> UInt64 {
        let current = spec
        let addresses = current.allAddresses
        let maps = await withTaskGroup(of: Wire.ShardMapResponse?.self) { group in
            for (i, address) in addresses.enumerated() {
                group.addTask {
                    // Shards through their channels, followers through a channel of their own.
                    try? await self.callOnce(i < current.shards.count ? .shard(i) : .address(address), ShardRPC.getShardMap, Wire.ListTablesRequest(), timeoutMs: 3000)
                }
            }
            var out: [Wire.ShardMapResponse] = []
            for await m in group { if let m { out.append(m) } }
            return out
        }
        guard let newest = maps.max(by: { $0.version < $1.version }) else {
            throw ClientError.inconsistentCluster("no shard or follower answered GetShardMap (\(addresses.joined(separator: ", ")))")
        }
        let spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(newest.specJson.utf8))
        try adopt(spec)
        return slotMap.version
    }

    /// Where a single call goes: a shard of the map in use, or any address (a short-lived channel).
    enum CallTarget: Sendable { case shard(Int), address(String) }

    /// One attempt of one typed call, no retries (map refreshes, failover steps that decide themselves).
    func callOnce<Q, A>(_ target: CallTarget, _ method: RPCMethod<Q, A>, _ request: Q, timeoutMs: Int64) async throws -> A {
        let channel: Channel, owned: Bool
        switch target {
        case .shard(let s): (channel, owned) = (self.channel(s), false)
        case .address(let a): (channel, owned) = (makeChannel(a), true)
        }
        defer { if owned { channel.close() } }
        let bytes = request.encoded()
        let index: Int = if case .shard(let s) = target { s } else { -1 }
        do {
            let m = try await channel.unary(method.path, OutgoingMessage(bytes: bytes), metadata: options.metadata, timeoutMs: timeoutMs)
            return try Self.decode(A.self, m, shard: index)
        } catch let s as RPCStatus {
            let address: String = switch target { case .shard(let i): spec.shards[i].address; case .address(let a): a }
            throw ClientError.shard(index: index, address: address, status: s)
        }
    }
}
