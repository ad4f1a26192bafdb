import CGRPC
import Glibc
import Synchronization

/// Process-wide gRPC core initialisation. `ensure()` is idempotent and thread-safe (Swift globals are lazy-once).
enum GRPCRuntime {
    private static let initialized: Bool = { grpc_init(); return true }()
    static func ensure() { _ = initialized }
}

/// A received message, owned by this object and released on deinit. Its bytes are read either in place, as
/// the slices they arrived in (`withSegments`, no copy), or as one contiguous slice (`withUnsafeBytes`, made
/// on first use: a copy when the message arrived in several slices). Bytes are only valid inside those
/// closures. The bytes never change, so it is safe to share across threads (the contiguous slice is made
/// once, under `flat`'s lock).
public final class ReceivedMessage: @unchecked Sendable {
    /// The message as received (kept until deinit: `withSegments` reads it).
    private let buffer: UnsafeMutablePointer<grpc_byte_buffer>?
    /// The contiguous slice, once made (or given).
    private let flat: Mutex<grpc_slice?>

    /// Takes ownership of `buffer` (destroyed by deinit).
    init(consuming buffer: UnsafeMutablePointer<grpc_byte_buffer>) {
        self.buffer = buffer
        flat = Mutex(nil)
    }
    public init(copying bytes: [UInt8]) {
        GRPCRuntime.ensure()
        buffer = nil
        flat = Mutex(bytes.withUnsafeBufferPointer { grpc_slice_from_copied_buffer(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) })
    }
    deinit {
        flat.withLock { if let s = $0 { grpc_slice_unref(s) } }
        if let buffer { grpc_byte_buffer_destroy(buffer) }
    }

    /// The message's length in bytes (of a compressed buffer: once decompressed).
    public var count: Int {
        if let buffer, embedps_byte_buffer_is_plain(buffer) != 0 { return grpc_byte_buffer_length(buffer) }
        return withUnsafeBytes { $0.count }
    }
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var s = flat.withLock { s -> grpc_slice in
            if let made = s { return made }
            let made = buffer.map { embedps_byte_buffer_flatten($0) } ?? grpc_empty_slice()
            s = made
            return made
        }
        return try body(UnsafeRawBufferPointer(start: embedps_slice_start(&s), count: embedps_slice_length(&s)))
    }
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Calls `body` with the message's bytes contiguous, placed so that byte `offset` is at a multiple of
    /// `alignment` (a power of two) when the message arrived in several slices (one copy, as
    /// `withUnsafeBytes` makes; not kept for later calls); otherwise as `withUnsafeBytes`.
    public func withUnsafeBytes<R>(placing offset: Int, at alignment: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let buffer, embedps_byte_buffer_is_plain(buffer) != 0, embedps_byte_buffer_slice_count(buffer) > 1,
              flat.withLock({ $0 == nil }) else { return try withUnsafeBytes(body) }
        let total = count
        let memory = UnsafeMutableRawPointer.allocate(byteCount: total + alignment, alignment: alignment)
        defer { memory.deallocate() }
        let start = memory + (alignment - offset % alignment) % alignment
        guard withSegments({ $0.read(total, into: start) }) == true else { return try withUnsafeBytes(body) }
        return try body(UnsafeRawBufferPointer(start: start, count: total))
    }

    /// Calls `body` with the message's bytes as the slices they arrived in, in order (no copy); nil, without
    /// calling it, when the message cannot be read in place (it arrived compressed, or was made from bytes):
    /// read it with `withUnsafeBytes` then.
    public func withSegments<R>(_ body: (inout SegmentReader) throws -> R) rethrows -> R? {
        guard let buffer, embedps_byte_buffer_is_plain(buffer) != 0 else { return nil }
        let n = embedps_byte_buffer_slice_count(buffer)
        let segments = UnsafeMutableBufferPointer<UnsafeRawBufferPointer>.allocate(capacity: max(1, n))
        defer { segments.deallocate() }
        for i in 0..<n {
            var length = 0
            let start = embedps_byte_buffer_slice(buffer, i, &length)
            segments[i] = UnsafeRawBufferPointer(start: start, count: length)
        }
        var reader = SegmentReader(UnsafeBufferPointer(rebasing: segments[0..<n]))
        return try body(&reader)
    }
}

/// Reads a message's bytes front to back across the slices they arrived in. Valid only inside
/// `ReceivedMessage.withSegments`.
public struct SegmentReader {
    private let segments: UnsafeBufferPointer<UnsafeRawBufferPointer>
    private var index = 0, offset = 0
    /// Bytes not yet read.
    public private(set) var remaining: Int

    init(_ segments: UnsafeBufferPointer<UnsafeRawBufferPointer>) {
        self.segments = segments
        remaining = segments.reduce(0) { $0 + $1.count }
    }

    /// Copies the next `count` bytes to `destination` (or skips them when it is nil); false, reading
    /// nothing, when fewer than `count` remain.
    public mutating func read(_ count: Int, into destination: UnsafeMutableRawPointer?) -> Bool {
        guard count >= 0, count <= remaining else { return false }
        var done = 0
        while done < count {
            let segment = segments[index]
            let n = min(count - done, segment.count - offset)
            if let destination, n > 0 { (destination + done).copyMemory(from: segment.baseAddress! + offset, byteCount: n) }
            done += n; offset += n
            if offset == segment.count { index += 1; offset = 0 }
        }
        remaining -= count
        return true
    }
}

/// A message to send: a gRPC byte buffer, filled once by its creator, then handed to the core by a send op.
/// Invariant: the buffer is destroyed exactly once (by deinit).
public final class OutgoingMessage: @unchecked Sendable {
    let buffer: UnsafeMutablePointer<grpc_byte_buffer>

    /// Allocates `length` bytes and lets `fill` write them in place (no intermediate copy).
    public init(length: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        GRPCRuntime.ensure()
        var data: UnsafeMutablePointer<UInt8>? = nil
        buffer = try Self.filled(embedps_byte_buffer_alloc(length, &data)!, data, length, fill)
    }
    /// `length` bytes that `fill` writes in place, followed by the `tail` bytes without a copy: gRPC sends
    /// them from where they are, and `owner` (which keeps them alive and unchanged) is retained until gRPC
    /// holds no reference to them, which may be after this message is gone.
    public init(length: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void, borrowing tail: UnsafeRawBufferPointer, owner: AnyObject) rethrows {
        GRPCRuntime.ensure()
        var data: UnsafeMutablePointer<UInt8>? = nil
        let retained = Unmanaged.passRetained(owner).toOpaque()
        let allocated = embedps_byte_buffer_alloc_borrowing(length, &data, UnsafeMutableRawPointer(mutating: tail.baseAddress), tail.count,
                                                            { Unmanaged<AnyObject>.fromOpaque($0!).release() }, retained)!
        buffer = try Self.filled(allocated, data, length, fill)
    }
    /// `allocated` once `fill` wrote its `length` bytes at `data`; destroyed (releasing what it holds) when
    /// `fill` throws. Runs before `self` is initialised, so a failed fill never reaches deinit.
    private static func filled(_ allocated: UnsafeMutablePointer<grpc_byte_buffer>, _ data: UnsafeMutablePointer<UInt8>?, _ length: Int,
                               _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows -> UnsafeMutablePointer<grpc_byte_buffer> {
        do { try fill(UnsafeMutableRawBufferPointer(start: data, count: length)) } catch {
            grpc_byte_buffer_destroy(allocated); throw error
        }
        return allocated
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
