import Foundation
import Engine
import RPC
import EmbedPSWire
import Vocabulary

extension ShardHost {
    /// Before serving: asks every shard and follower of the map in force (but `own` address) for its map
    /// and adopts the newest, then refuses writes if that map fences this shard (FAILOVER AND EPOCHS in the
    /// proto: an old primary coming back after a failover must not take a write). Peers that do not answer
    /// within `timeoutMs` are skipped, and so is a map without this shard index (a shard joining in a resharding). Returns the newest version learnt from a peer (0: none answered).
    @discardableResult
    public func adoptNewestPeerMap(own: String, token: String?, timeoutMs: Int64 = 2000) throws -> UInt64 {
        let peers = Array(Set(try withEngine { $0.shardMapSpec() }.allAddresses.filter { $0 != own && !$0.hasSuffix(":0") })).sorted()
        let metadata: Metadata = token.map { [(key: "authorization", value: "Bearer \($0)")] } ?? []
        let found = PeerMapBox()
        DispatchQueue.concurrentPerform(iterations: peers.count) { i in
            let channel = Channel(ChannelConfiguration(target: peers[i]))
            defer { channel.close() }
            guard let reply = try? channel.unarySync(ShardRPC.getShardMap.path, OutgoingMessage(bytes: Wire.ListTablesRequest().encoded()), metadata: metadata, timeoutMs: timeoutMs),
                  let map = try? reply.withUnsafeBytes({ (b: UnsafeRawBufferPointer) throws(WireError) in try Wire.ShardMapResponse(decoding: b) }),
                  let spec = try? JSONDecoder().decode(ClusterSpec.self, from: Data(map.specJson.utf8)) else { return }
            found.offer(spec)
        }
        // A shard joining in a resharding is not in the peers' map yet: only a map that has this shard counts.
        if let newest = found.newest, newest.shards.count > configuration.shardIndex { try withEngine { _ = try $0.adoptShardMap(newest) } }
        try refreshWriteRole()
        return found.newest?.version ?? 0
    }
}

/// The newest map offered by concurrent peer queries. Thread-safe.
private final class PeerMapBox: @unchecked Sendable {
    private let lock = NSLock()
    private var best: ClusterSpec? = nil
    func offer(_ s: ClusterSpec) { lock.withLock { if s.version > (best?.version ?? 0) { best = s } } }
    var newest: ClusterSpec? { lock.withLock { best } }
}
