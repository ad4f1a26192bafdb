import Foundation

/// A change to a table other than a push, as it is written to the table's update log (see "Operation
/// records" in the proto's REPLICATION section), so crash recovery and followers apply it at its place in
/// the sequence with the same code. Two sorts:
/// - whole-table rewrites (`sparsityStep`, `dnisAssign`, `dnisPrune`) are logged as their parameters: the
///   computation is a pure function of the rows and the sequence, so re-running it on rows equal at the
///   previous sequence gives bitwise equal rows;
/// - the others carry their result (rows deleted or installed, item codes, the DNIS state) and are applied
///   verbatim, so re-applying one in order is harmless.
/// Invariant: `encoded` starts with `marker`, which no push record can start with (a push's first word is its
/// row count, and a record of 2^32 - 1 rows cannot exist), and `decode(encoded) == self`.
enum TableOperation: Equatable, Sendable {
    case sparsityStep(prune: UInt64, grow: UInt64, round: UInt32)
    case dnisAssign(take: [UInt64])
    case dnisPrune(prune: UInt64, threshold: Float)
    /// The encoded `DnisState` after an alpha step, an alpha set or an adopted state.
    case dnisState([UInt8])
    /// Rows deleted by an eviction pass (a removal record each, stamped with the operation's sequence).
    case removeRows([UInt64])
    /// Rows migrated to this shard, in their stored encoding (installed stamped with the operation's sequence).
    case installRows([MigratedRow])
    /// Every row of these slots deleted (migrated away).
    case dropSlots([UInt16])
    /// Items' semantic-ID codes registered (or replaced): `codes` holds items.count x levels codes, item-major.
    case registerItems(items: [UInt64], codes: [UInt32])

    /// One row in its stored encoding.
    struct MigratedRow: Equatable, Sendable {
        var key: UInt64
        var row: [UInt8]
    }

    static let marker: UInt32 = 0xFFFF_FFFF

    private var kind: UInt32 {
        switch self {
        case .sparsityStep: 1
        case .dnisAssign: 2
        case .dnisPrune: 3
        case .dnisState: 4
        case .removeRows: 5
        case .installRows: 6
        case .dropSlots: 7
        case .registerItems: 8
        }
    }

    /// Whether a log payload is an operation record (else it is a push record).
    static func isOperation(_ payload: UnsafeRawBufferPointer) -> Bool {
        payload.count >= 8 && UInt32(littleEndian: payload.loadUnaligned(as: UInt32.self)) == marker
    }

    /// [marker u32][kind u32][body], little-endian; bodies as in the proto.
    var encoded: [UInt8] {
        var w = ByteWriter()
        w.u32(Self.marker); w.u32(kind)
        switch self {
        case .sparsityStep(let prune, let grow, let round): w.u64(prune); w.u64(grow); w.u32(round)
        case .dnisAssign(let take): w.u32(UInt32(take.count)); take.forEach { w.u64($0) }
        case .dnisPrune(let prune, let threshold): w.u64(prune); w.u32(threshold.bitPattern)
        case .dnisState(let bytes): w.bytes(bytes)
        case .removeRows(let keys): w.u32(UInt32(keys.count)); keys.forEach { w.u64($0) }
        case .installRows(let rows): w.u32(UInt32(rows.count)); rows.forEach { w.u64($0.key); w.bytes($0.row) }
        case .dropSlots(let slots): w.u32(UInt32(slots.count)); slots.forEach { w.u32(UInt32($0)) }
        case .registerItems(let items, let codes):
            w.u32(UInt32(items.count)); items.forEach { w.u64($0) }
            w.u32(UInt32(codes.count)); codes.forEach { w.u32($0) }
        }
        return w.out
    }

    /// The operation in `payload` (which `isOperation`), or why it is malformed.
    static func decode(_ payload: UnsafeRawBufferPointer) -> Result<TableOperation, LoggedPush.Malformed> {
        var r = ByteReader(payload)
        guard r.u32() == marker, let kind = r.u32() else { return .failure(.init(message: "is not an operation record")) }
        let op: TableOperation?
        switch kind {
        case 1:
            if let p = r.u64(), let g = r.u64(), let round = r.u32() { op = .sparsityStep(prune: p, grow: g, round: round) } else { op = nil }
        case 2: op = r.array { $0.u64() }.map { .dnisAssign(take: $0) }
        case 3:
            if let p = r.u64(), let t = r.u32() { op = .dnisPrune(prune: p, threshold: Float(bitPattern: t)) } else { op = nil }
        case 4: op = r.bytes().map { .dnisState($0) }
        case 5: op = r.array { $0.u64() }.map { .removeRows($0) }
        case 6:
            op = r.array { (e: inout ByteReader) -> MigratedRow? in
                guard let k = e.u64(), let row = e.bytes() else { return nil }
                return MigratedRow(key: k, row: row)
            }.map { .installRows($0) }
        case 7: op = r.array { $0.u32().flatMap { $0 <= UInt32(UInt16.max) ? UInt16($0) : nil } }.map { .dropSlots($0) }
        case 8:
            if let items = r.array({ $0.u64() }), let codes = r.array({ $0.u32() }) { op = .registerItems(items: items, codes: codes) } else { op = nil }
        default: return .failure(.init(message: "has unknown operation kind \(kind) (written by a newer version?)"))
        }
        guard let op, r.atEnd else { return .failure(.init(message: "is a truncated or over-long operation record of kind \(kind)")) }
        return .success(op)
    }
}

/// Little-endian appends (operation records).
private struct ByteWriter {
    var out: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    mutating func bytes(_ b: [UInt8]) { u32(UInt32(b.count)); out.append(contentsOf: b) }
}

/// Bounds-checked little-endian reads (operation records): every read is nil past the end.
private struct ByteReader {
    let base: UnsafeRawBufferPointer
    var offset = 0
    init(_ b: UnsafeRawBufferPointer) { base = b }
    var atEnd: Bool { offset == base.count }
    mutating func u32() -> UInt32? {
        guard base.count - offset >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    mutating func u64() -> UInt64? {
        guard base.count - offset >= 8 else { return nil }
        defer { offset += 8 }
        return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    mutating func bytes() -> [UInt8]? {
        guard let n = u32().map(Int.init), base.count - offset >= n else { return nil }
        defer { offset += n }
        return Array(base[offset..<(offset + n)])
    }
    /// A count (u32) then that many elements; the count is checked against the bytes left (each element
    /// takes at least 4), so a hostile count cannot make it allocate.
    mutating func array<T>(_ element: (inout ByteReader) -> T?) -> [T]? {
        guard let n = u32().map(Int.init), n <= (base.count - offset) / 4 else { return nil }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { guard let e = element(&self) else { return nil }; out.append(e) }
        return out
    }
}
