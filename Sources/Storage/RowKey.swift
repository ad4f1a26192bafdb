/// The RocksDB key of a row: 2-byte big-endian slot then 8-byte big-endian row key, so keys sort by
/// (slot, row key) and one slot's rows form one contiguous range (scannable and migratable).
public enum RowKey {
    public static let length = 10

    public static func write(slot: UInt16, key: UInt64, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: slot.bigEndian, as: UInt16.self)
        p.storeBytes(of: key.bigEndian, toByteOffset: 2, as: UInt64.self)
    }
    public static func encode(slot: UInt16, key: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: length) { b, n in write(slot: slot, key: key, to: b.baseAddress!); n = length }
    }
    /// (slot, key) of an encoded key, or nil when the length is wrong.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> (slot: UInt16, key: UInt64)? {
        guard bytes.count == length else { return nil }
        return (UInt16(bigEndian: bytes.loadUnaligned(as: UInt16.self)), UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self)))
    }
}

/// The stored form of a row: a 16-byte header (version 1, optimizer kind, 2 reserved zero bytes, optimizer
/// step count as little-endian UInt32, sequence number of the last update-log record applied as
/// little-endian UInt64) followed by `floatCount` little-endian float32 (the weights, then the optimizer's
/// state slots). Invariant: `encodedLength == 16 + 4 * floatCount`.
public struct RowCodec: Sendable {
    public static let version: UInt8 = 1
    public static let headerLength = 16
    public let floatCount: Int
    public let optimizerTag: UInt8

    public init(floatCount: Int, optimizerTag: UInt8) { self.floatCount = floatCount; self.optimizerTag = optimizerTag }
    public var encodedLength: Int { Self.headerLength + 4 * floatCount }

    public func encode(floats: UnsafePointer<Float>, step: UInt32, seq: UInt64, into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: Self.version, as: UInt8.self)
        p.storeBytes(of: optimizerTag, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: step.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
        // x86-64 and arm64 are little-endian: the float bytes are stored as they are in memory.
        (p + Self.headerLength).copyMemory(from: floats, byteCount: 4 * floatCount)
    }
    public func encode(floats: [Float], step: UInt32, seq: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: encodedLength) { b, n in
            floats.withUnsafeBufferPointer { encode(floats: $0.baseAddress!, step: step, seq: seq, into: b.baseAddress!) }
            n = encodedLength
        }
    }

    /// Decodes into `floats` (floatCount floats) and returns (step, seq); throws a message on a malformed row.
    public func decode(_ bytes: UnsafeRawBufferPointer, into floats: UnsafeMutablePointer<Float>) throws(RowCodecError) -> (step: UInt32, seq: UInt64) {
        guard bytes.count == encodedLength else {
            throw RowCodecError("row is \(bytes.count) bytes, expected \(encodedLength) (\(floatCount) floats)")
        }
        guard bytes[0] == Self.version else { throw RowCodecError("unknown row version \(bytes[0])") }
        guard bytes[1] == optimizerTag else {
            throw RowCodecError("row was written by optimizer \(bytes[1]), table uses \(optimizerTag)")
        }
        UnsafeMutableRawPointer(floats).copyMemory(from: bytes.baseAddress! + Self.headerLength, byteCount: 4 * floatCount)
        return (UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}

/// Why a stored row could not be decoded.
public struct RowCodecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
