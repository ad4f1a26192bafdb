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

    /// Sends prepared per-shard requests in parallel and waits for all of them (no call is cancelled because
    /// another failed: a cancelled push might still have been applied). Results in request order.
    /// With `idempotent`, each request carries its own fresh request id (kept across its retries).
    func fanOutAll(_ requests: [(Int, OutgoingMessage)], _ method: any RPCMethodDescription) async -> [(shard: Int, result: Result<ReceivedMessage, any Error>)] {
        let idempotent = method.retry == .withRequestID
        if requests.count == 1 {
            // One shard: no task group.
            let (shard, req) = requests[0]
            let metadata: Metadata = idempotent ? [(key: ShardMetadata.requestID, value: nextRequestID())] : []
            do { return [(shard: shard, result: .success(try await callRaw(shard: shard, method, metadata: metadata) { req }))] }
            catch { return [(shard: shard, result: .failure(error))] }
        }
        let slots = ResultSlots(count: requests.count)
        await withTaskGroup(of: Void.self) { group in
            for (position, (shard, req)) in requests.enumerated() {
                let metadata: Metadata = idempotent ? [(key: ShardMetadata.requestID, value: nextRequestID())] : []
                group.addTask {
                    do { slots.set(position, .success(try await self.callRaw(shard: shard, method, metadata: metadata) { req })) }
                    catch { slots.set(position, .failure(error)) }
                }
            }
            await group.waitForAll()
        }
        return requests.indices.map { (shard: requests[$0].0, result: slots.get($0)) }
    }
}

/// One result per request of a fan-out, written by the child tasks. Thread-safe (one lock).
final class ResultSlots: @unchecked Sendable {
    private var items: [Result<ReceivedMessage, any Error>?]
    private let lock = NSLock()
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<ReceivedMessage, any Error>) { lock.withLock { items[i] = r } }
    func get(_ i: Int) -> Result<ReceivedMessage, any Error> {
        lock.withLock { items[i] } ?? .failure(ClientError.inconsistentCluster("a shard call of a fan-out did not finish"))
    }
}
