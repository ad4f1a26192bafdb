import EmbedPSWireC
import Glibc

/// Owns the C memory (strings, nested structs, arrays) of a protobuf-c message being built for packing.
/// Invariant: every pointer handed out stays valid until the arena is deinitialised, then is freed once.
/// Not thread-safe: one arena per encode.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func allocate<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        p.initialize(to: value)
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        if values.isEmpty { return nil }
        let p = UnsafeMutablePointer<T>.allocate(capacity: values.count)
        _ = UnsafeMutableBufferPointer(start: p, count: values.count).initialize(from: values)
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit { for b in blocks { b.deallocate() } }
}

/// Packs a filled protobuf-c message into bytes.
func packMessage(_ message: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
    let size = protobuf_c_message_get_packed_size(message)
    return [UInt8](unsafeUninitializedCapacity: size) { buf, count in
        count = protobuf_c_message_pack(message, buf.baseAddress)
    }
}

/// Unpacks `bytes` as the message of `descriptor`, hands the C struct to `body`, then frees it.
func unpackMessage<T, R>(_ bytes: UnsafeRawBufferPointer,
                         _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<T>?,
                         name: String, _ body: (UnsafePointer<T>) throws -> R) throws -> R {
    // protobuf-c rejects a NULL data pointer even for zero bytes; an empty message is valid protobuf.
    let empty: [UInt8] = [0]
    let raw: UnsafeMutablePointer<T>? = empty.withUnsafeBufferPointer { e in
        unpack(nil, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? e.baseAddress)
    }
    guard let raw else {
        throw WireError("malformed \(name) (\(bytes.count) bytes): not a valid protobuf encoding")
    }
    defer { protobuf_c_message_free_unpacked(UnsafeMutableRawPointer(raw).assumingMemoryBound(to: ProtobufCMessage.self), nil) }
    return try body(UnsafePointer(raw))
}

func swiftString(_ p: UnsafeMutablePointer<CChar>?) -> String {
    guard let p else { return "" }
    return String(cString: p)
}
