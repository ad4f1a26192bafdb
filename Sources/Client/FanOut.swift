import Foundation
import RPC
import Vocabulary
import EmbedPSWire

/// How the client talks to shards: one unary call with the contract's retry rules (`callRaw`, typed `call`),
/// and one fan-out primitive (`fanOutAll`) under every multi-shard call (`callAll`, `callEach`,
/// `callAllRaw`, pulls and pushes).
extension EmbedPSClient {
    /// Whether a failed attempt may be sent again: a shard's own UNAVAILABLE (it carries an ErrorDetail:
    /// frozen, restoring, slot moving, shutting down; or NOT_REPLICATED, which the push's request id makes
    /// safe to resend) is always retried; a transport
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
                // NOT_PRIMARY: a follower or a fenced old primary (nothing applied); the map names the primary.
                let notPrimary = s.errorDetail?.reason == .notPrimary
                if (notPrimary || Self.retryable(s, method, hasRequestID: hasRequestID)) && attempt < options.attempts && Date() < deadline {
                    // After a failover the shard's address changes: learn it from any shard or follower, and
                    // resend at once when the map moved on.
                    if notPrimary || (s.errorDetail == nil && attempt >= 2) {
                        let known = slotMap.version
                        if let now = try? await refreshShardMap(), now > known { attempt += 1; continue }
                    }
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
        let requests = (0..<shardCount).map { ($0, OutgoingMessage(bytes: request($0).encoded())) }
        return try await fanOutAll(requests, method).map { try Self.decode(A.self, try $0.result.get(), shard: $0.shard) }
    }

    /// Sends prepared per-shard requests in parallel and waits for all of them (no call is cancelled because
    /// another failed: a cancelled push might still have been applied). Results in request order.
    /// With `idempotent`, each request carries its own fresh request id (kept across its retries).
    /// `requestIDs` (one per request) replaces the fresh ones.
    func fanOutAll(_ requests: [(Int, OutgoingMessage)], _ method: any RPCMethodDescription,
                   requestIDs: [String]? = nil) async -> [(shard: Int, result: Result<ReceivedMessage, any Error>)] {
        let idempotent = method.retry == .withRequestID
        func metadataFor(_ position: Int) -> Metadata {
            guard idempotent else { return [] }
            return [(key: ShardMetadata.requestID, value: requestIDs?[position] ?? nextRequestID())]
        }
        if requests.count == 1 {
            // One shard: no task group.
            let (shard, req) = requests[0]
            let metadata = metadataFor(0)
            do { return [(shard: shard, result: .success(try await callRaw(shard: shard, method, metadata: metadata) { req }))] }
            catch { return [(shard: shard, result: .failure(error))] }
        }
        let slots = ResultSlots(count: requests.count)
        await withTaskGroup(of: Void.self) { group in
            for (position, (shard, req)) in requests.enumerated() {
                let metadata = metadataFor(position)
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
