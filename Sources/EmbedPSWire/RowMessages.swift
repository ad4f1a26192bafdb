import EmbedPSWireC

// The hot-path messages (Pull/Push). Encoders write straight into a buffer the caller allocated (a gRPC
// slice), so row payloads are copied once; decoders read the received bytes in place.

/// Little-endian protobuf writer over a pre-sized buffer. Invariant: never writes past `end`
/// (sizes are computed by the same functions that write, and checked in debug builds).
struct ProtoWriter {
    var cursor: UnsafeMutableRawPointer
    let end: UnsafeMutableRawPointer

    static func varintSize(_ v: UInt64) -> Int {
        var n = 1, v = v
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }
    static func bytesFieldSize(_ length: Int) -> Int { 1 + varintSize(UInt64(length)) + length }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { cursor.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, as: UInt8.self); cursor += 1; v >>= 7 }
        cursor.storeBytes(of: UInt8(v), as: UInt8.self); cursor += 1
        assert(cursor <= end)
    }
    mutating func tag(_ field: UInt32, _ wireType: UInt32) { varint(UInt64(field << 3 | wireType)) }
    /// Writes a length-delimited header and returns where its `length` payload bytes go.
    mutating func bytesHeader(_ field: UInt32, length: Int) -> UnsafeMutableRawPointer {
        tag(field, 2); varint(UInt64(length))
        let payload = cursor
        cursor += length
        assert(cursor <= end)
        return payload
    }
}

/// Encodes `PullRequest` / `PushRequest` / `PullResponse` payloads.
public enum RowMessageEncoder {
    static func tableFieldSize(_ table: String) -> Int { table.isEmpty ? 0 : ProtoWriter.bytesFieldSize(table.utf8.count) }

    /// Size of a PullRequest for `table` and `count` ids.
    public static func pullRequestSize(table: String, count: Int) -> Int {
        tableFieldSize(table) + (count == 0 ? 0 : ProtoWriter.bytesFieldSize(count * 8))
    }
    /// Writes a PullRequest; `ids(i)` gives the i-th id.
    public static func writePullRequest(into buffer: UnsafeMutableRawBufferPointer, table: String, count: Int, ids: (Int) -> UInt64) {
        var w = ProtoWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        writeTable(&w, table)
        writeIds(&w, field: 2, count: count, ids: ids)
    }

    /// Size of a PushRequest for `count` rows of `dim` floats.
    public static func pushRequestSize(table: String, count: Int, dim: Int) -> Int {
        pullRequestSize(table: table, count: count) + (count == 0 ? 0 : ProtoWriter.bytesFieldSize(count * dim * 4))
    }
    /// Writes a PushRequest; `row(i, destination)` copies the i-th gradient row (dim floats) to `destination`.
    public static func writePushRequest(into buffer: UnsafeMutableRawBufferPointer, table: String, count: Int, dim: Int,
                                        ids: (Int) -> UInt64, row: (Int, UnsafeMutablePointer<Float>) -> Void) {
        var w = ProtoWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        writeTable(&w, table)
        writeIds(&w, field: 2, count: count, ids: ids)
        if count > 0 {
            let payload = w.bytesHeader(3, length: count * dim * 4).bindMemory(to: Float.self, capacity: count * dim)
            for i in 0..<count { row(i, payload + i * dim) }
        }
    }

    /// Size of a PullResponse carrying `count` rows of `dim` floats.
    public static func pullResponseSize(count: Int, dim: Int) -> Int {
        (dim == 0 ? 0 : 1 + ProtoWriter.varintSize(UInt64(dim))) + (count * dim == 0 ? 0 : ProtoWriter.bytesFieldSize(count * dim * 4))
    }
    /// Writes a PullResponse header and returns the row area (count * dim floats) for the caller to fill.
    public static func writePullResponse(into buffer: UnsafeMutableRawBufferPointer, count: Int, dim: Int) -> UnsafeMutablePointer<Float> {
        var w = ProtoWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        if dim != 0 { w.tag(1, 0); w.varint(UInt64(dim)) }
        if count * dim == 0 { return w.cursor.bindMemory(to: Float.self, capacity: 0) }
        return w.bytesHeader(2, length: count * dim * 4).bindMemory(to: Float.self, capacity: count * dim)
    }

    private static func writeTable(_ w: inout ProtoWriter, _ table: String) {
        guard !table.isEmpty else { return }
        var t = table
        t.withUTF8 { u in
            let p = w.bytesHeader(1, length: u.count)
            p.copyMemory(from: u.baseAddress!, byteCount: u.count)
        }
    }
    private static func writeIds(_ w: inout ProtoWriter, field: UInt32, count: Int, ids: (Int) -> UInt64) {
        guard count > 0 else { return }
        let p = w.bytesHeader(field, length: count * 8)
        for i in 0..<count { p.storeBytes(of: ids(i).littleEndian, toByteOffset: i * 8, as: UInt64.self) }
    }
}

/// A decoded PullRequest or PushRequest, valid only inside the closure that receives it.
/// `ids` and `gradients` point into decoder-owned memory.
public struct RowRequestView {
    public let table: String
    public let ids: UnsafeBufferPointer<UInt64>
    /// Raw gradient bytes (PushRequest only; empty for PullRequest). Length is not yet validated.
    public let gradientBytes: UnsafeRawBufferPointer
}

public enum RowMessageDecoder {
    /// Decodes a PullRequest with protobuf-c (accepts packed and unpacked ids).
    public static func withPullRequest<R>(_ bytes: UnsafeRawBufferPointer, _ body: (RowRequestView) throws -> R) throws -> R {
        try unpackMessage(bytes, embedps__v1__pull_request__unpack, name: "PullRequest") { m in
            let c = m.pointee
            return try body(RowRequestView(table: swiftString(c.table), ids: UnsafeBufferPointer(start: c.ids, count: c.n_ids),
                                           gradientBytes: UnsafeRawBufferPointer(start: nil, count: 0)))
        }
    }
    /// Decodes a PushRequest with protobuf-c.
    public static func withPushRequest<R>(_ bytes: UnsafeRawBufferPointer, _ body: (RowRequestView) throws -> R) throws -> R {
        try unpackMessage(bytes, embedps__v1__push_request__unpack, name: "PushRequest") { m in
            let c = m.pointee
            return try body(RowRequestView(table: swiftString(c.table), ids: UnsafeBufferPointer(start: c.ids, count: c.n_ids),
                                           gradientBytes: UnsafeRawBufferPointer(start: c.gradients.data, count: c.gradients.len)))
        }
    }

    /// Reads a PullResponse in place: returns (dim, raw float bytes). Unknown fields are skipped.
    public static func pullResponse(_ bytes: UnsafeRawBufferPointer) throws -> (dim: Int, values: UnsafeRawBufferPointer) {
        var r = ProtoReader(bytes)
        var dim = 0
        var values = UnsafeRawBufferPointer(start: nil, count: 0)
        while let (field, wireType) = try r.nextTag() {
            switch (field, wireType) {
            case (1, 0): dim = Int(truncatingIfNeeded: try r.varint())
            case (2, 2): values = try r.lengthDelimited()
            default: try r.skip(wireType)
            }
        }
        guard dim == 0 ? values.isEmpty : values.count % (dim * 4) == 0 else {
            throw WireError("malformed PullResponse: \(values.count) value bytes is not a multiple of dim \(dim) x 4")
        }
        return (dim, values)
    }
}

/// Minimal protobuf reader over a contiguous buffer. Throws on truncation; never reads out of bounds.
struct ProtoReader {
    private let base: UnsafeRawBufferPointer
    private var offset = 0
    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    mutating func nextTag() throws -> (UInt32, UInt32)? {
        if offset >= base.count { return nil }
        let t = try varint()
        return (UInt32(truncatingIfNeeded: t >> 3), UInt32(truncatingIfNeeded: t & 7))
    }
    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard offset < base.count, shift < 64 else { throw WireError("malformed message: truncated varint") }
            let b = base[offset]; offset += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }
    mutating func lengthDelimited() throws -> UnsafeRawBufferPointer {
        let n = try varint()
        guard n <= UInt64(base.count - offset) else { throw WireError("malformed message: field length \(n) past end") }
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<offset + Int(n)])
        offset += Int(n)
        return slice
    }
    mutating func skip(_ wireType: UInt32) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try lengthDelimited()
        case 5: try advance(4)
        default: throw WireError("malformed message: unsupported wire type \(wireType)")
        }
    }
    private mutating func advance(_ n: Int) throws {
        guard base.count - offset >= n else { throw WireError("malformed message: truncated fixed field") }
        offset += n
    }
}
