import Foundation
import Synchronization
import Client
import RPC
import HTTP
import EmbedPSWire
import Vocabulary
import ServiceSupport

/// Settings of the lookup service.
public struct LookupConfiguration: Sendable {
    /// Rows kept in the cache (0 = no cache).
    public var cacheRows = 1 << 20
    /// Seconds a cached row is served after it was fetched.
    public var cacheTTLSeconds = 1.0
    /// Extra wait before a pull when none is in flight, to gather more requests (0: send at once; requests
    /// arriving while a pull is in flight are batched either way).
    public var batchWindowSeconds = 0.0
    /// Largest number of ids in one request.
    public var maxIdsPerRequest = 65536
    public init() {}
}

/// The result of async work handed to a waiting thread (written before the semaphore signal, read after).
final class ResultBox<T>: @unchecked Sendable { var result: Result<T, any Error>? }

extension ClientError: RPCStatusConvertible {
    /// A shard's own status (with its ErrorDetail) passes through; the client's local failures become
    /// INVALID_ARGUMENT (a bad request) or UNAVAILABLE / UPSTREAM.
    public var rpcStatus: RPCStatus {
        switch self {
        case .shard(_, _, let s): s.trailer(ShardMetadata.errorDetail) == nil ? RPCStatus(s.code, s.message, detail: Wire.ErrorDetail(reason: .upstream)) : s
        case .invalidArgument(let m): RPCStatus(.invalidArgument, .malformed, m)
        case .inconsistentCluster(let m): RPCStatus(.unavailable, .upstream, m)
        case .partialPush(let p): RPCStatus(.unavailable, .upstream, p.description)   // the lookup service never pushes
        }
    }
}

/// The online lookup service: read-only rows and pooled semantic-ID items for inference, over gRPC
/// (`embedps.v1.Lookup`) and HTTP/JSON, from the live shards (or a checkpoint opened read-only) through a
/// bounded TTL cache and a request batcher. Row lookups of a table are answered from the cache when fresh, the rest fetched in one batched
/// pull; pooled lookups go straight to the shards. Thread-safe.
public final class LookupService: Sendable {
    public let configuration: LookupConfiguration
    let client: any RowSource
    public let cache: LookupCache
    let batcher: LookupBatcher
    public let grpcMeter = RequestMeter(), httpMeter = RequestMeter()
    private let dims = Mutex<[String: Int]>([:])
    let requests = Atomic<UInt64>(0), ids = Atomic<UInt64>(0), hits = Atomic<UInt64>(0), misses = Atomic<UInt64>(0), errors = Atomic<UInt64>(0)

    public init(source client: any RowSource, configuration: LookupConfiguration = LookupConfiguration()) {
        self.client = client; self.configuration = configuration
        cache = LookupCache(capacity: configuration.cacheRows, ttlSeconds: configuration.cacheTTLSeconds)
        batcher = LookupBatcher(windowSeconds: configuration.batchWindowSeconds, dim: { try await client.dim(of: $0) },
                                pull: { try await client.pull(table: $0, ids: $1) })
    }

    /// Runs async work from a server thread and waits for it.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let box = ResultBox<T>(), done = DispatchSemaphore(value: 0)
        Task { do { box.result = .success(try await body()) } catch { box.result = .failure(error) }; done.signal() }
        done.wait()
        return try box.result!.get()
    }

    func checkSize(_ n: Int) throws {
        guard n <= configuration.maxIdsPerRequest else {
            throw RPCStatus(.resourceExhausted, .tooLarge, "\(n) ids in one lookup; the limit is \(configuration.maxIdsPerRequest): split the request")
        }
    }

    /// Rows of `ids` (ids.count * dim floats) and the table's dim.
    public func lookup(table: String, ids: [UInt64]) throws -> (dim: Int, values: [Float]) {
        try Names.check(table, as: .table)
        try checkSize(ids.count)
        requests.add(1, ordering: .relaxed); self.ids.add(UInt64(ids.count), ordering: .relaxed)
        let dim = try dimension(of: table)
        var out = [Float](repeating: 0, count: ids.count * dim)
        let missing = out.withUnsafeMutableBufferPointer { cache.lookup(table: table, ids: ids, dim: dim, into: $0.baseAddress!) }
        hits.add(UInt64(ids.count - missing.count), ordering: .relaxed); misses.add(UInt64(missing.count), ordering: .relaxed)
        if !missing.isEmpty {
            let missingIds = missing.map { ids[$0] }
            let rows = try batcher.rows(table: table, ids: missingIds)
            for (j, i) in missing.enumerated() { for k in 0..<dim { out[i * dim + k] = rows[j * dim + k] } }
            rows.withUnsafeBufferPointer { cache.insert(table: table, ids: missingIds, dim: dim, rows: $0.baseAddress!) }
        }
        return (dim, out)
    }

    /// A table's dimension, remembered after the first lookup.
    func dimension(of table: String) throws -> Int {
        if let d = dims.withLock({ $0[table] }) { return d }
        let client = self.client
        let d = try blocking { try await client.dim(of: table) }
        dims.withLock { $0[table] = d }
        return d
    }

    /// Pooled semantic-ID items (items.count * dim floats): the sum of each item's piece rows.
    public func lookupPooled(table: String, items: [UInt64]) throws -> (dim: Int, values: [Float]) {
        try Names.check(table, as: .table)
        try checkSize(items.count)
        requests.add(1, ordering: .relaxed); ids.add(UInt64(items.count), ordering: .relaxed)
        let client = self.client
        return try blocking { (try await client.dim(of: table), try await client.pullPooled(table: table, items: items)) }
    }

    /// Registers Lookup, LookupPooled and the health check (every failed status carries an ErrorDetail:
    /// configure the server with `ShardService`-style `decorateStatus`, see `LookupService.configure`).
    public func register(on server: Server, policy: AccessPolicy = AccessPolicy()) {
        let meter = grpcMeter
        let r = Registrar(server: server, policy: policy, gate: nil)
        func serve(_ method: RPCMethod<Wire.PullRequest, Wire.PullResponse>, _ fetch: @escaping @Sendable (String, [UInt64]) throws -> (dim: Int, values: [Float])) {
            r.handleRaw(method) { [self] _, message in
                let start = RequestMeter.now()
                do {
                    let (table, ids) = try message.withUnsafeBytes { bytes in
                        try RowMessageDecoder.withPullRequest(bytes) { ($0.table, Array($0.ids)) }
                    }
                    let (dim, values) = try fetch(table, ids)
                    let out = OutgoingMessage(length: RowMessageEncoder.pullResponseSize(count: ids.count, dim: dim)) { buffer in
                        let area = RowMessageEncoder.writePullResponse(into: buffer, count: ids.count, dim: dim)
                        values.withUnsafeBufferPointer { area.update(from: $0.baseAddress!, count: values.count) }
                    }
                    meter.record(rows: ids.count, seconds: RequestMeter.now() - start)
                    return out
                } catch {
                    errors.add(1, ordering: .relaxed)
                    throw error
                }
            }
        }
        serve(LookupRPC.lookup) { [self] in try lookup(table: $0, ids: $1) }
        serve(LookupRPC.lookupPooled) { [self] in try lookupPooled(table: $0, items: $1) }
        r.handle(HealthRPC.check) { _, req in
            guard req.service.isEmpty || req.service == "embedps.v1.Lookup" else {
                throw RPCStatus(.notFound, .unknownService, "unknown service '\(req.service.prefix(128))': this server serves '' and 'embedps.v1.Lookup'")
            }
            return Wire.HealthCheckResponse(status: .serving)
        }
        r.finish(LookupRPC.all + HealthRPC.all)
    }

    /// Server settings of the lookup service: every failed status carries an ErrorDetail.
    public static func configure(_ config: inout ServerConfiguration) {
        config.decorateStatus = { $0.withDefaultDetail }
    }

    /// HTTP: `GET /v1/lookup?table=T&ids=1,2,3`, `GET /v1/lookup_pooled?table=T&items=...` (JSON
    /// `{"table", "dim", "rows": [[...], ...]}`), `/metrics`, `/healthz`.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        switch request.path {
        case "/metrics": return HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: metricsText())
        case "/healthz": return HTTPResponse(body: "ok\n")
        case "/v1/lookup", "/v1/lookup_pooled":
            let start = RequestMeter.now()
            let pooled = request.path == "/v1/lookup_pooled"
            guard let table = request.query["table"], !table.isEmpty else { return jsonError(400, "missing ?table=NAME") }
            let list = request.query[pooled ? "items" : "ids"] ?? ""
            let parsed = list.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
                return jsonError(400, "?\(pooled ? "items" : "ids")= must be a comma-separated list of unsigned 64-bit ids")
            }
            let ids = parsed.compactMap { $0 }
            do {
                let (dim, values) = pooled ? try lookupPooled(table: table, items: ids) : try lookup(table: table, ids: ids)
                var body = "{\"table\":\(jsonString(table)),\"dim\":\(dim),\"rows\":["
                for i in 0..<ids.count {
                    if i > 0 { body += "," }
                    body += "[" + (0..<dim).map { "\(values[i * dim + $0])" }.joined(separator: ",") + "]"
                }
                body += "]}\n"
                httpMeter.record(rows: ids.count, seconds: RequestMeter.now() - start)
                return HTTPResponse(contentType: "application/json", body: body)
            } catch {
                errors.add(1, ordering: .relaxed)
                let status = (error as? RPCStatusConvertible)?.rpcStatus
                let code: Int = switch status?.code {
                case .notFound: 404
                case .invalidArgument, .failedPrecondition: 400
                case .resourceExhausted: 413
                case .unauthenticated: 401
                default: 503
                }
                return jsonError(code, status?.message ?? "\(error)")
            }
        default:
            return jsonError(404, "not found: \(request.path) (try /v1/lookup?table=T&ids=1,2, /v1/lookup_pooled, /metrics, /healthz)")
        }
    }

    func jsonString(_ s: String) -> String {
        let data = (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }
    func jsonError(_ status: Int, _ message: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: "{\"error\":\(jsonString(message))}\n")
    }

    /// Prometheus text: requests, ids, cache hits/misses/size, batching, errors, rates and latency per protocol.
    public func metricsText() -> String {
        var m = MetricsText()
        m.add("embedps_lookup_requests_total", "Lookup requests served (gRPC and HTTP)", .counter, Double(requests.load(ordering: .relaxed)))
        m.add("embedps_lookup_ids_total", "Ids looked up", .counter, Double(ids.load(ordering: .relaxed)))
        m.add("embedps_lookup_cache_hits_total", "Row lookups answered from the cache", .counter, Double(hits.load(ordering: .relaxed)))
        m.add("embedps_lookup_cache_misses_total", "Row lookups fetched from the shards", .counter, Double(misses.load(ordering: .relaxed)))
        m.add("embedps_lookup_cache_rows", "Rows in the cache", .gauge, Double(cache.count))
        m.add("embedps_lookup_backend_pulls_total", "Batched pulls sent to the shards", .counter, Double(batcher.backendPulls))
        m.add("embedps_lookup_batched_requests_total", "Requests served by those pulls", .counter, Double(batcher.batchedRequests))
        m.add("embedps_lookup_errors_total", "Lookups that failed", .counter, Double(errors.load(ordering: .relaxed)))
        for (proto, meter) in [("grpc", grpcMeter), ("http", httpMeter)] {
            let s = meter.summary()
            m.add("embedps_lookup_requests_per_second", "Requests per second over the last 10 s", .gauge, labels: [("protocol", proto)], s.requestsPerSecond)
            m.add("embedps_lookup_latency_p50_seconds", "Median latency of recent requests", .gauge, labels: [("protocol", proto)], s.p50Ms / 1000)
            m.add("embedps_lookup_latency_p99_seconds", "99th percentile latency of recent requests", .gauge, labels: [("protocol", proto)], s.p99Ms / 1000)
        }
        m.add("embedps_lookup_uptime_seconds", "Seconds since start", .gauge, Date().timeIntervalSince(grpcMeter.started))
        return m.text
    }
}
