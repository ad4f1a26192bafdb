import Foundation
import Vocabulary
import Storage

/// Where a table operation comes from (see `TableOperation`).
enum OperationOrigin: Equatable, Sendable {
    /// Decided on this shard: logged under the next sequence, then applied.
    case local
    /// A record of the primary's log (this shard follows it): logged here under the primary's sequence, then
    /// applied.
    case replicated(UInt64)
    /// A record of this table's own log, met by crash recovery: applied only.
    case replayed(UInt64)
}

/// Operation records (see `TableOperation`): every change to a table that is not a push goes through the
/// update log like a push, so crash recovery and followers see it at its place in the sequence.
extension EmbeddingTable {
    /// Inside an exclusive section: gives `op` its sequence (the next one, or the record's), makes its record
    /// durable in this table's log unless it is being replayed from there, and advances `lastSeq`. Returns the
    /// sequence. The caller applies the operation next; if that fails, it calls `poison` (the record is
    /// logged, so only a restart, which replays it, brings the table back in line).
    func commitOperation(_ op: TableOperation, _ origin: OperationOrigin, _ state: inout CommitState) throws(EngineError) -> UInt64 {
        let seq: UInt64
        switch origin {
        case .local: seq = state.lastSeq + 1
        case .replicated(let s), .replayed(let s):
            guard s > state.lastSeq else { throw .malformed("operation record \(s) of '\(spec.name)' is not after the last applied sequence \(state.lastSeq)") }
            seq = s
        }
        if case .replayed = origin {} else {
            let bytes = op.encoded
            do {
                try bytes.withUnsafeBytes { b in
                    log.enqueue(UpdateLog.Record(parts: [b]), seq: seq)
                    try log.waitDurable(seq)
                }
            } catch { throw poison(error) }
        }
        state.lastSeq = seq
        return seq
    }

    /// Stops the table from accepting updates after a failed log write (or an operation that failed after
    /// its record was logged); a restart recovers from the log. Returns the error to throw.
    func poison(_ error: any Error) -> EngineError {
        let reason = "\(error)"
        poisoned.withLock { if $0 == nil { $0 = reason } }
        return .storage("table '\(spec.name)': \(reason); the table refuses updates until the shard restarts")
    }

    /// Runs the effects of an operation whose record is already logged: a failure poisons the table.
    func afterLogging<R>(_ body: () throws(EngineError) -> R) throws(EngineError) -> R {
        do { return try body() } catch { throw poison(error) }
    }

    /// Applies a logged operation (a primary's record, or one replayed from this table's log) with the same
    /// code that applied it first.
    func applyOperation(_ op: TableOperation, _ origin: OperationOrigin) throws(EngineError) {
        switch op {
        case .sparsityStep(let prune, let grow, let round): _ = try sparsityStep(prune: prune, grow: grow, round: round, origin: origin)
        case .dnisAssign(let take): _ = try dnisAssign(take: take, origin: origin)
        case .dnisPrune(let prune, let threshold): _ = try dnisPrune(prune: prune, threshold: threshold, origin: origin)
        case .dnisState(let bytes):
            let d = try requireDnis()
            guard let next = DnisState(decoding: bytes, blocks: d.config.blocks, dim: spec.dim) else {
                throw .malformed("DNIS state record of '\(spec.name)' has \(bytes.count) bytes")
            }
            try withExclusive { (state, _) throws(EngineError) in try storeDnisState(next, origin, &state) }
        case .removeRows(let keys): try removeRows(keys, origin: origin)
        case .installRows(let rows): try installEncodedRows(rows.map { (key: $0.key, row: $0.row) }, origin: origin)
        case .dropSlots(let slots): _ = try dropSlots(slots, origin: origin)
        case .registerItems(let items, let codes): try registerItems(items, codes: codes, origin: origin)
        }
    }

    /// Inside an exclusive section: logs the DNIS state `next` as an operation and makes it current, durably.
    func storeDnisState(_ next: DnisState, _ origin: OperationOrigin, _ state: inout CommitState) throws(EngineError) {
        _ = try commitOperation(.dnisState(next.encoded), origin, &state)
        try afterLogging { () throws(EngineError) in
            let b = WriteBatch()
            b.put(db.defaultFamily, key: dnisKey, value: next.encoded)
            do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)': \(error)") }
            dnisBox.withLock { $0 = next }
        }
    }

    /// Deletes every row of `keys` still stored (stored and cached copies) with a removal record each, in
    /// one synced batch: a primary's eviction batch applied here (`origin`: logged as an operation, stamped
    /// with its sequence), or the removals of a delta checkpoint being restored (nil: not logged).
    func removeRows(_ keys: [UInt64], origin: OperationOrigin?) throws(EngineError) {
        try withExclusive { (state, stripes) throws(EngineError) in
            try flushAllExclusive(stripes, lastSeq: state.lastSeq)
            var seq = state.lastSeq
            if let origin { seq = try commitOperation(.removeRows(keys), origin, &state) }
            try afterLogging { () throws(EngineError) in
                let scratch = RowScratch(rowFloats: spec.rowFloats, count: keys.count)
                try readStored(keys, into: scratch)
                let stored = keys.indices.filter { scratch.exists[$0] }.map { keys[$0] }
                if !stored.isEmpty { try deleteStoredRows(stored, removedAt: seq, stripes, what: "replicated removal") }
            }
        }
    }

    /// Registers (or replaces) items' codes of a semantic table (`codes`: items.count x levels, checked by
    /// the caller for a local registration), logged as an operation. Durable on return.
    func registerItems(_ items: [UInt64], codes: [UInt32], origin: OperationOrigin) throws(EngineError) {
        guard let store = semantic?.items else { throw .invalidSpec(table: spec.name, message: "the table has no semantic-ID configuration") }
        guard codes.count == items.count * store.levels else {
            throw .malformed("table '\(spec.name)': \(codes.count) codes for \(items.count) items of \(store.levels) levels")
        }
        try withExclusive { (state, _) throws(EngineError) in
            _ = try commitOperation(.registerItems(items: items, codes: codes), origin, &state)
            try afterLogging { () throws(EngineError) in
                do { try store.register(items: items, flat: codes) } catch { throw .storage("table '\(spec.name)' items: \(error)") }
            }
        }
    }

    /// The sequence of the last whole-table rewrite (a sparsity step, DNIS assignment or prune): a follower's
    /// copy of stored rows taken after it holds its effect, so the copy continues after it.
    var lastRewriteSequence: UInt64 { commit.withLock { $0.rewriteSeq } }
}
