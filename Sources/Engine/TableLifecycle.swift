import Foundation
import Vocabulary

// THE TABLE LIFECYCLE RULE (who holds what while doing what). Every path follows it; the race test in
// Tests/IntegrationTests/LifecycleRaceTests.swift exercises it.
//
// 1. The registry (`ShardEngine.registry`, an NSLock) guards only the name -> table map. It is never held
//    while a table does work.
// 2. Every operation on a table runs inside `ShardEngine.withTable(name)` (or `forEachTable`), which looks
//    the table up and enters its `ActivityGate`. Only inside the gate may code touch the table's column
//    family, its RocksDB properties, its update log or its item store. The background checkpointer enters
//    the gate the same way.
// 3. Drop removes the table from the registry, then closes its gate: new operations fail with UNKNOWN_TABLE,
//    and the drop waits for the operations already inside to leave. Only then are the cache, the log and
//    the column families released. No code path can reach a released handle.
// 4. Each table incarnation has its own identity (`TableIdentity`): column family, log directory and every
//    default-family key include its incarnation number, so a dropped table's leftovers can never be read as
//    a newer table of the same name.
// 5. The engine as a whole is replaced (restore) or closed (shutdown) only when no call is inside it:
//    `ShardHost` counts calls in flight and waits for them; calls arriving meanwhile get UNAVAILABLE
//    (RESTORING or SHUTTING_DOWN).

/// Names of one incarnation of a table in the database. Invariant: two incarnations of the same name
/// share no column family, directory or key. Incarnation 0 is a table created before incarnations existed
/// (its names carry no number).
struct TableIdentity: Sendable, Equatable {
    let name: String
    let incarnation: UInt64

    private var suffix: String { incarnation == 0 ? name : "\(name)#\(incarnation)" }
    var familyName: String { "table." + suffix }
    var itemsFamilyName: String { "items." + suffix }
    var logDirectoryName: String { suffix }
    /// The last checkpoint: its sequence (8 bytes), then the id of its snapshot file when it has one (8 more).
    var markerKey: [UInt8] { Array("checkpoint/\(suffix)".utf8) }
    var ledgerKey: [UInt8] { Array("requests/\(suffix)".utf8) }
    /// The admission sketch saved with the last checkpoint.
    var admissionKey: [UInt8] { Array("admission/\(suffix)".utf8) }
    /// The (sequence, wall clock) samples eviction by time reads, saved with the last checkpoint.
    var clockKey: [UInt8] { Array("clock/\(suffix)".utf8) }
    /// Counts writes of rows that bypass the update log (imports): followers copy the rows again when it moves.
    var rowsGenerationKey: [UInt8] { Array("rowsgen/\(suffix)".utf8) }
    var sparsityKey: [UInt8] { Array("sparsity/\(suffix)".utf8) }
    var dnisKey: [UInt8] { Array("dnis/\(suffix)".utf8) }
    /// The sequence of the last whole-table rewrite operation (u64).
    var rewriteKey: [UInt8] { Array("rewrite/\(suffix)".utf8) }

    /// The registry record of a table ("table/<name>"): magic, incarnation, spec bytes. A legacy record is the
    /// spec bytes alone (incarnation 0).
    static let recordMagic: [UInt8] = Array("EPT2".utf8)
    static func specKey(_ name: String) -> [UInt8] { Array("table/\(name)".utf8) }
    func record(spec: [UInt8]) -> [UInt8] {
        var out = Self.recordMagic
        withUnsafeBytes(of: incarnation.littleEndian) { out.append(contentsOf: $0) }
        return out + spec
    }
    /// (incarnation, spec bytes) of a stored record.
    static func parse(record: UnsafeRawBufferPointer) -> (UInt64, UnsafeRawBufferPointer) {
        if record.count >= 12, Array(record[0..<4]) == recordMagic {
            return (UInt64(littleEndian: record.loadUnaligned(fromByteOffset: 4, as: UInt64.self)), UnsafeRawBufferPointer(rebasing: record[12...]))
        }
        return (0, record)
    }
}

/// Admission of operations to an object that can be closed: `enter` fails once `close` began; `close`
/// waits for every operation inside to `leave`. Thread-safe. Never starves the closer (entry stops at once).
final class ActivityGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var active = 0
    private var closed = false

    /// Enters unless closed; a successful enter must be paired with `leave`.
    func enter() -> Bool {
        condition.lock(); defer { condition.unlock() }
        if closed { return false }
        active += 1
        return true
    }
    func leave() {
        condition.lock(); active -= 1; if active == 0 { condition.broadcast() }; condition.unlock()
    }
    /// Stops entry and waits until no operation is inside. Returns false when it was already closed.
    @discardableResult
    func close() -> Bool {
        condition.lock(); defer { condition.unlock() }
        let first = !closed
        closed = true
        while active > 0 { condition.wait() }
        return first
    }
    var isClosed: Bool { condition.withLock { closed } }
}
