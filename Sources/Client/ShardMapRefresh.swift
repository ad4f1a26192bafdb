import Foundation
import RPC
import Engine
import EmbedPSWire

extension ClientError {
    /// A shard refused ids of slots it no longer owns (the map changed): refresh the map and resend.
    var isWrongOwner: Bool {
        if case .shard(_, _, let s) = self { return s.code == .failedPrecondition && s.message.contains(EngineError.shardMapVersionMarker) }
        return false
    }
}

extension EmbedPSClient {
    /// Map refreshes one pull or push may need while a resharding moves slot after slot.
    static let maxMapRefreshes = 64

    /// Fetches the shard map from every reachable shard and routes by the newest one. Returns its version.
    @discardableResult
    public func refreshShardMap() async throws -> UInt64 {
        let n = shardCount
        let maps = await withTaskGroup(of: WireShardMap?.self) { group in
            for s in 0..<n {
                group.addTask {
                    let answer = try? await self.call(shard: s, ShardMethod.getShardMap, { OutgoingMessage(bytes: []) })
                    guard let m = answer else { return nil }
                    return try? m.withUnsafeBytes { try WireShardMap(decoding: $0) }
                }
            }
            var out: [WireShardMap] = []
            for await m in group { if let m { out.append(m) } }
            return out
        }
        guard let newest = maps.max(by: { $0.version < $1.version }) else {
            throw ClientError.inconsistentCluster("no shard answered GetShardMap")
        }
        let spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(newest.specJSON.utf8))
        try adopt(spec)
        return slotMap.version
    }

    /// Sends prepared per-shard requests in parallel and waits for all of them (no call is cancelled because
    /// another failed: a cancelled push might still have been applied).
    /// With `idempotent`, each request carries its own fresh request id (kept across its retries).
    func fanOutAll(_ requests: [(Int, OutgoingMessage)], _ method: String, idempotent: Bool = false) async -> [(shard: Int, result: Result<ReceivedMessage, any Error>)] {
        await withTaskGroup(of: (Int, Result<ReceivedMessage, any Error>).self) { group in
            for (shard, req) in requests {
                let metadata: Metadata = idempotent ? [(key: ShardMetadata.requestID, value: nextRequestID())] : []
                group.addTask {
                    do { return (shard, .success(try await self.call(shard: shard, method, metadata: metadata) { req })) } catch { return (shard, .failure(error)) }
                }
            }
            var out: [(shard: Int, result: Result<ReceivedMessage, any Error>)] = []
            for await r in group { out.append((shard: r.0, result: r.1)) }
            return out
        }
    }
}
