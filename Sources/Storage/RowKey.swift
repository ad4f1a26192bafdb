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

/// The RocksDB key of a removal record (a row deleted by eviction, kept for incremental exports): 0xFE then
/// the row's `RowKey`, so removal records sort after every row and before the stored-row counter (0xFFFF),
/// and row scans, which stop at the first key that is not a `RowKey`, never see them. Value: the table's
/// update-log sequence when the row was removed (u64 LE).
public enum RemovedRowKey {
    public static let prefix: UInt8 = 0xFE
    public static let length = RowKey.length + 1
    public static func encode(slot: UInt16, key: UInt64) -> [UInt8] { [prefix] + RowKey.encode(slot: slot, key: key) }
    /// (slot, key) of a removal record's key, nil for any other key.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> (slot: UInt16, key: UInt64)? {
        guard bytes.count == length, bytes[0] == prefix else { return nil }
        return RowKey.decode(UnsafeRawBufferPointer(rebasing: bytes[1...]))
    }
}

/// Where the parts of a masked row sit in its in-memory form. The memory form is full-width:
/// `[weights (dim)][optimizer state (stateSlots * dim)][growth score (dim, when growthScores)][mask words]
/// [fired words][meta words]`, the mask and fired bitmaps being `wordCount` UInt32 words each stored in
/// Float-sized cells (bit j of word j/32 is entry j), and `metaWords` UInt32 cells of per-row metadata.
/// Invariant: inactive entries hold weight 0 and the optimizer's initial state (`stateFill[slot]`); `fired`
/// is a superset of `mask`. Used by dynamic-sparsity tables (growth scores) and DNIS tables (no scores;
/// meta = frequency count and block).
public struct SparseRowFormat: Sendable, Equatable {
    public let dim: Int
    public let stateSlots: Int
    public let stateFill: [Float]
    public let growthScores: Bool
    public let metaWords: Int
    public init(dim: Int, stateSlots: Int, stateFill: [Float], growthScores: Bool = true, metaWords: Int = 0) {
        precondition(stateFill.count == stateSlots)
        self.dim = dim; self.stateSlots = stateSlots; self.stateFill = stateFill
        self.growthScores = growthScores; self.metaWords = metaWords
    }
    public var wordCount: Int { (dim + 31) / 32 }
    public var scoreOffset: Int { dim * (1 + stateSlots) }
    public var maskOffset: Int { scoreOffset + (growthScores ? dim : 0) }
    public var firedOffset: Int { maskOffset + wordCount }
    public var metaOffset: Int { firedOffset + wordCount }
    /// Floats of the in-memory form.
    public var memoryFloats: Int { metaOffset + metaWords }

    @inline(__always) public func word(_ row: UnsafePointer<Float>, _ offset: Int, _ w: Int) -> UInt32 { row[offset + w].bitPattern }
    @inline(__always) public func isActive(_ row: UnsafePointer<Float>, _ j: Int) -> Bool { word(row, maskOffset, j >> 5) & (1 << UInt32(j & 31)) != 0 }
    @inline(__always) public func hasFired(_ row: UnsafePointer<Float>, _ j: Int) -> Bool { word(row, firedOffset, j >> 5) & (1 << UInt32(j & 31)) != 0 }
    @inline(__always) public func setBit(_ row: UnsafeMutablePointer<Float>, _ offset: Int, _ j: Int, _ on: Bool) {
        var w = row[offset + (j >> 5)].bitPattern
        if on { w |= 1 << UInt32(j & 31) } else { w &= ~(1 << UInt32(j & 31)) }
        row[offset + (j >> 5)] = Float(bitPattern: w)
    }
    @inline(__always) public func meta(_ row: UnsafePointer<Float>, _ i: Int) -> UInt32 { row[metaOffset + i].bitPattern }
    @inline(__always) public func setMeta(_ row: UnsafeMutablePointer<Float>, _ i: Int, _ v: UInt32) { row[metaOffset + i] = Float(bitPattern: v) }
    /// Active entries of a row.
    public func activeCount(_ row: UnsafePointer<Float>) -> Int {
        (0..<wordCount).reduce(0) { $0 + word(row, maskOffset, $1).nonzeroBitCount }
    }
    public func firedCount(_ row: UnsafePointer<Float>) -> Int {
        (0..<wordCount).reduce(0) { $0 + word(row, firedOffset, $1).nonzeroBitCount }
    }
    /// Bytes of the stored form of a row with `active` active entries.
    public func encodedLength(active: Int) -> Int {
        RowCodec.headerLength + 8 * wordCount + 4 * metaWords + 4 * active * (1 + stateSlots) + (growthScores ? 2 * (dim - active) : 0)
    }
}

/// The stored form of a row: a 16-byte header (version, optimizer kind, 2 reserved zero bytes, optimizer
/// step count as little-endian UInt32, sequence number of the last update-log record applied as
/// little-endian UInt64) followed by the body.
///
/// - Dense rows (version 1): `floatCount` little-endian float32 (the weights, then the optimizer's state
///   slots). `encodedLength == 16 + 4 * floatCount`.
/// - Masked rows (version 2, dynamic-sparsity and DNIS tables): the mask and fired bitmaps (`wordCount` LE
///   UInt32 each), the meta words (LE UInt32), then the active entries only: their weights, then each state
///   slot's values for them (float32), then (with growth scores) the scores of the inactive entries as
///   float16. Bytes fall with density: a row of density d costs
///   `16 + 8 * words + 4 * meta + dim * (4 * d * (1 + slots) + 2 * (1 - d) [scores])`.
public struct RowCodec: Sendable {
    public static let version: UInt8 = 1
    public static let sparseVersion: UInt8 = 2
    public static let headerLength = 16
    /// Floats of a row's in-memory form.
    public let floatCount: Int
    public let optimizerTag: UInt8
    public let sparse: SparseRowFormat?

    public init(floatCount: Int, optimizerTag: UInt8) { self.floatCount = floatCount; self.optimizerTag = optimizerTag; sparse = nil }
    public init(sparse: SparseRowFormat, optimizerTag: UInt8) {
        self.sparse = sparse; floatCount = sparse.memoryFloats; self.optimizerTag = optimizerTag
    }
    /// Bytes of the largest stored row (every dense row has exactly this length).
    public var encodedLength: Int {
        guard let f = sparse else { return Self.headerLength + 4 * floatCount }
        return f.encodedLength(active: f.dim)
    }

    /// Encodes a row into `p` (room for `encodedLength` bytes); returns the bytes written.
    @discardableResult
    public func encode(floats: UnsafePointer<Float>, step: UInt32, seq: UInt64, into p: UnsafeMutableRawPointer) -> Int {
        p.storeBytes(of: sparse == nil ? Self.version : Self.sparseVersion, as: UInt8.self)
        p.storeBytes(of: optimizerTag, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: step.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
        guard let f = sparse else {
            // x86-64 and arm64 are little-endian: the float bytes are stored as they are in memory.
            (p + Self.headerLength).copyMemory(from: floats, byteCount: 4 * floatCount)
            return encodedLength
        }
        var o = Self.headerLength
        (p + o).copyMemory(from: floats + f.maskOffset, byteCount: 4 * (2 * f.wordCount + f.metaWords))
        o += 4 * (2 * f.wordCount + f.metaWords)
        for part in 0...f.stateSlots {
            let base = floats + part * f.dim
            for j in 0..<f.dim where f.isActive(floats, j) { p.storeBytes(of: base[j], toByteOffset: o, as: Float.self); o += 4 }
        }
        if f.growthScores {
            for j in 0..<f.dim where !f.isActive(floats, j) {
                p.storeBytes(of: Float16(floats[f.scoreOffset + j]).bitPattern, toByteOffset: o, as: UInt16.self); o += 2
            }
        }
        return o
    }
    public func encode(floats: [Float], step: UInt32, seq: UInt64) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: encodedLength)
        let n = buffer.withUnsafeMutableBytes { b in floats.withUnsafeBufferPointer { encode(floats: $0.baseAddress!, step: step, seq: seq, into: b.baseAddress!) } }
        return Array(buffer.prefix(n))
    }

    /// Decodes into `floats` (floatCount floats) and returns (step, seq); throws a message on a malformed row.
    public func decode(_ bytes: UnsafeRawBufferPointer, into floats: UnsafeMutablePointer<Float>) throws(RowCodecError) -> (step: UInt32, seq: UInt64) {
        guard bytes.count >= Self.headerLength else { throw RowCodecError("row is \(bytes.count) bytes, shorter than its header") }
        let expectedVersion = sparse == nil ? Self.version : Self.sparseVersion
        guard bytes[0] == expectedVersion else { throw RowCodecError("row version \(bytes[0]), table stores version \(expectedVersion)") }
        guard bytes[1] == optimizerTag else {
            throw RowCodecError("row was written by optimizer \(bytes[1]), table uses \(optimizerTag)")
        }
        let header = (UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                      UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        guard let f = sparse else {
            guard bytes.count == encodedLength else {
                throw RowCodecError("row is \(bytes.count) bytes, expected \(encodedLength) (\(floatCount) floats)")
            }
            UnsafeMutableRawPointer(floats).copyMemory(from: bytes.baseAddress! + Self.headerLength, byteCount: 4 * floatCount)
            return header
        }
        let fixed = 4 * (2 * f.wordCount + f.metaWords)
        guard bytes.count >= Self.headerLength + fixed else { throw RowCodecError("sparse row is \(bytes.count) bytes, too short for its bitmaps") }
        UnsafeMutableRawPointer(floats + f.maskOffset).copyMemory(from: bytes.baseAddress! + Self.headerLength, byteCount: fixed)
        let tail = UInt32(f.dim % 32)
        if tail != 0 {
            let spare = ~((UInt32(1) << tail) - 1)
            guard f.word(floats, f.maskOffset, f.wordCount - 1) & spare == 0, f.word(floats, f.firedOffset, f.wordCount - 1) & spare == 0 else {
                throw RowCodecError("sparse row sets bits past dim \(f.dim)")
            }
        }
        let active = f.activeCount(floats)
        guard bytes.count == f.encodedLength(active: active) else {
            throw RowCodecError("sparse row is \(bytes.count) bytes, expected \(f.encodedLength(active: active)) for \(active) active of \(f.dim)")
        }
        var o = Self.headerLength + fixed
        for part in 0...f.stateSlots {
            let base = floats + part * f.dim
            let fill: Float = part == 0 ? 0 : f.stateFill[part - 1]
            for j in 0..<f.dim {
                if f.isActive(floats, j) { base[j] = bytes.loadUnaligned(fromByteOffset: o, as: Float.self); o += 4 } else { base[j] = fill }
            }
        }
        if f.growthScores {
            for j in 0..<f.dim {
                if f.isActive(floats, j) { floats[f.scoreOffset + j] = 0 } else {
                    floats[f.scoreOffset + j] = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self))); o += 2
                }
            }
        }
        return header
    }
}

/// Why a stored row could not be decoded.
public struct RowCodecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
