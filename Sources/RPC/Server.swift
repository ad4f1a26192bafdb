import CGRPC
import Foundation

/// What a handler knows about the call it serves.
public struct ServerCallContext: Sendable {
    /// Full method path, e.g. "/embedps.v1.Shard/Pull".
    public let method: String
    /// Request metadata sent by the client (e.g. auth tokens).
    public let metadata: Metadata
    /// Milliseconds until the client's deadline, or nil when it set none.
    public let millisecondsRemaining: Int64?
}

/// A unary handler: gets the request bytes, returns the response or throws (an `RPCStatusConvertible`
/// maps to its status; any other error becomes INTERNAL). Called on a completion-queue thread; must be thread-safe.
public typealias UnaryHandler = @Sendable (ServerCallContext, ReceivedMessage) throws -> OutgoingMessage

/// The one answer of a deferred call (`Server.registerDeferred`): callable once from any thread; later calls
/// are ignored. A reply dropped without being sent answers INTERNAL, so no call is left hanging.
public final class ServerReply: @unchecked Sendable {
    private let deliver: @Sendable (Result<OutgoingMessage, RPCStatus>) -> Void
    private let lock = NSLock()
    private var sent = false
    init(_ deliver: @escaping @Sendable (Result<OutgoingMessage, RPCStatus>) -> Void) { self.deliver = deliver }
    deinit { if !sent { deliver(.failure(RPCStatus(.internalError, "the handler dropped the call without answering"))) } }

    public func callAsFunction(_ result: Result<OutgoingMessage, RPCStatus>) {
        let first = lock.withLock { () -> Bool in defer { sent = true }; return !sent }
        if first { deliver(result) }
    }

    /// Runs `body` and sends its answer, or the status of what it threw.
    public func answer(_ body: () throws -> OutgoingMessage) { self(Self.result(of: body)) }

    static func result(of body: () throws -> OutgoingMessage) -> Result<OutgoingMessage, RPCStatus> {
        do { return .success(try body()) } catch let e as RPCStatusConvertible { return .failure(e.rpcStatus) } catch {
            return .failure(RPCStatus(.internalError, "\(error)"))
        }
    }
}

/// A handler that may answer later, from another thread (e.g. once a replica confirmed a write): it must
/// call `reply` exactly once. The server's shutdown waits for deferred answers still owed.
public typealias DeferredUnaryHandler = @Sendable (ServerCallContext, ReceivedMessage, ServerReply) -> Void

/// Server configuration.
public struct ServerConfiguration: Sendable {
    /// "host:port"; port 0 picks a free port (read it back from `Server.port`).
    public var address: String
    /// Largest request or response accepted, in bytes; larger requests fail with RESOURCE_EXHAUSTED.
    public var maxMessageBytes: Int32 = 64 << 20
    /// Threads draining the completion queue (each runs handlers inline).
    public var threads: Int = 2
    /// Calls requested ahead of arrival.
    public var preRequestedCalls: Int = 16
    /// Serve TLS with this identity (gRPC core SSL credentials) instead of plaintext.
    public var tls: TLSIdentity? = nil
    /// Applied to every failed status before it is sent (a service adds its machine-readable details here,
    /// also to the statuses this bridge makes itself: unknown method, shutting down, missing message).
    public var decorateStatus: (@Sendable (RPCStatus) -> RPCStatus)? = nil
    /// More integer channel arguments of the gRPC core (tuning; see `transportArguments` for the defaults).
    public var extraArguments: [(String, Int32)] = []
    public init(address: String) { self.address = address }
}

/// A server's TLS identity: PEM certificate chain and PEM private key (contents, not paths).
public struct TLSIdentity: Sendable {
    public var certificateChainPEM: String
    public var privateKeyPEM: String
    public init(certificateChainPEM: String, privateKeyPEM: String) {
        self.certificateChainPEM = certificateChainPEM; self.privateKeyPEM = privateKeyPEM
    }
    /// Reads both PEM files; the error names the file.
    public init(certificatePath: String, keyPath: String) throws {
        func read(_ path: String, _ what: String) throws -> String {
            guard let d = FileManager.default.contents(atPath: path), let s = String(data: d, encoding: .utf8), s.contains("-----BEGIN") else {
                throw RPCStatus(.invalidArgument, "cannot read the TLS \(what) PEM file '\(path)'")
            }
            return s
        }
        self.init(certificateChainPEM: try read(certificatePath, "certificate"), privateKeyPEM: try read(keyPath, "private key"))
    }
}

/// A gRPC server over the C core: one NEXT completion queue drained by `threads` threads, generic
/// (method-name) dispatch to registered unary handlers, graceful shutdown that drains in-flight calls.
/// Register all handlers before `start()`. Thread-safe after start.
public final class Server: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// Bound port, valid after `start()`.
    public private(set) var port: Int = 0

    fileprivate let server: OpaquePointer
    fileprivate let cq: OpaquePointer
    fileprivate enum Handler { case unary(UnaryHandler), deferred(DeferredUnaryHandler) }
    fileprivate var handlers: [String: Handler] = [:]
    fileprivate let lock = NSLock()
    fileprivate var shuttingDown = false
    /// Completion events being processed (they may start new batches); shutdown waits for zero before
    /// shutting the queue down, since starting a batch on a shut-down queue aborts the process.
    fileprivate let activeEvents = NSCondition()
    fileprivate var activeEventCount = 0
    /// Calls that arrived and whose answer has not finished sending (behind `activeEvents`).
    fileprivate var liveCallCount = 0
    fileprivate func callEnded() { activeEvents.withLock { liveCallCount -= 1 } }
    private var threads: [Thread] = []
    private let threadsDone = DispatchGroup()
    private let args: ChannelArgs

    public init(_ configuration: ServerConfiguration) {
        GRPCRuntime.ensure()
        self.configuration = configuration
        args = ChannelArgs(integers: transportArguments(maxMessageBytes: configuration.maxMessageBytes) + configuration.extraArguments)
        server = grpc_server_create(args.pointer, nil)
        cq = grpc_completion_queue_create_for_next(nil)
        grpc_server_register_completion_queue(server, cq, nil)
    }

    deinit {
        grpc_server_destroy(server)
        grpc_completion_queue_destroy(cq)
    }

    /// Registers the handler of a full method path ("/package.Service/Method").
    public func register(_ method: String, _ handler: @escaping UnaryHandler) {
        lock.withLock { handlers[method] = .unary(handler) }
    }

    /// Registers a handler that answers through a `ServerReply`, possibly after it returned.
    public func registerDeferred(_ method: String, _ handler: @escaping DeferredUnaryHandler) {
        lock.withLock { handlers[method] = .deferred(handler) }
    }

    /// Binds, starts the completion-queue threads and pre-requests calls. Throws when the address cannot be bound.
    public func start() throws {
        let creds: OpaquePointer?
        if let tls = configuration.tls {
            creds = tls.privateKeyPEM.withCString { key in
                tls.certificateChainPEM.withCString { chain in
                    var pair = grpc_ssl_pem_key_cert_pair(private_key: key, cert_chain: chain)
                    return grpc_ssl_server_credentials_create(nil, &pair, 1, 0, nil)
                }
            }
        } else {
            creds = grpc_insecure_server_credentials_create()
        }
        guard let creds else { throw RPCStatus(.invalidArgument, "the TLS certificate or key was rejected by gRPC") }
        let bound = grpc_server_add_http2_port(server, configuration.address, creds)
        grpc_server_credentials_release(creds)
        guard bound > 0 else {
            throw RPCStatus(.unavailable, "cannot listen on \(configuration.address): address in use or invalid; pick another --listen address")
        }
        port = Int(bound)
        grpc_server_start(server)
        for _ in 0..<configuration.preRequestedCalls { requestCall() }
        for i in 0..<max(1, configuration.threads) {
            threadsDone.enter()
            let cq = QueueHandle(pointer: self.cq), group = threadsDone
            let t = Thread { drainCompletionQueue(cq.pointer); group.leave() }
            t.name = "grpc-server-\(i)"
            t.start()
            threads.append(t)
        }
    }

    fileprivate func requestCall() {
        let call = PendingServerCall(server: self)
        embedps_tsan_release(Unmanaged.passUnretained(call).toOpaque())  // its fields are read on a queue thread
        let err = grpc_server_request_call(server, call.callSlot, call.details, call.requestMetadata, cq, cq, call.retainedTag)
        if err != GRPC_CALL_OK {
            // The retain taken for the tag is never consumed by an event: release it here.
            Unmanaged.passUnretained(call).release()
        }
    }

    fileprivate func handler(for method: String) -> Handler? { lock.withLock { handlers[method] } }
    /// A deferred answer is owed (counted like an event being processed, so shutdown waits for it).
    fileprivate func beginDeferred() { activeEvents.withLock { activeEventCount += 1 } }
    fileprivate func endDeferred() {
        activeEvents.lock(); activeEventCount -= 1; activeEvents.broadcast(); activeEvents.unlock()
    }
    fileprivate var isShuttingDown: Bool { lock.withLock { shuttingDown } }

    /// Stops accepting calls, lets in-flight calls finish for up to `graceSeconds`, then cancels the rest,
    /// and joins the completion-queue threads. Idempotent.
    public func shutdown(graceSeconds: Double = 5) {
        let first = lock.withLock { () -> Bool in
            if shuttingDown { return false }
            shuttingDown = true; return true
        }
        guard first else { return }
        let done = ShutdownTag()
        embedps_tsan_release(Unmanaged.passUnretained(done).toOpaque())
        grpc_server_shutdown_and_notify(server, cq, done.retainedTag)
        // The core notifies once every call finished and every client closed its connection; an idle client
        // that keeps its connection open would hold that for the whole grace period. Once every call that
        // arrived has been answered, what is left is such connections: close them.
        let deadline = Date().addingTimeInterval(graceSeconds)
        var notified = false
        while !notified && Date() < deadline {
            notified = done.semaphore.wait(timeout: .now() + 0.02) == .success
            if !notified && activeEvents.withLock({ liveCallCount == 0 && activeEventCount == 0 }) { break }
        }
        if !notified {
            grpc_server_cancel_all_calls(server)
            done.semaphore.wait()
        }
        activeEvents.lock()
        while activeEventCount > 0 { activeEvents.wait() }
        activeEvents.unlock()
        grpc_completion_queue_shutdown(cq)
        threadsDone.wait()
    }
}

/// The server shutdown's completion. The core hands the tag to a queue thread: the release before the
/// hand-off and the acquire here tell ThreadSanitizer about that ordering.
final class ShutdownTag: CompletionTag, @unchecked Sendable {
    let semaphore = DispatchSemaphore(value: 0)
    func complete(success: Bool) {
        embedps_tsan_acquire(Unmanaged.passUnretained(self).toOpaque())
        semaphore.signal()
    }
}

/// One server-side call from request to final status. Phases: awaiting arrival, receiving the request,
/// sending the response. Memory the core writes into is allocated here and freed on deinit.
final class PendingServerCall: CompletionTag, @unchecked Sendable {
    private enum Phase { case awaitingCall, receivingMessage, sendingResponse }
    private unowned let owner: Server
    private var phase = Phase.awaitingCall
    /// Where the core stores the new call handle (must outlive the request).
    let callSlot = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)
    private var call: OpaquePointer? { callSlot.pointee }
    let details = UnsafeMutablePointer<grpc_call_details>.allocate(capacity: 1)
    let requestMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let ops = UnsafeMutablePointer<grpc_op>.allocate(capacity: 4)
    private let received = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
    private let cancelled = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private var statusDetails = grpc_empty_slice()
    private var response: OutgoingMessage? = nil
    /// Trailing metadata of a failed call; kept alive until the send completes.
    private var trailers: CMetadata? = nil

    init(server: Server) {
        owner = server
        grpc_call_details_init(details)
        grpc_metadata_array_init(requestMetadata)
        received.pointee = nil
        cancelled.pointee = 0
        callSlot.pointee = nil
    }

    deinit {
        if let call { grpc_call_unref(call) }
        callSlot.deallocate()
        grpc_call_details_destroy(details); details.deallocate()
        grpc_metadata_array_destroy(requestMetadata); requestMetadata.deallocate()
        if let r = received.pointee { grpc_byte_buffer_destroy(r) }
        received.deallocate(); ops.deallocate(); cancelled.deallocate()
        grpc_slice_unref(statusDetails)
    }

    func complete(success: Bool) {
        embedps_tsan_acquire(Unmanaged.passUnretained(self).toOpaque())
        owner.activeEvents.lock(); owner.activeEventCount += 1; owner.activeEvents.unlock()
        defer {
            owner.activeEvents.lock(); owner.activeEventCount -= 1
            owner.activeEvents.broadcast(); owner.activeEvents.unlock()
        }
        switch phase {
        case .awaitingCall:
            guard success, let call else { return }  // server shutting down: drop
            owner.activeEvents.withLock { owner.liveCallCount += 1 }
            if !owner.isShuttingDown { owner.requestCall() }
            phase = .receivingMessage
            embedps_op_recv_message(ops, received)
            embedps_tsan_release(Unmanaged.passUnretained(self).toOpaque())
            if grpc_call_start_batch(call, ops, 1, retainedTag, nil) != GRPC_CALL_OK {
                owner.callEnded()
                Unmanaged.passUnretained(self).release()
            }
        case .receivingMessage:
            guard let call else { return }
            guard success, let buffer = received.pointee else {
                respond(call, .failure(RPCStatus(.invalidArgument, "request carried no message")))
                return
            }
            received.pointee = nil
            dispatch(ReceivedMessage(consuming: buffer), call: call)
        case .sendingResponse:
            owner.callEnded()
            return  // deinit releases everything once the last retain goes
        }
    }

    private func dispatch(_ message: ReceivedMessage, call: OpaquePointer) {
        let method = string(of: &details.pointee.method)
        guard let handler = owner.handler(for: method) else {
            return respond(call, .failure(RPCStatus(.unimplemented, "method \(method) is not served here")))
        }
        if owner.isShuttingDown { return respond(call, .failure(RPCStatus(.unavailable, "server is shutting down; retry on another replica or later"))) }
        let remaining = embedps_millis_until(details.pointee.deadline)
        let context = ServerCallContext(method: method, metadata: metadata(of: requestMetadata.pointee),
                                        millisecondsRemaining: remaining < 0 ? nil : remaining)
        switch handler {
        case .unary(let h):
            respond(call, ServerReply.result { try h(context, message) })
        case .deferred(let h):
            owner.beginDeferred()
            let owner = self.owner
            h(context, message, ServerReply { [self] result in
                if let c = self.call { respond(c, result) }
                owner.endDeferred()
            })
        }
    }

    private func respond(_ call: OpaquePointer, _ result: Result<OutgoingMessage, RPCStatus>) {
        phase = .sendingResponse
        var n = 0
        embedps_op_send_initial_metadata(ops + n, 0, nil); n += 1
        switch result {
        case .success(let message):
            response = message
            embedps_op_send_message(ops + n, message.buffer); n += 1
            embedps_op_send_status_from_server(ops + n, GRPC_STATUS_OK, nil, 0, nil); n += 1
        case .failure(let undecorated):
            let status = owner.configuration.decorateStatus?(undecorated) ?? undecorated
            statusDetails = grpc_slice_from_copied_string(status.message)
            let t = CMetadata(binary: status.trailers)
            trailers = t
            embedps_op_send_status_from_server(ops + n, status.code.c, &statusDetails, t.count, t.items); n += 1
        }
        embedps_op_recv_close_on_server(ops + n, cancelled); n += 1
        embedps_tsan_release(Unmanaged.passUnretained(self).toOpaque())
        if grpc_call_start_batch(call, ops, n, retainedTag, nil) != GRPC_CALL_OK {
            owner.callEnded()
            Unmanaged.passUnretained(self).release()
        }
    }
}
