import CXXHash

/// The pinned hash of EmbedPS: XXH64 (libxxhash). Clients in any language must agree with these values;
/// golden vectors in the tests pin them.
public enum EmbedHash {
    public static func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        XXH64(bytes.baseAddress, bytes.count, seed)
    }
    public static func xxh64(_ string: String, seed: UInt64 = 0) -> UInt64 {
        var s = string
        return s.withUTF8 { xxh64(UnsafeRawBufferPointer($0), seed: seed) }
    }
    /// XXH64 of the 8 little-endian bytes of `value`: the algorithm's 8-byte path written out (one round,
    /// then the avalanche) so per-id hashing inlines; tests check it against libxxhash.
    @inlinable @inline(__always) public static func xxh64(_ value: UInt64, seed: UInt64) -> UInt64 {
        let p1: UInt64 = 0x9E37_79B1_85EB_CA87, p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F, p3: UInt64 = 0x1656_67B1_9E37_79F9
        let p4: UInt64 = 0x85EB_CA77_C2B2_AE63, p5: UInt64 = 0x27D4_EB2F_1656_67C5
        var k = value &* p2
        k = ((k << 31) | (k >> 33)) &* p1
        var h = (seed &+ p5 &+ 8) ^ k
        h = ((h << 27) | (h >> 37)) &* p1 &+ p4
        h ^= h >> 33; h = h &* p2
        h ^= h >> 29; h = h &* p3
        h ^= h >> 32
        return h
    }
    /// XXH64 of the 8 little-endian bytes of `value`, computed by libxxhash (the reference for `xxh64`).
    public static func xxh64Reference(_ value: UInt64, seed: UInt64) -> UInt64 {
        var v = value.littleEndian
        return withUnsafeBytes(of: &v) { XXH64($0.baseAddress, 8, seed) }
    }
}

/// Maps a feature id of a table to its row key and slot. Pure function of the table's spec.
/// row_key = id (collision-free) or XXH64(id, hashSeed) mod rowBudget (fixed budget);
/// slot = XXH64(row_key, XXH64(table name)) mod 4096.
public struct RowAddressing: Sendable, Equatable {
    public static let slotCount = 4096
    public let slotSeed: UInt64
    public let hashMode: HashMode
    public let rowBudget: UInt64
    public let hashSeed: UInt64

    public init(spec: TableSpec) {
        slotSeed = EmbedHash.xxh64(spec.name)
        hashMode = spec.hashMode; rowBudget = spec.rowBudget; hashSeed = spec.hashSeed
    }
    @inlinable @inline(__always) public func rowKey(_ id: UInt64) -> UInt64 {
        switch hashMode {
        case .collisionFree: id
        case .fixedBudget: EmbedHash.xxh64(id, seed: hashSeed) % rowBudget
        }
    }
    @inlinable @inline(__always) public func slot(ofRowKey key: UInt64) -> UInt16 {
        UInt16(truncatingIfNeeded: EmbedHash.xxh64(key, seed: slotSeed) % UInt64(Self.slotCount))
    }
}
