import Foundation
import Vocabulary
import Storage

/// Durable update-log records of a table after a sequence (ReadLog's answer). Invariant: `sequences` is
/// ascending, every element is in (after, durableSequence], and `payloads[i]` is the record of `sequences[i]`.
public struct ReplicationPage: Sendable {
    public var sequences: [UInt64]
    public var payloads: [[UInt8]]
    public var durableSequence: UInt64
    public var logStart: UInt64
    /// Changes when the table is dropped and created again.
    public var incarnation: UInt64
    /// Moves when rows were written outside the log (imports): a follower copies the stored rows again.
    public var rowsGeneration: UInt64 = 0
}

/// Replication (see REPLICATION in the proto): a primary serves pages of its update log; a follower applies
/// them with the replay code of crash recovery and logs them under the primary's sequence numbers, so its
/// rows are bitwise equal to the primary's at the same sequence.
extension EmbeddingTable {
    /// Whether the update log holds everything that changes this table's rows (no table-kind operations,
    /// semantic registrations or evictions that bypass it): such tables are replicated.
    var replicable: Bool { spec.semantic == nil && spec.sparsity == nil && spec.dnis == nil && spec.eviction == nil }

    /// The last applied sequence.
    var lastSequence: UInt64 { commit.withLock { $0.lastSeq } }

    /// A page of durable log records after `after` (LOG_TRUNCATED when checkpoints trimmed past it).
    func readLog(after: UInt64, maxBytes: Int) throws(EngineError) -> LogPage {
        try checkHealthy()
        guard let page = log.read(after: after, maxBytes: maxBytes) else {
            throw .logTruncated(table: spec.name, after: after, logStart: log.logStart)
        }
        return page
    }

    /// Applies a primary's log records (ascending `seq`, payloads as logged): each one this table already
    /// holds is skipped, the others are logged here under the same sequence and applied like replayed
    /// records (rows whose sequence covers one are left alone). All durable on return (one wait for the
    /// last, so the log writes them as one group). Returns the records applied.
    @discardableResult
    func applyReplicated(_ records: [(seq: UInt64, payload: [UInt8])]) throws(EngineError) -> Int {
        try checkHealthy()
        let dim = spec.dim
        var buffers: [UnsafeMutableRawBufferPointer] = []
        var applied = 0, rows = 0
        var last: UInt64 = 0
        // The log copies queued records from `buffers` when it writes them: they are freed only after the
        // last enqueued record is written, also when a later record of the page is refused.
        defer {
            if applied > 0 { try? log.waitDurable(last) }
            buffers.forEach { $0.deallocate() }
        }
        for (seq, payload) in records {
            // The payload stays allocated until the log has written it (the log copies from it).
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(8, payload.count), alignment: 16)
            buffers.append(bytes)
            payload.withUnsafeBytes { bytes.copyMemory(from: $0) }
            let base = bytes.baseAddress!
            let push: LoggedPush
            switch LoggedPush.decode(UnsafeRawBufferPointer(start: base, count: payload.count), dim: dim) {
            case .success(let p): push = p
            case .failure(let why): throw .malformed("replicated record \(seq) of '\(spec.name)' \(why.message)")
            }
            defer { push.deallocate() }
            let count = push.count, keys = push.keys, grads = push.gradients, requestID = push.requestID
            let pins = try pinRows(UnsafeBufferPointer(rebasing: keys[0..<count]))
            defer { unpin(pins) }
            let took: Bool = commit.withLock { state in
                guard seq > state.lastSeq else { return false }
                state.lastSeq = seq
                log.enqueue(UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: base, count: payload.count)]), seq: seq)
                applyPinned(pins, gradients: grads, seq: seq, replay: true)
                if let requestID { state.ledger.record(requestID, rows: count) }
                return true
            }
            if took { applied += 1; rows += count; last = seq }
        }
        guard applied > 0 else { return 0 }
        do { try log.waitDurable(last) } catch {
            let reason = "\(error)"
            poisoned.withLock { if $0 == nil { $0 = reason } }
            throw .storage("table '\(spec.name)': \(reason); the table refuses updates until the shard restarts")
        }
        counters.pushes.add(UInt64(applied), ordering: .relaxed)
        counters.rowsPushed.add(UInt64(rows), ordering: .relaxed)
        return applied
    }

    /// Replication bootstrap: installs a primary's stored rows verbatim, keeping the sequence each covers,
    /// so records after `base` replayed onto them skip what they already hold. Then the table continues at
    /// `base` (checkpointed there, so a restart replays only what arrives after).
    func installReplicaRows(_ rows: [(key: UInt64, row: [UInt8])]) throws(EngineError) {
        guard !rows.isEmpty else { return }
        let keys = rows.map(\.key)
        guard Set(keys).count == keys.count else { throw .malformed("replicated rows of '\(spec.name)' repeat a row key") }
        try withExclusive { (state, stripes) throws(EngineError) in
            let scratch = RowScratch(rowFloats: spec.rowFloats, count: rows.count)
            try load(keys, into: scratch, stripes)
            for (j, r) in rows.enumerated() {
                do { (scratch.steps[j], scratch.seqs[j]) = try r.row.withUnsafeBytes { try codec.decode($0, into: scratch.row(j)) } } catch {
                    throw .malformed("replicated row \(r.key) of '\(spec.name)': \(error)")
                }
            }
            try installExclusive(keys: keys, rows: scratch, state: &state, stripes, keepSequences: true)
        }
    }

    /// Replication bootstrap done: numbering continues after `base` and a checkpoint records it.
    func finishReplicaBootstrap(base: UInt64) throws(EngineError) {
        commit.withLock { state in
            if state.lastSeq < base { state.lastSeq = base; log.resume(after: base) }
        }
        try checkpoint()
    }
}
