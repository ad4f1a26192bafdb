import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// Client options.
public struct ClientOptions: Sendable {
    /// Per-call deadline.
    public var timeoutMs: Int64 = 30_000
    /// A shard call that fails with UNAVAILABLE (shard restarting or not yet up, shard frozen for a
    /// checkpoint, slot being migrated) is retried, backoff doubling from `initialBackoffMs` up to `maxBackoffMs`, until
    /// `attempts` calls were made or `retrySeconds` passed.
    public var attempts: Int = 1000
    public var retrySeconds: Double = 30
    public var initialBackoffMs: Int = 50
    /// Longest wait between two attempts.
    public var maxBackoffMs: Int = 1000
    /// Largest message, bytes.
    public var maxMessageBytes: Int32 = 64 << 20
    /// HTTP/2 connections to each shard, calls spread over them in turn: gRPC works one connection's
    /// transport on one thread at a time, so with several calls in flight a second connection puts a second
    /// core on them (see `RPC.Channel`).
    public var connectionsPerShard: Int = 2
    /// Poller threads per connection.
    public var pollerThreads: Int = 1
    /// Request metadata sent with every call (e.g. auth tokens).
    public var metadata: [(key: String, value: String)] = []
    /// Connect with TLS trusting these PEM root certificates (nil: plaintext).
    public var tlsRootCertificatesPEM: String? = nil
    public init() {}

    /// Sends `authorization: Bearer <token>` with every call.
    public mutating func setToken(_ token: String) {
        metadata.removeAll { $0.key == "authorization" }
        metadata.append((key: "authorization", value: "Bearer \(token)"))
    }

    /// Options from the tools' security flags: a file holding the shared-secret token (first line) and a PEM
    /// file of the CA that signed the shards' certificates. Errors name the file.
    public static func from(tokenFile: String?, tlsCAFile: String?) throws -> ClientOptions {
        var o = ClientOptions()
        if let tokenFile {
            guard let d = FileManager.default.contents(atPath: tokenFile), let t = String(data: d, encoding: .utf8)?
                .split(whereSeparator: \.isNewline).first.map(String.init), !t.isEmpty else {
                throw ClientError.invalidArgument("cannot read a token from '\(tokenFile)' (its first line is the token)")
            }
            o.setToken(t)
        }
        if let tlsCAFile {
            guard let d = FileManager.default.contents(atPath: tlsCAFile), let pem = String(data: d, encoding: .utf8), pem.contains("-----BEGIN") else {
                throw ClientError.invalidArgument("cannot read PEM CA certificates from '\(tlsCAFile)'")
            }
            o.tlsRootCertificatesPEM = pem
        }
        return o
    }
}

/// Routing facts of one table, fetched once from the cluster.
struct TableRoute: Sendable {
    let addressing: RowAddressing
    let dim: Int
}

/// The data-plane client, sized like ps-lite's KVWorker: pull and push of id batches (plus the pooled,
/// compact and DNIS-alpha variants a trainer of those tables needs), health, and the table routes they use.
/// Table management, checkpoints, resharding and the DNIS / dynamic-sparsity controls are on `EmbedPSAdmin`
/// (`client.admin`, sharing this client's connections).
///
/// Pull/push split a batch by owning shard, de-duplicate ids, fan out to shards in parallel, and merge the
/// answers into the caller's order in one contiguous buffer. Calls that fail with UNAVAILABLE are retried
/// with backoff. Thread-safe: any number of concurrent operations may share one client.
public final class EmbedPSClient: @unchecked Sendable {
    public let options: ClientOptions
    /// Spec, slot map and one channel per shard; replaced together when a newer shard map is learnt.
    private var topology: (spec: ClusterSpec, slotMap: SlotMap, channels: [Channel])
    private var retiredChannels: [Channel] = []
    private let lock = NSLock()
    private var routes: [String: TableRoute] = [:]
    /// Request ids of pushes: this client's random 64 bits, then a counter.
    private let clientID = UInt64.random(in: 1...UInt64.max)
    private var requestCounter: UInt64 = 0

    /// A fresh push request id (metadata `x-embedps-request-id`).
    func nextRequestID() -> String {
        let n = lock.withLock { requestCounter += 1; return requestCounter }
        return RequestID(high: clientID, low: n).description
    }

    public init(spec: ClusterSpec, options: ClientOptions = ClientOptions()) throws {
        self.options = options
        topology = (spec, try spec.slotMap(), [])
        topology.channels = spec.shards.map { makeChannel($0.address) }
    }

    func makeChannel(_ address: String) -> Channel {
        var c = ChannelConfiguration(target: address)
        c.maxMessageBytes = options.maxMessageBytes
        c.connections = options.connectionsPerShard
        c.pollerThreads = options.pollerThreads
        c.tlsRootCertificatesPEM = options.tlsRootCertificatesPEM
        return Channel(c)
    }

    /// The cluster spec this client routes by (updated when a newer shard map is learnt).
    public var spec: ClusterSpec { lock.withLock { topology.spec } }
    public var slotMap: SlotMap { lock.withLock { topology.slotMap } }
    func channel(_ shard: Int) -> Channel { lock.withLock { topology.channels[shard] } }

    /// Routes by `newSpec` when its map is newer than the one in use: channels to known addresses are kept,
    /// new shards get one. An address ending in ":0" (a shard's own port-0 listen spec) keeps the known one.
    /// Returns whether the map changed.
    @discardableResult
    func adopt(_ newSpec: ClusterSpec) throws -> Bool {
        let newMap = try newSpec.slotMap()
        return lock.withLock {
            guard newMap.version > topology.slotMap.version else { return false }
            var spec = newSpec
            for i in spec.shards.indices where spec.shards[i].address.hasSuffix(":0") && i < topology.spec.shards.count {
                spec.shards[i].address = topology.spec.shards[i].address
            }
            let old = topology.channels, oldSpec = topology.spec
            let channels = spec.shards.enumerated().map { i, s in
                i < oldSpec.shards.count && oldSpec.shards[i].address == s.address ? old[i] : makeChannel(s.address)
            }
            // Channels no longer used may still carry calls: close them with the client.
            retiredChannels += old.filter { o in !channels.contains { $0 === o } }
            topology = (spec, newMap, channels)
            return true
        }
    }

    public convenience init(specPath: String, options: ClientOptions = ClientOptions()) throws {
        try self.init(spec: try ClusterSpec.load(path: specPath), options: options)
    }

    deinit { (topology.channels + retiredChannels).forEach { $0.close() } }

    public var shardCount: Int { lock.withLock { topology.channels.count } }

    /// The control-plane client over this client's connections and shard map.
    public var admin: EmbedPSAdmin { EmbedPSAdmin(sharing: self) }

    /// Remembers the route of a table just created (so the first pull does not describe it).
    func rememberRoute(_ spec: TableSpec) { lock.withLock { routes[spec.name] = TableRoute(addressing: RowAddressing(spec: spec), dim: spec.dim) } }
    /// Forgets the route of a dropped table.
    func forgetRoute(_ name: String) { lock.withLock { _ = routes.removeValue(forKey: name) } }

    /// Health of every shard: true when it answers SERVING.
    public func health() async -> [Bool] {
        await withTaskGroup(of: (Int, Bool).self) { group in
            let n = shardCount
            for i in 0..<n {
                group.addTask {
                    let ok = try? await self.channel(i).unary(HealthRPC.check.path, OutgoingMessage(bytes: Wire.HealthCheckRequest(service: "").encoded()), timeoutMs: 2000)
                    let status = ok.flatMap { m in try? m.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try Wire.HealthCheckResponse(decoding: b) } }?.status
                    return (i, status == .serving)
                }
            }
            var out = [Bool](repeating: false, count: n)
            for await (i, ok) in group { out[i] = ok }
            return out
        }
    }

    /// Waits until every shard reports SERVING, or throws after `timeoutSeconds`.
    public func waitUntilHealthy(timeoutSeconds: Double) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let h = await health()
            if h.allSatisfy({ $0 }) { return }
            if Date() > deadline {
                let down = h.enumerated().filter { !$0.element }.map { "\($0.offset) (\(spec.shards[$0.offset].address))" }
                throw ClientError.inconsistentCluster("shards not serving after \(Int(timeoutSeconds)) s: \(down.joined(separator: ", "))")
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
    }

    func route(_ table: String) async throws -> TableRoute {
        if let r = lock.withLock({ routes[table] }) { return r }
        let spec = try await tableSpec(table)
        let r = TableRoute(addressing: RowAddressing(spec: spec), dim: spec.dim)
        lock.withLock { routes[table] = r }
        return r
    }

    /// The spec of a table as shard `shard` (0 by default) describes it.
    public func tableSpec(_ table: String, shard: Int = 0) async throws -> TableSpec {
        let stats = try await call(shard: shard, ShardRPC.describeTable, Wire.DescribeTableRequest(table: table)).stats ?? Wire.TableStats()
        do { return try TableSpec(wire: stats.spec ?? Wire.TableSpec()) } catch {
            throw ClientError.inconsistentCluster("shard \(shard) describes table '\(table)' with an invalid spec: \(error)")
        }
    }

    /// Drops cached table routes (after a restore, tables may differ).
    func forgetRoutes() { lock.withLock { routes.removeAll() } }

    /// Dimension of a table.
    public func dim(of table: String) async throws -> Int { try await route(table).dim }
}
