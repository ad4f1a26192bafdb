import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSClient {
    /// Map refreshes one pull or push may need while a resharding moves slot after slot.
    static let maxMapRefreshes = 64

    /// Fetches the shard map from every reachable shard and routes by the newest one. Returns its version.
    @discardableResult
    public func refreshShardMap() async throws -> UInt64 {
        let n = shardCount
        let maps = await withTaskGroup(of: Wire.ShardMapResponse?.self) { group in
            for s in 0..<n {
                group.addTask { try? await self.call(shard: s, ShardRPC.getShardMap, Wire.ListTablesRequest()) }
            }
            var out: [Wire.ShardMapResponse] = []
            for await m in group { if let m { out.append(m) } }
            return out
        }
        guard let newest = maps.max(by: { $0.version < $1.version }) else {
            throw ClientError.inconsistentCluster("no shard answered GetShardMap")
        }
        let spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(newest.specJson.utf8))
        try adopt(spec)
        return slotMap.version
    }
}
