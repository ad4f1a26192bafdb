import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// The control-plane client: table management, status, checkpoints (flush, compact, cluster checkpoints),
/// resharding, export / import, semantic item registration, and the DNIS and dynamic-sparsity controls.
/// It shares connections and the shard map with an `EmbedPSClient` (`client.admin`, or `init(sharing:)`),
/// or opens its own (`init(specPath:)`). Its calls need an admin-scope token on shards started with one.
/// Thread-safe, like the client it wraps.
public struct EmbedPSAdmin: Sendable {
    /// The connection (and data-plane client) this admin client calls through.
    public let client: EmbedPSClient

    public init(sharing client: EmbedPSClient) { self.client = client }
    public init(spec: ClusterSpec, options: ClientOptions = ClientOptions()) throws { client = try EmbedPSClient(spec: spec, options: options) }
    public init(specPath: String, options: ClientOptions = ClientOptions()) throws { client = try EmbedPSClient(specPath: specPath, options: options) }

    /// The cluster spec calls are routed by.
    public var spec: ClusterSpec { client.spec }
    public var slotMap: SlotMap { client.slotMap }
    public var shardCount: Int { client.shardCount }
    /// Health of every shard (true: SERVING).
    public func health() async -> [Bool] { await client.health() }
    public func waitUntilHealthy(timeoutSeconds: Double) async throws { try await client.waitUntilHealthy(timeoutSeconds: timeoutSeconds) }
    /// The spec of a table as shard 0 describes it.
    public func tableSpec(_ table: String, shard: Int = 0) async throws -> TableSpec { try await client.tableSpec(table, shard: shard) }
    /// Learns the newest shard map from the shards; returns its version.
    @discardableResult
    public func refreshShardMap() async throws -> UInt64 { try await client.refreshShardMap() }

    // The connection's call primitives, for the admin operations in this module.
    var options: ClientOptions { client.options }
    func call<Q, A>(shard: Int, _ method: RPCMethod<Q, A>, _ request: Q, metadata: Metadata = []) async throws -> A {
        try await client.call(shard: shard, method, request, metadata: metadata)
    }
    func callAll<Q, A>(_ method: RPCMethod<Q, A>, _ request: Q) async throws -> [A] { try await client.callAll(method, request) }
    func callEach<Q, A>(_ method: RPCMethod<Q, A>, _ request: (Int) -> Q) async throws -> [A] { try await client.callEach(method, request) }
    func callAllRaw(_ method: any RPCMethodDescription, _ request: [UInt8]) async throws -> [ReceivedMessage] { try await client.callAllRaw(method, request) }
    func fanOutAll(_ requests: [(Int, OutgoingMessage)], _ method: any RPCMethodDescription) async -> [(shard: Int, result: Result<ReceivedMessage, any Error>)] {
        await client.fanOutAll(requests, method)
    }
    func route(_ table: String) async throws -> TableRoute { try await client.route(table) }
    func sendGradientRows<A>(table: String, ids: [UInt64], gradients: FloatBuffer, method: RPCMethod<Wire.PushRequest, A>) async throws -> [(Int, ReceivedMessage)] {
        try await client.sendGradientRows(table: table, ids: ids, gradients: gradients, method: method)
    }
    func forgetRoutes() { client.forgetRoutes() }
    static func decode<A: WireMessage>(_ type: A.Type, _ m: ReceivedMessage, shard: Int) throws -> A { try EmbedPSClient.decode(type, m, shard: shard) }
}

extension EmbedPSAdmin {
    /// Creates the table on every shard (idempotent for an identical spec).
    public func createTable(_ spec: TableSpec) async throws {
        let s: TableSpec
        do { s = try spec.validated() } catch { throw ClientError.invalidArgument(error.description) }
        _ = try await callAll(ShardRPC.createTable, Wire.CreateTableRequest(spec: s.wire))
        client.rememberRoute(s)
    }

    /// Drops the table on every shard; returns true when any shard had it.
    @discardableResult
    public func dropTable(_ name: String) async throws -> Bool {
        let answers = try await callAll(ShardRPC.dropTable, Wire.DropTableRequest(table: name))
        client.forgetRoute(name)
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

    /// Runs an eviction pass now on every shard, for one table or (empty) every table with an eviction policy;
    /// returns the rows evicted and the rows left, summed over shards.
    @discardableResult
    public func evict(table: String = "") async throws -> (evicted: UInt64, rowsAfter: UInt64) {
        let answers = try await callAll(ShardRPC.evict, Wire.EvictRequest(table: table))
        return answers.reduce((0, 0)) { acc, r in (acc.0 + r.rowsEvicted, acc.1 + r.rowsAfter) }
    }
}
