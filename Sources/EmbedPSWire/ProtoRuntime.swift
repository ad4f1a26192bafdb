// The protobuf runtime of the generated message layer (Sources/EmbedPSWire/generated, made by
// Protos/swiftgen.py): a strict reader and a canonical writer. Hand-written; the generated code only calls
// the `read*` / `write*` functions below, one per proto field kind.

/// Namespace of the generated message and enum types (`Wire.PullRequest`, `Wire.OptimizerKind`, ...).
public enum Wire {}

/// Protobuf wire types. Groups (3, 4) are refused by the reader.
public enum ProtoWireType: UInt32, Sendable {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
}

/// A generated message: decodes field by field, encodes canonically (proto3 defaults omitted, repeated
/// numbers packed).
public protocol WireMessage: Sendable, Equatable {
    /// Full proto name, e.g. "embedps.v1.PullRequest".
    static var protoName: String { get }
    init()
    /// Decodes one field the message knows into itself; returns false for a field number it does not know
    /// (the reader then skips it). Throws on a known field with the wrong wire type or bad contents.
    mutating func decodeField(number: UInt32, wireType: ProtoWireType, from reader: inout ProtoReader) throws(WireError) -> Bool
    func encode(to writer: inout ProtoWriter)
}

extension WireMessage {
    /// Decodes a whole message strictly: any defect throws `WireError` naming the message and the field.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        var reader = ProtoReader(bytes, message: Self.protoName)
        self.init()
        try reader.decodeFields(into: &self)
    }
    public init(decoding bytes: [UInt8]) throws(WireError) {
        let result: Result<Self, WireError> = bytes.withUnsafeBytes { b in
            do throws(WireError) { return .success(try Self(decoding: b)) } catch { return .failure(error) }
        }
        self = try result.get()
    }
    /// The canonical encoding.
    public func encoded() -> [UInt8] {
        var w = ProtoWriter()
        encode(to: &w)
        return w.bytes
    }
}

/// A generated enum: open (unknown numbers are kept), raw value is the proto number.
public protocol ProtoEnum: Sendable, Hashable {
    var rawValue: Int32 { get }
    init(rawValue: Int32)
}

/// Strict protobuf reader over a contiguous buffer. Never reads out of bounds; every defect throws.
/// Invariant: `offset <= end <= base.count`.
public struct ProtoReader {
    /// Deepest nesting of messages accepted (a hostile message could otherwise recurse without bound).
    public static let maxDepth = 32
    private let base: UnsafeRawBufferPointer
    private var offset: Int
    private let end: Int
    private let depth: Int
    private let message: String

    public init(_ bytes: UnsafeRawBufferPointer, message: String) {
        base = bytes; offset = 0; end = bytes.count; depth = 0; self.message = message
    }
    private init(base: UnsafeRawBufferPointer, offset: Int, end: Int, depth: Int, message: String) {
        self.base = base; self.offset = offset; self.end = end; self.depth = depth; self.message = message
    }

    /// Whether every byte of this reader's range was consumed.
    var atEnd: Bool { offset >= end }

    func malformed(_ what: String) -> WireError { WireError("malformed \(message): \(what)") }

    /// Decodes every field up to the end of this reader's range into `m`, skipping unknown fields.
    public mutating func decodeFields<M: WireMessage>(into m: inout M) throws(WireError) {
        while offset < end {
            let key = try varint()
            guard key >> 3 != 0, key >> 3 <= 0x1FFF_FFFF else { throw malformed("field number \(key >> 3) at byte \(offset) is not a valid field number") }
            guard let wt = ProtoWireType(rawValue: UInt32(key & 7)), wt != .startGroup, wt != .endGroup else {
                throw malformed("wire type \(key & 7) of field \(key >> 3) is not allowed (groups and types 6-7 are refused)")
            }
            if try !m.decodeField(number: UInt32(key >> 3), wireType: wt, from: &self) { try skip(wt, field: key >> 3) }
        }
    }

    // MARK: primitives

    mutating func varint() throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw malformed("truncated varint") }
            let b = base[offset]
            offset += 1
            if shift == 63 && b > 1 { throw malformed("varint longer than 64 bits") }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw malformed("varint longer than 10 bytes") }
        }
    }
    mutating func fixed64() throws(WireError) -> UInt64 {
        guard end - offset >= 8 else { throw malformed("truncated 64-bit field") }
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
        return UInt64(littleEndian: v)
    }
    mutating func fixed32() throws(WireError) -> UInt32 {
        guard end - offset >= 4 else { throw malformed("truncated 32-bit field") }
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset += 4
        return UInt32(littleEndian: v)
    }
    /// The payload of a length-delimited field, bounds-checked.
    mutating func lengthDelimited() throws(WireError) -> UnsafeRawBufferPointer {
        let n = try varint()
        guard n <= UInt64(end - offset) else { throw malformed("length \(n) runs past the end of the message") }
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<(offset + Int(n))])
        offset += Int(n)
        return slice
    }
    mutating func skip(_ wt: ProtoWireType, field: UInt64) throws(WireError) {
        switch wt {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try lengthDelimited()
        case .startGroup, .endGroup: throw malformed("groups are not supported (field \(field))")
        }
    }
    private func expect(_ wt: ProtoWireType, _ want: ProtoWireType, _ field: String) throws(WireError) {
        guard wt == want else { throw malformed("field \(field) has wire type \(wt.rawValue), expected \(want.rawValue)") }
    }

    // MARK: generic scalar plumbing

    private mutating func readScalar<T>(_ v: inout T, _ wt: ProtoWireType, _ field: String, _ want: ProtoWireType,
                                        _ read: (inout ProtoReader) throws(WireError) -> T) throws(WireError) {
        try expect(wt, want, field)
        v = try read(&self)
    }
    /// Repeated numbers: packed (one length-delimited run) or one element per record, mixed freely.
    private mutating func readRepeatedScalar<T>(_ v: inout [T], _ wt: ProtoWireType, _ field: String, _ want: ProtoWireType, width: Int,
                                                _ read: (inout ProtoReader) throws(WireError) -> T) throws(WireError) {
        if wt == .lengthDelimited {
            let n = try varint()
            guard n <= UInt64(end - offset) else { throw malformed("length \(n) of packed field \(field) runs past the end of the message") }
            if width > 0 && Int(n) % width != 0 {
                throw malformed("packed field \(field) has \(n) bytes, not a multiple of \(width)")
            }
            var sub = ProtoReader(base: base, offset: offset, end: offset + Int(n), depth: depth, message: message)
            offset += Int(n)
            if width > 0 { v.reserveCapacity(v.count + Int(n) / width) }
            while sub.offset < sub.end { v.append(try read(&sub)) }
            return
        }
        try expect(wt, want, field)
        v.append(try read(&self))
    }

    // MARK: field readers (one per proto kind; called by generated code)

    public mutating func readUInt64(_ v: inout UInt64, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in try r.varint() } }
    public mutating func readInt64(_ v: inout Int64, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in Int64(bitPattern: try r.varint()) } }
    public mutating func readUInt32(_ v: inout UInt32, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in UInt32(truncatingIfNeeded: try r.varint()) } }
    public mutating func readInt32(_ v: inout Int32, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in Int32(truncatingIfNeeded: try r.varint()) } }
    public mutating func readSInt32(_ v: inout Int32, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in Self.unzigzag32(try r.varint()) } }
    public mutating func readSInt64(_ v: inout Int64, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in Self.unzigzag64(try r.varint()) } }
    public mutating func readBool(_ v: inout Bool, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in try r.varint() != 0 } }
    public mutating func readFixed64(_ v: inout UInt64, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed64) { (r: inout ProtoReader) throws(WireError) in try r.fixed64() } }
    public mutating func readSFixed64(_ v: inout Int64, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed64) { (r: inout ProtoReader) throws(WireError) in Int64(bitPattern: try r.fixed64()) } }
    public mutating func readDouble(_ v: inout Double, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed64) { (r: inout ProtoReader) throws(WireError) in Double(bitPattern: try r.fixed64()) } }
    public mutating func readFixed32(_ v: inout UInt32, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed32) { (r: inout ProtoReader) throws(WireError) in try r.fixed32() } }
    public mutating func readSFixed32(_ v: inout Int32, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed32) { (r: inout ProtoReader) throws(WireError) in Int32(bitPattern: try r.fixed32()) } }
    public mutating func readFloat(_ v: inout Float, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .fixed32) { (r: inout ProtoReader) throws(WireError) in Float(bitPattern: try r.fixed32()) } }
    public mutating func readEnum<E: ProtoEnum>(_ v: inout E, _ wt: ProtoWireType, field: String) throws(WireError) { try readScalar(&v, wt, field, .varint) { (r: inout ProtoReader) throws(WireError) in E(rawValue: Int32(truncatingIfNeeded: try r.varint())) } }

    public mutating func readRepeatedUInt64(_ v: inout [UInt64], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in try r.varint() } }
    public mutating func readRepeatedInt64(_ v: inout [Int64], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in Int64(bitPattern: try r.varint()) } }
    public mutating func readRepeatedUInt32(_ v: inout [UInt32], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in UInt32(truncatingIfNeeded: try r.varint()) } }
    public mutating func readRepeatedInt32(_ v: inout [Int32], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in Int32(truncatingIfNeeded: try r.varint()) } }
    public mutating func readRepeatedSInt32(_ v: inout [Int32], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in Self.unzigzag32(try r.varint()) } }
    public mutating func readRepeatedSInt64(_ v: inout [Int64], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in Self.unzigzag64(try r.varint()) } }
    public mutating func readRepeatedBool(_ v: inout [Bool], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in try r.varint() != 0 } }
    public mutating func readRepeatedFixed64(_ v: inout [UInt64], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed64, width: 8) { (r: inout ProtoReader) throws(WireError) in try r.fixed64() } }
    public mutating func readRepeatedSFixed64(_ v: inout [Int64], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed64, width: 8) { (r: inout ProtoReader) throws(WireError) in Int64(bitPattern: try r.fixed64()) } }
    public mutating func readRepeatedDouble(_ v: inout [Double], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed64, width: 8) { (r: inout ProtoReader) throws(WireError) in Double(bitPattern: try r.fixed64()) } }
    public mutating func readRepeatedFixed32(_ v: inout [UInt32], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed32, width: 4) { (r: inout ProtoReader) throws(WireError) in try r.fixed32() } }
    public mutating func readRepeatedSFixed32(_ v: inout [Int32], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed32, width: 4) { (r: inout ProtoReader) throws(WireError) in Int32(bitPattern: try r.fixed32()) } }
    public mutating func readRepeatedFloat(_ v: inout [Float], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .fixed32, width: 4) { (r: inout ProtoReader) throws(WireError) in Float(bitPattern: try r.fixed32()) } }
    public mutating func readRepeatedEnum<E: ProtoEnum>(_ v: inout [E], _ wt: ProtoWireType, field: String) throws(WireError) { try readRepeatedScalar(&v, wt, field, .varint, width: 0) { (r: inout ProtoReader) throws(WireError) in E(rawValue: Int32(truncatingIfNeeded: try r.varint())) } }

    /// A string field: must be valid UTF-8 (proto3 requires it); embedded NULs are kept byte for byte.
    public mutating func readString(_ v: inout String, _ wt: ProtoWireType, field: String) throws(WireError) {
        try expect(wt, .lengthDelimited, field)
        v = try utf8(try lengthDelimited(), field)
    }
    public mutating func readRepeatedString(_ v: inout [String], _ wt: ProtoWireType, field: String) throws(WireError) {
        try expect(wt, .lengthDelimited, field)
        v.append(try utf8(try lengthDelimited(), field))
    }
    private func utf8(_ bytes: UnsafeRawBufferPointer, _ field: String) throws(WireError) -> String {
        guard let s = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw malformed("string field \(field) is not valid UTF-8")
        }
        return s
    }
    public mutating func readBytes(_ v: inout [UInt8], _ wt: ProtoWireType, field: String) throws(WireError) {
        try expect(wt, .lengthDelimited, field)
        v = Array(try lengthDelimited())
    }
    public mutating func readRepeatedBytes(_ v: inout [[UInt8]], _ wt: ProtoWireType, field: String) throws(WireError) {
        try expect(wt, .lengthDelimited, field)
        v.append(Array(try lengthDelimited()))
    }
    /// A nested message; a second occurrence merges into the first (protobuf semantics).
    public mutating func readMessage<M: WireMessage>(_ v: inout M?, _ wt: ProtoWireType, field: String) throws(WireError) {
        var m = v ?? M()
        try readNested(&m, wt, field)
        v = m
    }
    public mutating func readRepeatedMessage<M: WireMessage>(_ v: inout [M], _ wt: ProtoWireType, field: String) throws(WireError) {
        var m = M()
        try readNested(&m, wt, field)
        v.append(m)
    }
    private mutating func readNested<M: WireMessage>(_ m: inout M, _ wt: ProtoWireType, _ field: String) throws(WireError) {
        try expect(wt, .lengthDelimited, field)
        guard depth < Self.maxDepth else { throw malformed("messages nested deeper than \(Self.maxDepth) at field \(field)") }
        let n = try varint()
        guard n <= UInt64(end - offset) else { throw malformed("length \(n) of field \(field) runs past the end of the message") }
        var sub = ProtoReader(base: base, offset: offset, end: offset + Int(n), depth: depth + 1, message: message)
        try sub.decodeFields(into: &m)
        offset += Int(n)
    }

    @inline(__always) static func unzigzag32(_ v: UInt64) -> Int32 {
        let u = UInt32(truncatingIfNeeded: v)
        return Int32(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }
    @inline(__always) static func unzigzag64(_ v: UInt64) -> Int64 { Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1))) }
}

/// Canonical protobuf writer into a growable buffer: proto3 default values are omitted, repeated numbers
/// are packed. Not thread-safe; one per encode.
public struct ProtoWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    @inline(__always) mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    @inline(__always) mutating func tag(_ field: Int, _ wt: ProtoWireType) { varint(UInt64(field) << 3 | UInt64(wt.rawValue)) }
    @inline(__always) mutating func fixed64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    @inline(__always) mutating func fixed32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func lengthDelimited(_ field: Int, _ payload: UnsafeRawBufferPointer) {
        tag(field, .lengthDelimited); varint(UInt64(payload.count)); bytes.append(contentsOf: payload)
    }
    private mutating func packed<T>(_ field: Int, _ values: [T], _ write: (inout ProtoWriter, T) -> Void) {
        guard !values.isEmpty else { return }
        var body = ProtoWriter()
        for v in values { write(&body, v) }
        body.bytes.withUnsafeBytes { lengthDelimited(field, $0) }
    }
    @inline(__always) static func zigzag32(_ v: Int32) -> UInt64 { UInt64(UInt32(bitPattern: (v << 1) ^ (v >> 31))) }
    @inline(__always) static func zigzag64(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    public mutating func writeUInt64(_ f: Int, _ v: UInt64) { if v != 0 { tag(f, .varint); varint(v) } }
    public mutating func writeInt64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .varint); varint(UInt64(bitPattern: v)) } }
    public mutating func writeUInt32(_ f: Int, _ v: UInt32) { if v != 0 { tag(f, .varint); varint(UInt64(v)) } }
    public mutating func writeInt32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .varint); varint(UInt64(bitPattern: Int64(v))) } }
    public mutating func writeSInt32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .varint); varint(Self.zigzag32(v)) } }
    public mutating func writeSInt64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .varint); varint(Self.zigzag64(v)) } }
    public mutating func writeBool(_ f: Int, _ v: Bool) { if v { tag(f, .varint); varint(1) } }
    public mutating func writeFixed64(_ f: Int, _ v: UInt64) { if v != 0 { tag(f, .fixed64); fixed64(v) } }
    public mutating func writeSFixed64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .fixed64); fixed64(UInt64(bitPattern: v)) } }
    public mutating func writeDouble(_ f: Int, _ v: Double) { if v.bitPattern != 0 { tag(f, .fixed64); fixed64(v.bitPattern) } }
    public mutating func writeFixed32(_ f: Int, _ v: UInt32) { if v != 0 { tag(f, .fixed32); fixed32(v) } }
    public mutating func writeSFixed32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .fixed32); fixed32(UInt32(bitPattern: v)) } }
    public mutating func writeFloat(_ f: Int, _ v: Float) { if v.bitPattern != 0 { tag(f, .fixed32); fixed32(v.bitPattern) } }
    public mutating func writeEnum<E: ProtoEnum>(_ f: Int, _ v: E) { if v.rawValue != 0 { tag(f, .varint); varint(UInt64(bitPattern: Int64(v.rawValue))) } }
    public mutating func writeString(_ f: Int, _ v: String) {
        guard !v.isEmpty else { return }
        var s = v
        s.withUTF8 { lengthDelimited(f, UnsafeRawBufferPointer($0)) }
    }
    public mutating func writeBytes(_ f: Int, _ v: [UInt8]) { if !v.isEmpty { v.withUnsafeBytes { lengthDelimited(f, $0) } } }
    public mutating func writeMessage<M: WireMessage>(_ f: Int, _ v: M?) {
        guard let v else { return }
        var body = ProtoWriter()
        v.encode(to: &body)
        body.bytes.withUnsafeBytes { lengthDelimited(f, $0) }
    }

    public mutating func writeRepeatedUInt64(_ f: Int, _ v: [UInt64]) { packed(f, v) { $0.varint($1) } }
    public mutating func writeRepeatedInt64(_ f: Int, _ v: [Int64]) { packed(f, v) { $0.varint(UInt64(bitPattern: $1)) } }
    public mutating func writeRepeatedUInt32(_ f: Int, _ v: [UInt32]) { packed(f, v) { $0.varint(UInt64($1)) } }
    public mutating func writeRepeatedInt32(_ f: Int, _ v: [Int32]) { packed(f, v) { $0.varint(UInt64(bitPattern: Int64($1))) } }
    public mutating func writeRepeatedSInt32(_ f: Int, _ v: [Int32]) { packed(f, v) { $0.varint(Self.zigzag32($1)) } }
    public mutating func writeRepeatedSInt64(_ f: Int, _ v: [Int64]) { packed(f, v) { $0.varint(Self.zigzag64($1)) } }
    public mutating func writeRepeatedBool(_ f: Int, _ v: [Bool]) { packed(f, v) { $0.varint($1 ? 1 : 0) } }
    public mutating func writeRepeatedFixed64(_ f: Int, _ v: [UInt64]) { packed(f, v) { $0.fixed64($1) } }
    public mutating func writeRepeatedSFixed64(_ f: Int, _ v: [Int64]) { packed(f, v) { $0.fixed64(UInt64(bitPattern: $1)) } }
    public mutating func writeRepeatedDouble(_ f: Int, _ v: [Double]) { packed(f, v) { $0.fixed64($1.bitPattern) } }
    public mutating func writeRepeatedFixed32(_ f: Int, _ v: [UInt32]) { packed(f, v) { $0.fixed32($1) } }
    public mutating func writeRepeatedSFixed32(_ f: Int, _ v: [Int32]) { packed(f, v) { $0.fixed32(UInt32(bitPattern: $1)) } }
    public mutating func writeRepeatedFloat(_ f: Int, _ v: [Float]) { packed(f, v) { $0.fixed32($1.bitPattern) } }
    public mutating func writeRepeatedEnum<E: ProtoEnum>(_ f: Int, _ v: [E]) { packed(f, v) { $0.varint(UInt64(bitPattern: Int64($1.rawValue))) } }
    public mutating func writeRepeatedString(_ f: Int, _ v: [String]) {
        for s in v { var s = s; s.withUTF8 { lengthDelimited(f, UnsafeRawBufferPointer($0)) } }
    }
    public mutating func writeRepeatedBytes(_ f: Int, _ v: [[UInt8]]) { for b in v { b.withUnsafeBytes { lengthDelimited(f, $0) } } }
    public mutating func writeRepeatedMessage<M: WireMessage>(_ f: Int, _ v: [M]) {
        for m in v {
            var body = ProtoWriter()
            m.encode(to: &body)
            body.bytes.withUnsafeBytes { lengthDelimited(f, $0) }
        }
    }
}
