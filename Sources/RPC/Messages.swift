import CGRPC
import Glibc

/// Process-wide gRPC core initialisation. `ensure()` is idempotent and thread-safe (Swift globals are lazy-once).
enum GRPCRuntime {
    private static let initialized: Bool = { grpc_init(); return true }()
    static func ensure() { _ = initialized }
}

/// A received message: one contiguous slice owned by this object and released on deinit.
/// Bytes are only valid inside `withUnsafeBytes`. Immutable, so safe to share across threads.
public final class ReceivedMessage: @unchecked Sendable {
    private let slice = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)

    /// Takes ownership of `buffer` (flattens it to one slice, destroys the buffer).
    init(consuming buffer: UnsafeMutablePointer<grpc_byte_buffer>) {
        slice.initialize(to: embedps_byte_buffer_flatten(buffer))
        grpc_byte_buffer_destroy(buffer)
    }
    public init(copying bytes: [UInt8]) {
        GRPCRuntime.ensure()
        slice.initialize(to: bytes.withUnsafeBufferPointer { grpc_slice_from_copied_buffer(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) })
    }
    deinit { grpc_slice_unref(slice.pointee); slice.deallocate() }

    public var count: Int { embedps_slice_length(slice) }
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: embedps_slice_start(slice), count: embedps_slice_length(slice)))
    }
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}

/// A message to send: a gRPC byte buffer, filled once by its creator, then handed to the core by a send op.
/// Invariant: the buffer is destroyed exactly once (by deinit).
public final class OutgoingMessage: @unchecked Sendable {
    let buffer: UnsafeMutablePointer<grpc_byte_buffer>

    /// Allocates `length` bytes and lets `fill` write them in place (no intermediate copy).
    public init(length: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        GRPCRuntime.ensure()
        var data: UnsafeMutablePointer<UInt8>? = nil
        let allocated = embedps_byte_buffer_alloc(length, &data)!
        // Fill before `self` is initialised, so a failed fill destroys the buffer here and deinit never runs.
        do { try fill(UnsafeMutableRawBufferPointer(start: data, count: length)) } catch {
            grpc_byte_buffer_destroy(allocated); throw error
        }
        buffer = allocated
    }
    public convenience init(bytes: [UInt8]) {
        self.init(length: bytes.count) { dst in bytes.withUnsafeBytes { src in if !src.isEmpty { dst.copyMemory(from: src) } } }
    }
    deinit { grpc_byte_buffer_destroy(buffer) }
}

/// Request metadata as (key, value) pairs; keys are lower-case ASCII as gRPC requires.
public typealias Metadata = [(key: String, value: String)]

func string(of slice: UnsafeMutablePointer<grpc_slice>) -> String {
    let n = embedps_slice_length(slice)
    guard n > 0, let p = embedps_slice_start(slice) else { return "" }
    return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
}

func metadata(of array: grpc_metadata_array) -> Metadata {
    (0..<array.count).map { i in (string(of: &array.metadata[i].key), string(of: &array.metadata[i].value)) }
}

/// Metadata with raw byte values (binary `-bin` entries keep their bytes).
func binaryMetadata(of array: grpc_metadata_array) -> [(key: String, value: [UInt8])] {
    (0..<array.count).map { i in
        let v = withUnsafeMutablePointer(to: &array.metadata[i].value) { p -> [UInt8] in
            let n = embedps_slice_length(p)
            guard n > 0, let start = embedps_slice_start(p) else { return [] }
            return Array(UnsafeBufferPointer(start: start, count: n))
        }
        return (string(of: &array.metadata[i].key), v)
    }
}

/// C metadata built from Swift pairs; owns its slices until deinit.
final class CMetadata {
    let items: UnsafeMutablePointer<grpc_metadata>
    let count: Int
    init(_ pairs: Metadata) {
        count = pairs.count
        items = .allocate(capacity: max(1, pairs.count))
        for (i, p) in pairs.enumerated() {
            var m = grpc_metadata()
            m.key = grpc_slice_from_copied_string(p.key)
            m.value = grpc_slice_from_copied_string(p.value)
            items[i] = m
        }
    }
    /// Binary values (for `-bin` keys gRPC base64-encodes them on the wire).
    init(binary pairs: [(key: String, value: [UInt8])]) {
        count = pairs.count
        items = .allocate(capacity: max(1, pairs.count))
        for (i, p) in pairs.enumerated() {
            var m = grpc_metadata()
            m.key = grpc_slice_from_copied_string(p.key)
            m.value = p.value.withUnsafeBufferPointer { grpc_slice_from_copied_buffer(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
            items[i] = m
        }
    }
    deinit {
        for i in 0..<count { grpc_slice_unref(items[i].key); grpc_slice_unref(items[i].value) }
        items.deallocate()
    }
}

/// Transport arguments shared by servers and client channels: message size limits both ways, and a 16 MiB
/// HTTP/2 look-ahead window, since row batches are ~1 MiB (measured with embedps-bench: concurrent pulls
/// 15-30% faster than with the default window; pushes within noise).
func transportArguments(maxMessageBytes: Int32) -> [(String, Int32)] {
    [(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, maxMessageBytes), (GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, maxMessageBytes),
     ("grpc.http2.lookahead_bytes", 16 << 20),
     // The window is fixed above, so bandwidth-delay probing only adds PINGs (measured with `embedps-bench
     // --transport`: push 1 in flight +20-40%, pull +5-15%, in three alternating passes).
     ("grpc.http2.bdp_probe", 0)]
}

/// Channel arguments with owned key strings.
final class ChannelArgs {
    private var keys: [UnsafeMutablePointer<CChar>] = []
    private let args: UnsafeMutablePointer<grpc_arg>
    private var n = 0
    let pointer: UnsafeMutablePointer<grpc_channel_args>

    init(integers: [(String, Int32)], strings: [(String, String)] = []) {
        args = .allocate(capacity: max(1, integers.count + strings.count))
        pointer = .allocate(capacity: 1)
        for (k, v) in integers {
            let key = strdup(k)!; keys.append(key)
            embedps_arg_integer(args + n, key, v); n += 1
        }
        for (k, v) in strings {
            let key = strdup(k)!, value = strdup(v)!; keys.append(key); keys.append(value)
            embedps_arg_string(args + n, key, value); n += 1
        }
        pointer.pointee = grpc_channel_args(num_args: n, args: args)
    }
    deinit { keys.forEach { free($0) }; args.deallocate(); pointer.deallocate() }
}

/// Something waiting on a completion-queue event. The tag pointer is an unmanaged retained reference.
protocol CompletionTag: AnyObject {
    func complete(success: Bool)
}

/// Drains a NEXT completion queue until it is shut down, dispatching each event to its tag.
/// Runs on a dedicated thread; a tag is released by the tag itself (see `CompletionTag`).
func drainCompletionQueue(_ cq: OpaquePointer) {
    while true {
        let ev = grpc_completion_queue_next(cq, embedps_inf_future(), nil)
        switch ev.type {
        case GRPC_QUEUE_SHUTDOWN: return
        case GRPC_OP_COMPLETE:
            guard let tag = ev.tag else { continue }
            // Each started batch holds one retain on its tag (`retainedTag`); the event consumes it.
            let obj = Unmanaged<AnyObject>.fromOpaque(tag).takeRetainedValue()
            (obj as? CompletionTag)?.complete(success: ev.success != 0)
        default: continue
        }
    }
}

extension CompletionTag {
    /// A tag pointer holding one retain, consumed by `drainCompletionQueue` when the event arrives.
    var retainedTag: UnsafeMutableRawPointer { Unmanaged.passRetained(self as AnyObject).toOpaque() }
}

/// A completion queue pointer handed to its polling thread (the core's queues are thread-safe).
struct QueueHandle: @unchecked Sendable { let pointer: OpaquePointer }
