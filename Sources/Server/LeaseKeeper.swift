import Foundation
import Engine
import RPC
import EmbedPSWire
import Vocabulary
import Coordination

/// Automatic failover through etcd (`embedps-server --etcd URL`; see FAILOVER AND EPOCHS in the proto).
/// Key `PREFIX/shard/I/primary` holds {"address", "epoch"} of shard I's primary under an etcd lease of
/// `ttl` seconds. A primary takes the key at start (or over, when it names this address or an older epoch),
/// renews the lease every ttl/3 seconds, and refuses writes (NOT_PRIMARY) while it cannot show it holds it:
/// another server holds the key, or no renewal succeeded for a whole TTL (etcd or the network is gone, so
/// a follower may have taken over). A primary fenced by a newer epoch in its map stops renewing. A follower watches the key; when it is gone (the primary's lease
/// expired), it creates it under its own lease (an etcd transaction: one winner), promotes itself at the
/// next epoch and sends the new map to every shard it knows. Consensus comes from etcd; the epoch in the
/// shard map fences an old primary that comes back. One thread; `stop` waits for it.
public final class LeaseKeeper: @unchecked Sendable {
    let etcd: EtcdClient
    let key: String
    let host: ShardHost
    let ownAddress: String
    let ttl: Int
    let token: String?
    let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private var stopped = false
    private var lease: Int64? = nil
    private var lastRenewal = Date.distantPast
    private var stateText = "starting"
    private let done = DispatchSemaphore(value: 0)

    public init(etcd: EtcdClient, prefix: String, host: ShardHost, ownAddress: String, ttl: Int, token: String?, log: @escaping @Sendable (String) -> Void) {
        self.etcd = etcd; self.host = host; self.ownAddress = ownAddress; self.ttl = max(1, ttl); self.token = token; self.log = log
        key = "\(prefix)/shard/\(host.configuration.shardIndex)/primary"
    }

    /// What this server's lease loop last saw (for status).
    public var state: String { lock.withLock { stateText } }
    private var isStopped: Bool { lock.withLock { stopped } }
    private func set(_ s: String) {
        let changed: Bool = lock.withLock { defer { stateText = s }; return stateText != s }
        if changed { log("lease: \(s)") }
    }

    /// One round now (a primary starts serving with its lease taken or its writes refused), then the loop.
    public func start() {
        round()
        let t = Thread { [self] in
            defer { done.signal() }
            while !isStopped {
                Thread.sleep(forTimeInterval: max(0.2, Double(ttl) / 3))
                if !isStopped { round() }
            }
        }
        t.name = "lease"
        t.start()
    }

    public func stop() {
        lock.withLock { stopped = true }
        done.wait()
    }

    func round() {
        if host.follower != nil { watchAsFollower() } else { holdAsPrimary() }
    }

    private func value(epoch: UInt64) -> String { "{\"address\":\"\(ownAddress)\",\"epoch\":\(epoch)}" }
    private static func holder(_ v: String) -> (address: String, epoch: UInt64)? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(v.utf8)) as? [String: Any], let a = o["address"] as? String else { return nil }
        return (a, (o["epoch"] as? NSNumber)?.uint64Value ?? 0)
    }

    private func holdAsPrimary() {
        do {
            let (epoch, fencedBy) = try host.withEngine { ($0.primaryEpoch, $0.fencedBy) }
            if let fencedBy {
                // A failover by command replaced this primary: stop renewing; the new primary takes the key over
                // by its higher epoch (the key never goes missing, so no other follower campaigns).
                lock.withLock { lease = nil }
                set("fenced: \(fencedBy) is the primary at a newer epoch; lease left to expire")
                return
            }
            if let l = lock.withLock({ lease }) {
                // Renewed, and the key still names this server (a newer primary may have taken it over).
                if try etcd.keepAlive(l) > 0, let v = try etcd.get(key), v.value == value(epoch: epoch) {
                    lock.withLock { lastRenewal = Date() }
                    try host.setLeaseRefusal(nil)
                    set("primary, holding \(key) at epoch \(epoch)")
                    return
                }
                lock.withLock { lease = nil }
            }
            // (Re)take the key: absent, naming this address already (a restart before its lease ran out), or
            // naming an older epoch (a primary this one replaced by command).
            let l = try etcd.grantLease(ttl: ttl)
            let current = try etcd.get(key)
            let holder = current.flatMap { Self.holder($0.value) }
            let replaceable = holder.map { $0.address == ownAddress || $0.epoch < epoch } ?? false
            let took = try etcd.put(key, value(epoch: epoch), lease: l, ifAbsent: current == nil, orIfValue: replaceable ? current?.value : nil)
            if took {
                lock.withLock { lease = l; lastRenewal = Date() }
                try host.setLeaseRefusal(nil)
                set("primary, took \(key) at epoch \(epoch)")
            } else {
                try? etcd.revoke(l)
                let other = current.flatMap { Self.holder($0.value) }?.address ?? ""
                try host.setLeaseRefusal(other)
                set("not primary: \(key) is held by \(other.isEmpty ? "another server" : other); refusing writes")
            }
        } catch {
            // No renewal for a whole TTL: a follower may hold the shard now. Refuse writes until etcd answers.
            let stale = lock.withLock { Date().timeIntervalSince(lastRenewal) > Double(ttl) }
            if stale { try? host.setLeaseRefusal("") }
            set("etcd unreachable (\(error))\(stale ? "; lease may have expired: refusing writes" : "")")
        }
    }

    private func watchAsFollower() {
        do {
            if try etcd.get(key) != nil { set("following; \(key) is held"); return }
            // The primary's lease expired: campaign.
            try host.adoptNewestPeerMap(own: ownAddress, token: token)
            let spec = try host.withEngine { $0.shardMapSpec() }
            let i = host.configuration.shardIndex
            guard i < spec.shards.count else { return }
            let epoch = (spec.shards[i].epoch ?? 0) + 1
            let l = try etcd.grantLease(ttl: ttl)
            guard try etcd.put(key, value(epoch: epoch), lease: l, ifAbsent: true) else {
                try? etcd.revoke(l)
                set("following; another server took \(key) first")
                return
            }
            lock.withLock { lease = l; lastRenewal = Date() }
            let old = spec.shards[i]
            var members = spec.shards
            members[i] = ClusterSpec.Shard(address: ownAddress, followers: (old.followers ?? []).filter { $0 != ownAddress }, epoch: epoch)
            let map = try host.withEngine { $0.shardMap }
            let next = ClusterSpec(members: members, map: try SlotMap(version: map.version + 1, shardCount: map.shardCount, owners: map.owners))
            try host.promote(epoch: epoch, spec: next)
            set("promoted: \(old.address)'s lease expired; primary at epoch \(epoch), map version \(next.version)")
            publish(next, except: ownAddress)
        } catch {
            set("follower: etcd or the promotion failed (\(error)); retrying")
        }
    }

    /// Sends `spec` to every shard and follower it names (best effort, short deadlines).
    private func publish(_ spec: ClusterSpec, except own: String) {
        let json = (try? spec.encoded()).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let metadata: Metadata = token.map { [(key: "authorization", value: "Bearer \($0)")] } ?? []
        for address in Set(spec.allAddresses).subtracting([own]).sorted() where !address.hasSuffix(":0") {
            let channel = Channel(ChannelConfiguration(target: address))
            _ = try? channel.unarySync(ShardRPC.setShardMap.path, OutgoingMessage(bytes: Wire.ShardMapRequest(specJson: json).encoded()), metadata: metadata, timeoutMs: 2000)
            channel.close()
        }
    }
}
