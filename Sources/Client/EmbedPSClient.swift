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
    /// Poller threads per shard channel.
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

/// The cluster-aware client: the whole parameter-server API a trainer needs (ps-lite style: pull and push
/// of id batches), plus table management.
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

    // MARK: calls

    /// Whether a failed attempt may be sent again: a shard's own UNAVAILABLE (it carries an ErrorDetail:
    /// frozen, restoring, slot moving, shutting down) changed nothing and is always retried; a transport
    /// UNAVAILABLE (no detail: the call may or may not have run) only for methods the contract marks
    /// RETRY_SAFE, or RETRY_WITH_REQUEST_ID when the attempt carries its request id.
    static func retryable(_ s: RPCStatus, _ method: any RPCMethodDescription, hasRequestID: Bool) -> Bool {
        guard s.code == .unavailable else { return false }
        if s.errorDetail != nil { return true }
        switch method.retry {
        case .safe: return true
        case .withRequestID: return hasRequestID
        case .never: return false
        }
    }

    /// One unary call to one shard with the contract's retry rules (backoff doubling from
    /// `initialBackoffMs` to 1 s, for `retrySeconds` at most), sending the same `metadata` on every attempt
    /// (e.g. a push's request id).
    func callRaw(shard: Int, _ method: any RPCMethodDescription, metadata extra: Metadata = [], _ makeRequest: () throws -> OutgoingMessage) async throws -> ReceivedMessage {
        let metadata = extra.isEmpty ? options.metadata : options.metadata + extra
        let hasRequestID = extra.contains { $0.key == ShardMetadata.requestID }
        var backoff = options.initialBackoffMs
        var attempt = 1
        let deadline = Date().addingTimeInterval(options.retrySeconds)
        while true {
            do {
                return try await channel(shard).unary(method.path, try makeRequest(), metadata: metadata, timeoutMs: options.timeoutMs)
            } catch let s as RPCStatus {
                if Self.retryable(s, method, hasRequestID: hasRequestID) && attempt < options.attempts && Date() < deadline {
                    try await Task.sleep(nanoseconds: UInt64(backoff) * 1_000_000)
                    backoff = min(backoff * 2, options.maxBackoffMs); attempt += 1
                    continue
                }
                throw ClientError.shard(index: shard, address: spec.shards[shard].address, status: s)
            }
        }
    }

    /// A typed call: encodes `request`, decodes the answer strictly.
    func call<Q, A>(shard: Int, _ method: RPCMethod<Q, A>, _ request: Q, metadata: Metadata = []) async throws -> A {
        let bytes = request.encoded()
        let m = try await callRaw(shard: shard, method, metadata: metadata) { OutgoingMessage(bytes: bytes) }
        return try Self.decode(A.self, m, shard: shard)
    }

    static func decode<A: WireMessage>(_ type: A.Type, _ m: ReceivedMessage, shard: Int) throws -> A {
        do { return try m.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try A(decoding: b) } } catch {
            throw ClientError.inconsistentCluster("shard \(shard) answered a malformed \(A.protoName): \(error)")
        }
    }

    /// The same raw request to every shard in parallel (a request id per shard part when the method takes
    /// one); answers in shard order, the first failure thrown after all finished.
    func callAllRaw(_ method: any RPCMethodDescription, _ request: [UInt8]) async throws -> [ReceivedMessage] {
        let message = OutgoingMessage(bytes: request)
        return try await fanOutAll((0..<shardCount).map { ($0, message) }, method).map { try $0.result.get() }
    }

    /// The same request to every shard in parallel; answers in shard order.
    func callAll<Q, A>(_ method: RPCMethod<Q, A>, _ request: Q) async throws -> [A] {
        try await callEach(method) { _ in request }
    }

    /// One call per shard in parallel, each with its own request; answers in shard order. Waits for every
    /// call, then throws the first failure (no call is cancelled because another failed).
    func callEach<Q, A>(_ method: RPCMethod<Q, A>, _ request: (Int) -> Q) async throws -> [A] {
        let n = shardCount
        let slots = AnswerSlots<A>(count: n)
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<n {
                let body = request(i)
                group.addTask {
                    do { slots.set(i, .success(try await self.call(shard: i, method, body))) } catch { slots.set(i, .failure(error)) }
                }
            }
            await group.waitForAll()
        }
        return try (0..<n).map { try slots.get($0).get() }
    }

    // MARK: tables

    /// Creates the table on every shard (idempotent for an identical spec).
    public func createTable(_ spec: TableSpec) async throws {
        let s: TableSpec
        do { s = try spec.validated() } catch { throw ClientError.invalidArgument(error.description) }
        _ = try await callAll(ShardRPC.createTable, Wire.CreateTableRequest(spec: s.wire))
        lock.withLock { routes[s.name] = TableRoute(addressing: RowAddressing(spec: s), dim: s.dim) }
    }

    /// Drops the table on every shard; returns true when any shard had it.
    @discardableResult
    public func dropTable(_ name: String) async throws -> Bool {
        let answers = try await callAll(ShardRPC.dropTable, Wire.DropTableRequest(table: name))
        lock.withLock { _ = routes.removeValue(forKey: name) }
        return answers.contains { $0.dropped }
    }

    /// Per-shard statistics of a table, in shard order.
    public func describeTable(_ name: String) async throws -> [Wire.TableStats] {
        try await callAll(ShardRPC.describeTable, Wire.DescribeTableRequest(table: name)).map { $0.stats ?? Wire.TableStats() }
    }

    /// Table names (from shard 0; every shard holds the same tables).
    public func listTables() async throws -> [String] {
        try await call(shard: 0, ShardRPC.listTables, Wire.ListTablesRequest()).tables
    }

    /// Status of every shard, in shard order.
    public func shardStatus() async throws -> [Wire.ShardStatusResponse] {
        try await callAll(ShardRPC.shardStatus, Wire.ShardStatusRequest())
    }

    /// Checkpoints a table (or all tables when `table` is empty) on every shard: dirty rows are written to
    /// RocksDB and update logs trimmed.
    public func flush(table: String = "") async throws {
        _ = try await callAll(ShardRPC.flush, Wire.FlushRequest(table: table))
    }

    /// Checkpoints and compacts a table (all tables when empty) on every shard; returns (bytes before, after)
    /// summed over shards.
    public func compact(table: String = "") async throws -> (before: UInt64, after: UInt64) {
        let answers = try await callAll(ShardRPC.compact, Wire.CompactRequest(table: table))
        return answers.reduce((0, 0)) { acc, r in (acc.0 + r.bytesBefore, acc.1 + r.bytesAfter) }
    }

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

    /// The spec of a table as shard 0 describes it.
    public func tableSpec(_ table: String) async throws -> TableSpec {
        let stats = try await call(shard: 0, ShardRPC.describeTable, Wire.DescribeTableRequest(table: table)).stats ?? Wire.TableStats()
        do { return try TableSpec(wire: stats.spec ?? Wire.TableSpec()) } catch {
            throw ClientError.inconsistentCluster("shard 0 describes table '\(table)' with an invalid spec: \(error)")
        }
    }

    /// Drops cached table routes (after a restore, tables may differ).
    func forgetRoutes() { lock.withLock { routes.removeAll() } }

    /// Dimension of a table.
    public func dim(of table: String) async throws -> Int { try await route(table).dim }
}

/// One answer per shard of a `callEach`, written by the child tasks. Thread-safe (one lock).
final class AnswerSlots<A: Sendable>: @unchecked Sendable {
    private var items: [Result<A, any Error>?]
    private let lock = NSLock()
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<A, any Error>) { lock.withLock { items[i] = r } }
    func get(_ i: Int) -> Result<A, any Error> {
        lock.withLock { items[i] } ?? .failure(ClientError.inconsistentCluster("a shard call of a fan-out did not finish"))
    }
}
