import CGRPC
import Foundation
import Synchronization

/// Client channel configuration.
public struct ChannelConfiguration: Sendable {
    /// "host:port".
    public var target: String
    /// Largest message sent or received, in bytes.
    public var maxMessageBytes: Int32 = 64 << 20
    /// HTTP/2 connections the channel spreads its calls over (see `Channel`).
    public var connections: Int = 1
    /// Threads polling each connection's completion queue.
    public var pollerThreads: Int = 1
    /// Connect with TLS, trusting these PEM root certificates (nil: plaintext).
    public var tlsRootCertificatesPEM: String? = nil
    /// More integer channel arguments of the gRPC core (tuning; see `transportArguments` for the defaults).
    public var extraArguments: [(String, Int32)] = []
    public init(target: String) { self.target = target }
}

/// A client channel to one server over the gRPC C core: `connections` HTTP/2 connections, each with its own
/// completion queue and poller threads, calls spread over them in turn. gRPC serialises all the transport
/// work of one connection (framing, reads, writes), so with several calls in flight a second connection lets
/// a second core work on them: measured with `embedps-bench --transport` at 4 calls of 1 MiB in flight, two
/// connections moved 5.3-5.5 M rows/s of push-shaped calls against 4.2-4.6 M with one, and pull-shaped
/// 4.9-6.9 M against 3.7-4.5 M. Unary calls run asynchronously (`unary`) or blocking (`unarySync`); both
/// complete on a poller thread. Thread-safe; close with `close()`.
public final class Channel: @unchecked Sendable {
    public let configuration: ChannelConfiguration
    private let connections: [Connection]
    private let next = Atomic<UInt>(0)

    public init(_ configuration: ChannelConfiguration) {
        GRPCRuntime.ensure()
        self.configuration = configuration
        let n = max(1, configuration.connections)
        connections = (0..<n).map { i in
            // A subchannel pool of its own: channels with the same target and arguments would otherwise share
            // one connection.
            Connection(configuration, index: i, extra: n > 1 ? [("grpc.use_local_subchannel_pool", 1)] : [])
        }
    }

    deinit { close() }

    /// Waits for in-flight calls' completions, stops the pollers and destroys the connections. Idempotent.
    public func close() { connections.forEach { $0.close() } }

    /// Starts a unary call on the next connection; `completion` runs once on a poller thread.
    func start(_ method: String, _ request: OutgoingMessage, metadata: Metadata, timeoutMs: Int64,
               completion: @escaping @Sendable (Result<ReceivedMessage, RPCStatus>) -> Void) -> ClientCall? {
        let i = connections.count == 1 ? 0 : Int(next.wrappingAdd(1, ordering: .relaxed).oldValue % UInt(connections.count))
        return connections[i].start(method, request, metadata: metadata, timeoutMs: timeoutMs, completion: completion)
    }

    /// Performs a unary call and returns the response bytes. `timeoutMs` < 0 means no deadline.
    /// Task cancellation cancels the call.
    public func unary(_ method: String, _ request: OutgoingMessage, metadata: Metadata = [], timeoutMs: Int64 = 30_000) async throws -> ReceivedMessage {
        let box = CallBox()
        let message = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<ReceivedMessage, Error>) in
                let call = start(method, request, metadata: metadata, timeoutMs: timeoutMs) { result in
                    embedps_tsan_release(Unmanaged.passUnretained(box).toOpaque())
                    cont.resume(with: result.mapError { $0 as Error })
                }
                box.set(call)
            }
        } onCancel: {
            box.cancel()
        }
        embedps_tsan_acquire(Unmanaged.passUnretained(box).toOpaque())
        return message
    }

    /// Blocking unary call, for tools and tests.
    public func unarySync(_ method: String, _ request: OutgoingMessage, metadata: Metadata = [], timeoutMs: Int64 = 30_000) throws -> ReceivedMessage {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox()
        _ = start(method, request, metadata: metadata, timeoutMs: timeoutMs) { r in result.value = r; done.signal() }
        done.wait()
        guard let value = result.value else { throw RPCStatus(.internalError, "call \(method) completed without a result") }
        return try value.get()
    }
}

/// One HTTP/2 connection of a `Channel`: a gRPC core channel, its completion queue and poller threads.
private final class Connection: @unchecked Sendable {
    private let target: String
    private let channel: OpaquePointer
    private let cq: OpaquePointer
    private let args: ChannelArgs
    private let pollersDone = DispatchGroup()
    private let lock = NSLock()
    private var closed = false
    private var methodSlices: [String: grpc_slice] = [:]

    init(_ configuration: ChannelConfiguration, index: Int, extra: [(String, Int32)]) {
        target = configuration.target
        args = ChannelArgs(integers: transportArguments(maxMessageBytes: configuration.maxMessageBytes) + [
            // Reconnect quickly after a shard restarts (defaults back off for up to 2 minutes).
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.min_reconnect_backoff_ms", 100),
        ] + extra + configuration.extraArguments)
        let creds = configuration.tlsRootCertificatesPEM.map { pem in pem.withCString { grpc_ssl_credentials_create($0, nil, nil, nil) } }
            ?? grpc_insecure_credentials_create()
        channel = grpc_channel_create(configuration.target, creds, args.pointer)
        grpc_channel_credentials_release(creds)
        cq = grpc_completion_queue_create_for_next(nil)
        for i in 0..<max(1, configuration.pollerThreads) {
            pollersDone.enter()
            let cq = QueueHandle(pointer: self.cq), group = pollersDone
            let t = Thread { drainCompletionQueue(cq.pointer); group.leave() }
            t.name = "grpc-client-\(index)-\(i)"
            t.start()
        }
    }

    deinit { close() }

    /// Waits for in-flight calls' completions, stops the pollers and destroys the channel. Idempotent.
    func close() {
        let first = lock.withLock { () -> Bool in
            if closed { return false }
            closed = true; return true
        }
        guard first else { return }
        grpc_channel_destroy(channel)
        grpc_completion_queue_shutdown(cq)
        pollersDone.wait()
        grpc_completion_queue_destroy(cq)
        for (_, s) in methodSlices { grpc_slice_unref(s) }
    }

    private func methodSlice(_ method: String) -> grpc_slice {
        lock.withLock {
            if let s = methodSlices[method] { return s }
            let s = grpc_slice_from_copied_string(method)
            methodSlices[method] = s
            return s
        }
    }

    /// Starts a unary call; `completion` runs once on a poller thread.
    func start(_ method: String, _ request: OutgoingMessage, metadata: Metadata, timeoutMs: Int64,
               completion: @escaping @Sendable (Result<ReceivedMessage, RPCStatus>) -> Void) -> ClientCall? {
        if lock.withLock({ closed }) {
            completion(.failure(RPCStatus(.unavailable, "channel to \(target) is closed")))
            return nil
        }
        var m = methodSlice(method)
        guard let call = withUnsafeMutablePointer(to: &m, { mp in
            grpc_channel_create_call(channel, nil, embedps_propagate_defaults(), cq, mp.pointee, nil,
                                     embedps_deadline_after_millis(timeoutMs), nil)
        }) else {
            completion(.failure(RPCStatus(.internalError, "cannot create call \(method) on \(target)")))
            return nil
        }
        let state = ClientCall(call: call, request: request, metadata: metadata, target: target,
                               method: method, completion: completion)
        state.startBatch()
        return state
    }
}

private final class ResultBox: @unchecked Sendable {
    var value: Result<ReceivedMessage, RPCStatus>?
}

/// Holds the in-flight call so task cancellation can reach it.
private final class CallBox: @unchecked Sendable {
    private let lock = NSLock()
    private var call: ClientCall?
    private var cancelled = false
    func set(_ c: ClientCall?) {
        let cancelNow = lock.withLock { call = c; return cancelled }
        if cancelNow { c?.cancel() }
    }
    func cancel() {
        let c = lock.withLock { cancelled = true; return call }
        c?.cancel()
    }
}

/// One client-side unary call: all six ops in one batch; out-parameters live here until the tag completes.
final class ClientCall: CompletionTag, @unchecked Sendable {
    private let call: OpaquePointer
    /// This call's own reference to the request bytes: sending empties the byte buffer it is given, so the
    /// caller's `OutgoingMessage` stays intact for a retry (the copy shares the slices; no bytes are copied).
    private let sendBuffer: UnsafeMutablePointer<grpc_byte_buffer>
    private let requestMetadata: CMetadata
    private let target: String
    private let method: String
    private let completion: @Sendable (Result<ReceivedMessage, RPCStatus>) -> Void
    private let ops = UnsafeMutablePointer<grpc_op>.allocate(capacity: 6)
    private let initialMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let trailingMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let status = UnsafeMutablePointer<grpc_status_code>.allocate(capacity: 1)
    private let details = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
    private let received = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)

    init(call: OpaquePointer, request: OutgoingMessage, metadata: Metadata, target: String, method: String,
         completion: @escaping @Sendable (Result<ReceivedMessage, RPCStatus>) -> Void) {
        self.call = call; sendBuffer = grpc_byte_buffer_copy(request.buffer); self.requestMetadata = CMetadata(metadata)
        self.target = target; self.method = method; self.completion = completion
        grpc_metadata_array_init(initialMetadata); grpc_metadata_array_init(trailingMetadata)
        status.pointee = GRPC_STATUS_UNKNOWN
        details.pointee = grpc_empty_slice()
        received.pointee = nil
    }

    deinit {
        grpc_call_unref(call)
        grpc_byte_buffer_destroy(sendBuffer)
        grpc_metadata_array_destroy(initialMetadata); initialMetadata.deallocate()
        grpc_metadata_array_destroy(trailingMetadata); trailingMetadata.deallocate()
        grpc_slice_unref(details.pointee); details.deallocate()
        if let r = received.pointee { grpc_byte_buffer_destroy(r) }
        received.deallocate(); status.deallocate(); ops.deallocate()
    }

    func startBatch() {
        embedps_op_send_initial_metadata(ops, requestMetadata.count, requestMetadata.items)
        embedps_op_send_message(ops + 1, sendBuffer)
        embedps_op_send_close_from_client(ops + 2)
        embedps_op_recv_initial_metadata(ops + 3, initialMetadata)
        embedps_op_recv_message(ops + 4, received)
        embedps_op_recv_status_on_client(ops + 5, trailingMetadata, status, details)
        embedps_tsan_release(Unmanaged.passUnretained(self).toOpaque())
        let err = grpc_call_start_batch(call, ops, 6, retainedTag, nil)
        if err != GRPC_CALL_OK {
            Unmanaged.passUnretained(self).release()
            completion(.failure(RPCStatus(.internalError, "cannot start call \(method) to \(target) (call error \(err.rawValue))")))
        }
    }

    func cancel() { grpc_call_cancel(call, nil) }

    func complete(success: Bool) {
        embedps_tsan_acquire(Unmanaged.passUnretained(self).toOpaque())
        let code = StatusCode(rawValue: status.pointee.rawValue) ?? .unknown
        if code != .ok {
            var message = string(of: details)
            if message.isEmpty { message = "no details" }
            if code == .unavailable || code == .deadlineExceeded { message = "\(method) to \(target): \(message)" }
            completion(.failure(RPCStatus(code, message, trailers: binaryMetadata(of: trailingMetadata.pointee))))
            return
        }
        guard let buffer = received.pointee else {
            completion(.failure(RPCStatus(.internalError, "\(method) to \(target) returned OK without a message")))
            return
        }
        received.pointee = nil
        completion(.success(ReceivedMessage(consuming: buffer)))
    }
}
