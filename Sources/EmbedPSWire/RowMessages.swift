// The hot-path messages (Pull/Push). Encoders write straight into a buffer the caller allocated (a gRPC
// slice), so row payloads are copied once; decoders read the received bytes in place.

/// Protobuf writer over a pre-sized buffer (row messages are sized before they are written). Invariant: never writes past `end`
/// (sizes are computed by the same functions that write, and checked in debug builds).
struct SlabWriter {
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
    static func tableFieldSize(_ table: String) -> Int { table.isEmpty ? 0 : SlabWriter.bytesFieldSize(table.utf8.count) }

    /// Size of a PullRequest for `table` and `count` ids.
    public static func pullRequestSize(table: String, count: Int) -> Int {
        tableFieldSize(table) + (count == 0 ? 0 : SlabWriter.bytesFieldSize(count * 8))
    }
    /// Writes a PullRequest; `ids(i)` gives the i-th id.
    public static func writePullRequest(into buffer: UnsafeMutableRawBufferPointer, table: String, count: Int, ids: (Int) -> UInt64) {
        var w = SlabWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        writeTable(&w, table)
        writeIds(&w, field: 2, count: count, ids: ids)
    }

    /// Size of a PushRequest for `count` rows of `dim` floats.
    public static func pushRequestSize(table: String, count: Int, dim: Int) -> Int {
        pullRequestSize(table: table, count: count) + (count == 0 ? 0 : SlabWriter.bytesFieldSize(count * dim * 4))
    }
    /// Writes a PushRequest into a buffer of exactly `pushRequestSize` bytes; `row(i, destination)` copies the
    /// i-th gradient row (dim floats) to `destination`.
    public static func writePushRequest(into buffer: UnsafeMutableRawBufferPointer, table: String, count: Int, dim: Int,
                                        ids: (Int) -> UInt64, row: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let head = buffer.count - count * dim * 4
        writePushRequestHead(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<head]), table: table, count: count, dim: dim, ids: ids)
        guard count > 0 else { return }
        let payload = (buffer.baseAddress! + head).bindMemory(to: Float.self, capacity: count * dim)
        for i in 0..<count { row(i, payload + i * dim) }
    }

    /// Writes a PushRequest without its rows' bytes: everything `writePushRequest` writes before them (into
    /// a buffer of `pushRequestSize - count * dim * 4` bytes), so the rows, already laid out as the message
    /// carries them (row i's dim floats at i * dim, little-endian), can follow as a separate slice.
    public static func writePushRequestHead(into buffer: UnsafeMutableRawBufferPointer, table: String, count: Int, dim: Int, ids: (Int) -> UInt64) {
        var w = SlabWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        writeTable(&w, table)
        writeIds(&w, field: 2, count: count, ids: ids)
        if count > 0 { w.tag(3, 2); w.varint(UInt64(count * dim * 4)) }
        assert(w.cursor == w.end)
    }

    /// Size of a PullResponse carrying `count` rows of `dim` floats.
    public static func pullResponseSize(count: Int, dim: Int) -> Int {
        (dim == 0 ? 0 : 1 + SlabWriter.varintSize(UInt64(dim))) + (count * dim == 0 ? 0 : SlabWriter.bytesFieldSize(count * dim * 4))
    }
    /// Writes a PullResponse header and returns the row area (count * dim floats) for the caller to fill.
    public static func writePullResponse(into buffer: UnsafeMutableRawBufferPointer, count: Int, dim: Int) -> UnsafeMutablePointer<Float> {
        var w = SlabWriter(cursor: buffer.baseAddress!, end: buffer.baseAddress! + buffer.count)
        if dim != 0 { w.tag(1, 0); w.varint(UInt64(dim)) }
        if count * dim == 0 { return w.cursor.bindMemory(to: Float.self, capacity: 0) }
        return w.bytesHeader(2, length: count * dim * 4).bindMemory(to: Float.self, capacity: count * dim)
    }

    private static func writeTable(_ w: inout SlabWriter, _ table: String) {
        guard !table.isEmpty else { return }
        var t = table
        t.withUTF8 { u in
            let p = w.bytesHeader(1, length: u.count)
            p.copyMemory(from: u.baseAddress!, byteCount: u.count)
        }
    }
    private static func writeIds(_ w: inout SlabWriter, field: UInt32, count: Int, ids: (Int) -> UInt64) {
        guard count > 0 else { return }
        let p = w.bytesHeader(field, length: count * 8)
        for i in 0..<count { p.storeBytes(of: ids(i).littleEndian, toByteOffset: i * 8, as: UInt64.self) }
    }
}

/// A decoded PullRequest or PushRequest, valid only inside the closure that receives it.
/// `ids` is an aligned copy of the request's ids; `gradientBytes` points into the received message.
public struct RowRequestView {
    public let table: String
    public let ids: UnsafeBufferPointer<UInt64>
    /// Raw gradient bytes (PushRequest only; empty for PullRequest). Length is not yet validated.
    public let gradientBytes: UnsafeRawBufferPointer
}

/// Strict in-place decoders of the row messages (the hot path): the same rules as the generated decoders
/// (`Wire.PullRequest` / `Wire.PushRequest`, which the tests check them against), without copying the
/// gradient payload.
public enum RowMessageDecoder {
    /// Decodes a PullRequest: field 1 table (UTF-8), field 2 ids (fixed64, packed or not).
    public static func withPullRequest<R>(_ bytes: UnsafeRawBufferPointer, _ body: (RowRequestView) throws -> R) throws -> R {
        try decode(bytes, push: false, body)
    }
    /// Decodes a PushRequest: PullRequest's fields plus field 3 gradients (bytes).
    public static func withPushRequest<R>(_ bytes: UnsafeRawBufferPointer, _ body: (RowRequestView) throws -> R) throws -> R {
        try decode(bytes, push: true, body)
    }

    private static func decode<R>(_ bytes: UnsafeRawBufferPointer, push: Bool, _ body: (RowRequestView) throws -> R) throws -> R {
        let name = push ? "embedps.v1.PushRequest" : "embedps.v1.PullRequest"
        var r = ProtoReader(bytes, message: name)
        var table = ""
        var idChunks: [UnsafeRawBufferPointer] = []
        var single: [UInt64] = []
        var gradients = UnsafeRawBufferPointer(start: nil, count: 0)
        while !r.atEnd {
            let key = try r.varint()
            guard key >> 3 != 0, key >> 3 <= 0x1FFF_FFFF else { throw r.malformed("field number \(key >> 3) is not a valid field number") }
            guard let wt = ProtoWireType(rawValue: UInt32(key & 7)), wt != .startGroup, wt != .endGroup else {
                throw r.malformed("wire type \(key & 7) of field \(key >> 3) is not allowed")
            }
            switch (key >> 3, push) {
            case (1, _): try r.readString(&table, wt, field: push ? "PushRequest.table" : "PullRequest.table")
            case (2, _):
                if wt == .lengthDelimited {
                    let chunk = try r.lengthDelimited()
                    guard chunk.count % 8 == 0 else { throw r.malformed("packed field ids has \(chunk.count) bytes, not a multiple of 8") }
                    idChunks.append(chunk)
                } else if wt == .fixed64 {
                    single.append(try r.fixed64())
                    idChunks.append(UnsafeRawBufferPointer(start: nil, count: 0))   // keeps order with packed runs
                } else {
                    throw r.malformed("field ids has wire type \(wt.rawValue), expected 1 or 2")
                }
            case (3, true):
                guard wt == .lengthDelimited else { throw r.malformed("field gradients has wire type \(wt.rawValue), expected 2") }
                gradients = try r.lengthDelimited()
            default: try r.skip(wt, field: key >> 3)
            }
        }
        // One aligned copy of the ids (packed runs and single values in their order of arrival).
        let total = idChunks.reduce(0) { $0 + ($1.baseAddress == nil ? 1 : $1.count / 8) }
        let ids = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(1, total))
        defer { ids.deallocate() }
        var n = 0, nextSingle = 0
        for c in idChunks {
            if c.baseAddress == nil { ids[n] = single[nextSingle]; nextSingle += 1; n += 1; continue }
            UnsafeMutableRawPointer(ids.baseAddress! + n).copyMemory(from: c.baseAddress!, byteCount: c.count)
            n += c.count / 8
        }
        #if _endian(big)
        for i in 0..<n { ids[i] = UInt64(littleEndian: ids[i]) }
        #endif
        return try body(RowRequestView(table: table, ids: UnsafeBufferPointer(start: ids.baseAddress, count: total), gradientBytes: gradients))
    }

    /// Where the row bytes (field 3) of a PushRequest of `total` bytes start, when the message has the shape
    /// clients usually send: field 1 (the table) at most once, then one packed run of ids (field 2), then
    /// field 3 ending the message; nil for any other shape. `read(n, into)` reads (or skips, into nil) the
    /// message's next `n` bytes in order, false when fewer remain. Only a hint, for placing the bytes so that
    /// the rows are aligned: the decoder (`withPushRequest`) reads every valid encoding whatever this says.
    public static func pushRowsOffset(total: Int, read: (Int, UnsafeMutableRawPointer?) -> Bool) -> Int? {
        var at = 0
        func byte() -> UInt8? {
            var b: UInt8 = 0
            guard read(1, &b) else { return nil }
            at += 1
            return b
        }
        func varint() -> Int? {
            var v = 0
            for i in 0..<5 {
                guard let b = byte() else { return nil }
                v |= Int(b & 0x7f) << (7 * i)
                if b & 0x80 == 0 { return v }
            }
            return nil
        }
        guard var tag = byte() else { return nil }
        if tag == 0x0A {
            guard let n = varint(), read(n, nil) else { return nil }
            at += n
            guard let t = byte() else { return nil }
            tag = t
        }
        guard tag == 0x12, let idBytes = varint(), read(idBytes, nil) else { return nil }
        at += idBytes
        guard byte() == 0x1A, let rowBytes = varint(), at + rowBytes == total else { return nil }
        return at
    }

    /// The layout of a PullResponse of `total` bytes that starts with `prefix` and has the shape our shards
    /// write: field 1 (dim, non-zero), then field 2 (the values) ending the message. Returns the dim and where
    /// the values start, or nil for any other shape (then decode it with `pullResponse`, which accepts every
    /// valid encoding). Where this returns a layout, `pullResponse` of the whole message returns the same dim
    /// and the bytes from `valuesOffset` to the end, so a reader may copy the rows from the slices the
    /// message arrived in without making it contiguous first.
    public static func pullResponseLayout(prefix: UnsafeRawBufferPointer, total: Int) -> (dim: Int, valuesOffset: Int)? {
        var at = 0
        func varint(maxBytes: Int) -> UInt64? {
            var v: UInt64 = 0
            for i in 0..<maxBytes {
                guard at < prefix.count else { return nil }
                let b = prefix[at]; at += 1
                v |= UInt64(b & 0x7f) << (7 * UInt64(i))
                if b & 0x80 == 0 { return v }
            }
            return nil
        }
        guard prefix.count >= 4, prefix[0] == 0x08 else { return nil }
        at = 1
        guard let dim = varint(maxBytes: 5), dim != 0, dim <= UInt64(UInt32.max) else { return nil }
        guard at < prefix.count, prefix[at] == 0x12 else { return nil }
        at += 1
        guard let length = varint(maxBytes: 9), length > 0, length <= UInt64(Int.max / 2),
              at + Int(length) == total, Int(length) % (Int(dim) * 4) == 0 else { return nil }
        return (Int(dim), at)
    }

    /// Reads a PullResponse in place: returns (dim, raw float bytes). Strict like every decoder here.
    public static func pullResponse(_ bytes: UnsafeRawBufferPointer) throws -> (dim: Int, values: UnsafeRawBufferPointer) {
        var r = ProtoReader(bytes, message: "embedps.v1.PullResponse")
        var dim: UInt32 = 0
        var values = UnsafeRawBufferPointer(start: nil, count: 0)
        while !r.atEnd {
            let key = try r.varint()
            guard key >> 3 != 0, let wt = ProtoWireType(rawValue: UInt32(key & 7)), wt != .startGroup, wt != .endGroup else {
                throw r.malformed("bad field key \(key)")
            }
            switch key >> 3 {
            case 1: try r.readUInt32(&dim, wt, field: "PullResponse.dim")
            case 2:
                guard wt == .lengthDelimited else { throw r.malformed("field values has wire type \(wt.rawValue), expected 2") }
                values = try r.lengthDelimited()
            default: try r.skip(wt, field: key >> 3)
            }
        }
        guard dim == 0 ? values.isEmpty : values.count % (Int(dim) * 4) == 0 else {
            throw WireError("malformed PullResponse: \(values.count) value bytes is not a multiple of dim \(dim) x 4")
        }
        return (Int(dim), values)
    }
}
