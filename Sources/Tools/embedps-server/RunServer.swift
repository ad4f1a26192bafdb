import Foundation
import CLI
import Engine
import Vocabulary
import RPC
import Server
import ServiceSupport
import HTTP
import Coordination

/// Starts the shard and blocks until SIGINT/SIGTERM, then shuts down gracefully.
nonisolated func runShardServer(_ options: Options) {
    let specPath = options.required("cluster")
    let index = options.int("shard-index", default: -1)
    let spec: ClusterSpec
    let map: SlotMap
    do { spec = try ClusterSpec.load(path: specPath); map = try spec.slotMap() } catch { options.fail("\(error)") }
    guard index >= 0, index < spec.shards.count else {
        options.fail("--shard-index \(index) is not a shard of \(specPath) (it has \(spec.shards.count) shards)")
    }
    guard let durability = Durability(rawValue: options.string("durability", default: "async")) else {
        options.fail("--durability must be sync or async")
    }
    let shard = spec.shards[index]
    var engineConfig = ShardEngineConfiguration(
        dataDirectory: options.string("data-dir") ?? shard.dataDir ?? "data/shard-\(index)", shardIndex: index, slotMap: map)
    engineConfig.durability = durability
    engineConfig.shardMembers = spec.shards
    engineConfig.cacheRowsPerTable = options.int("cache-rows", default: 1 << 20)
    let readThreads = options.int("read-threads", default: engineConfig.readThreads)
    guard readThreads >= 1 else { options.fail("--read-threads must be at least 1") }
    engineConfig.readThreads = readThreads
    let splitThreads = options.int("split-threads", default: engineConfig.splitThreads)
    guard splitThreads >= 1 else { options.fail("--split-threads must be at least 1") }
    engineConfig.splitThreads = splitThreads
    engineConfig.logBeforePin = options.onOff("log-before-pin", default: true)
    let ringMB = options.int("log-ring-mb", default: engineConfig.logRingBytes >> 20)
    guard ringMB >= 1 && ringMB <= 4096 else { options.fail("--log-ring-mb must be between 1 and 4096 (MiB of /dev/shm per table)") }
    engineConfig.logRingBytes = ringMB << 20
    let segmentMB = options.int("log-segment-mb", default: engineConfig.logSegmentBytes >> 20)
    guard segmentMB >= 1 && segmentMB <= 4096 else { options.fail("--log-segment-mb must be between 1 and 4096 (MiB per update-log segment file), got \(segmentMB)") }
    engineConfig.logSegmentBytes = segmentMB << 20
    let checkpointMB = options.int("checkpoint-log-mb", default: 4096)
    guard checkpointMB >= 1 && checkpointMB <= 1 << 20 else { options.fail("--checkpoint-log-mb must be between 1 and 1048576 (MiB of update log between checkpoints), got \(checkpointMB)") }
    engineConfig.checkpointLogBytes = checkpointMB << 20
    engineConfig.checkpointIntervalSeconds = options.double("checkpoint-seconds", default: 60)
    engineConfig.checkpointSnapshots = options.onOff("checkpoint-snapshots", default: true)
    let snapshotMBps = options.int("snapshot-write-mbps", default: engineConfig.snapshotBytesPerSecond >> 20)
    guard snapshotMBps >= 0 && snapshotMBps <= 1 << 20 else { options.fail("--snapshot-write-mbps must be between 0 (unpaced) and 1048576 MiB/s, got \(snapshotMBps)") }
    engineConfig.snapshotBytesPerSecond = snapshotMBps << 20
    if let recycleMB = options.string("log-recycle-mb") {
        guard let mb = Int(recycleMB), mb >= 0, mb <= 1 << 20 else {
            options.fail("--log-recycle-mb must be a whole number of MiB from 0 (delete old segments) to 1048576, got '\(recycleMB)'")
        }
        engineConfig.logRecycleBytes = mb << 20
    }
    let maxBytes = options.int("max-message-mb", default: 64) << 20

    if let restore = options.string("restore-checkpoint") {
        // A fresh shard started from its part of a cluster checkpoint (e.g. copied from another cluster).
        do {
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: engineConfig.dataDirectory)) ?? []
            guard existing.allSatisfy({ $0 == "checkpoints" }) else {
                options.fail("--restore-checkpoint needs an empty --data-dir; \(engineConfig.dataDirectory) holds data (restore a running cluster with embedps-admin checkpoint restore)")
            }
            try ShardEngine.installCheckpoint(from: restore, into: engineConfig.dataDirectory, shardIndex: index)
            printFlush("embedps-server shard \(index): restored checkpoint \(restore) into \(engineConfig.dataDirectory)")
        } catch { options.fail("\(error)") }
    }
    let engine: ShardEngine
    do {
        engine = try ShardEngine(engineConfig)
        // An incremental checkpoint: its full base was installed, its deltas apply now.
        if let restore = options.string("restore-checkpoint") { try engine.applyCheckpointDeltas(of: restore) }
    } catch {
        printError("error: shard \(index) cannot open its data: \(error)")
        exit(1)
    }
    var serverConfig = ServerConfiguration(address: options.string("listen") ?? shard.address)
    ShardService.configure(&serverConfig)
    serverConfig.threads = options.int("threads", default: 2)
    serverConfig.maxMessageBytes = Int32(clamping: maxBytes)
    var policy = AccessPolicy()
    if let tokenFile = options.string("auth-token-file") {
        guard let d = FileManager.default.contents(atPath: tokenFile),
              let token = String(data: d, encoding: .utf8)?.split(whereSeparator: \.isNewline).first.map(String.init), token.count >= 16 else {
            options.fail("--auth-token-file \(tokenFile): cannot read a token of at least 16 characters from its first line")
        }
        policy.token = token
        guard let scope = AccessPolicy.Scope(rawValue: options.string("auth-scope", default: "admin")) else { options.fail("--auth-scope must be admin or all") }
        policy.scope = scope
    }
    if let cert = options.string("tls-cert") {
        do { serverConfig.tls = try TLSIdentity(certificatePath: cert, keyPath: options.required("tls-key")) } catch { options.fail("\(error)") }
    }
    let server = Server(serverConfig)
    engine.startCheckpointer()
    let host = ShardHost(engine: engine, configuration: engineConfig)
    let ackReplicas = options.int("ack-replicas", default: 0)
    guard ackReplicas == 0 || ackReplicas == 1 else { options.fail("--ack-replicas must be 0 or 1") }
    let acks = ReplicaAcks(required: ackReplicas, timeoutSeconds: Double(options.int("ack-timeout-ms", default: 5000)) / 1000)
    let service = ShardService(host: host, maxMessageBytes: maxBytes, policy: policy, acks: acks)
    var follower: Follower? = nil
    if let primary = options.string("follow") {
        if engine.isPromotedPrimary {
            printFlush("embedps-server shard \(index): ignoring --follow \(primary): this data directory was promoted to primary at epoch \(engine.primaryEpoch)")
        } else {
            // A read-only copy of the shard at `primary` (same --cluster and --shard-index, its own --listen
            // and --data-dir); writes are refused from the first call on.
            do { try engine.becomeFollower() } catch { options.fail("--follow: \(error)") }
            let f = Follower(primary: primary, host: host, token: policy.token, log: { printFlush("embedps-server shard \(index) (follower): \($0)") })
            host.follower = f
            follower = f
        }
    }
    // An old primary restarting after a failover must learn the newer map (and be fenced) before serving.
    do {
        let learnt = try host.adoptNewestPeerMap(own: serverConfig.address, token: policy.token)
        if learnt > map.version { printFlush("embedps-server shard \(index): adopted shard map version \(learnt) from a peer") }
        if follower == nil, let p = try host.withEngine({ $0.fencedBy }) {
            printFlush("embedps-server shard \(index): FENCED: the shard map names \(p) as this shard's primary at a newer epoch; refusing writes (NOT_PRIMARY). To serve again, start this server as a follower of \(p) on an empty --data-dir")
        }
    } catch { options.fail("\(error)") }
    service.register(on: server)
    do { try server.start() } catch {
        printError("error: shard \(index): \(error)")
        exit(1)
    }
    let listenHost = serverConfig.address.split(separator: ":").dropLast().joined(separator: ":")
    printFlush("embedps-server shard \(index)/\(spec.shards.count) listening on \(listenHost):\(server.port)\(serverConfig.tls == nil ? "" : " (TLS)")" +
          (policy.token == nil ? "" : " token required on \(policy.scope == .all ? "all" : "admin") calls") +
          " (data \(engineConfig.dataDirectory), durability \(durability.rawValue), \(map.slotCount(of: index)) slots, map version \(map.version), tables: \(engine.tableNames().joined(separator: ",")))")
    if let follower {
        follower.start()
        printFlush("embedps-server shard \(index): following \(follower.primary) (read-only; writes go to the primary)")
    }
    var leaseKeeper: LeaseKeeper? = nil
    if let url = options.string("etcd") {
        // Automatic failover: this server's primary lease in etcd (see FAILOVER AND EPOCHS in the proto).
        do {
            let etcd = try EtcdClient(endpoint: url)
            let advertised = options.string("advertise") ?? "\(listenHost):\(server.port)"
            let keeper = LeaseKeeper(etcd: etcd, prefix: options.string("etcd-prefix", default: "/embedps"), host: host, ownAddress: advertised,
                                     ttl: options.int("lease-ttl-seconds", default: 3), token: policy.token,
                                     log: { printFlush("embedps-server shard \(index): \($0)") })
            keeper.start()
            service.leaseKeeper = keeper
            leaseKeeper = keeper
        } catch { options.fail("--etcd: \(error)") }
    }
    var metrics: HTTPServer? = nil
    if let mp = options.string("metrics-port") {
        guard let port = Int(mp) else { options.fail("--metrics-port must be a port number") }
        do { metrics = try service.startMetricsEndpoint(port: port) } catch {
            printError("error: shard \(index): \(error)")
            exit(1)
        }
        printFlush("embedps-server shard \(index): Prometheus metrics on http://0.0.0.0:\(metrics!.port)/metrics")
        if let f = options.string("metrics-port-file") { try? "\(metrics!.port)\n".write(toFile: f, atomically: true, encoding: .utf8) }
    }
    if let portFile = options.string("port-file") {
        try? "\(server.port)\n".write(toFile: portFile, atomically: true, encoding: .utf8)
    }

    let stop = DispatchSemaphore(value: 0)
    signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN)
    let queue = DispatchQueue(label: "signals")
    let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
        let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        s.setEventHandler { stop.signal() }
        s.resume()
        return s
    }
    stop.wait()
    printFlush("embedps-server shard \(index): shutting down (draining in-flight calls)")
    leaseKeeper?.stop()
    host.follower?.stop()
    server.shutdown(graceSeconds: 10)
    metrics?.stop()
    host.close()
    withExtendedLifetime(sources) {}
    printFlush("embedps-server shard \(index): stopped")
}
