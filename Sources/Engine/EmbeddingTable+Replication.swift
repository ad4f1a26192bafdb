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
    /// The last whole-table rewrite's sequence, and the sparsity schedule (see ReadLogResponse).
    public var rewriteSequence: UInt64 = 0
    public var sparsityRound: UInt32 = 0
    public var sparsityStepSequence: UInt64 = 0

    public init(sequences: [UInt64], payloads: [[UInt8]], durableSequence: UInt64, logStart: UInt64, incarnation: UInt64,
                rowsGeneration: UInt64, rewriteSequence: UInt64, sparsityRound: UInt32, sparsityStepSequence: UInt64) {
        self.sequences = sequences; self.payloads = payloads; self.durableSequence = durableSequence; self.logStart = logStart
        self.incarnation = incarnation; self.rowsGeneration = rowsGeneration; self.rewriteSequence = rewriteSequence
        self.sparsityRound = sparsityRound; self.sparsityStepSequence = sparsityStepSequence
    }
}

/// Replication (see REPLICATION in the proto): a primary serves pages of its update log; a follower applies
/// them with the replay code of crash recovery and logs them under the primary's sequence numbers, so its
/// rows are bitwise equal to the primary's at the same sequence.
extension EmbeddingTable {
    /// A follower keeps the records it has not read yet for this long after its last read, up to this many
    /// bytes of log per table (then it copies the stored rows again).
    static let followerRetentionSeconds: Double = 120
    static let followerRetentionBytes: UInt64 = 1 << 30

    /// Deletes the log segments a checkpoint through `target` covers, except those a follower that read the
    /// log recently still needs (within `followerRetentionSeconds` and `followerRetentionBytes`).
    func trimLog(through target: UInt64) {
        var through = target
        if let p = followerPosition.withLock({ $0 }), Date().timeIntervalSince(p.at) < Self.followerRetentionSeconds,
           log.totalBytes < Self.followerRetentionBytes {
            through = min(through, p.after)
        }
        log.deleteSegments(through: through)
    }

    /// Notes that a follower read the log after `after` (it needs every record after it).
    func noteFollowerRead(after: UInt64) { followerPosition.withLock { $0 = (after, Date()) } }

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
    /// records (rows whose sequence covers a push are left alone; an operation runs the code that first ran
    /// it). All durable on return (one wait for the last push, so the log writes them as one group). Returns
    /// the records applied.
    @discardableResult
    func applyReplicated(_ records: [(seq: UInt64, payload: [UInt8])]) throws(EngineError) -> Int {
        try checkHealthy()
        let dim = spec.dim
        var buffers: [UnsafeMutableRawBufferPointer] = []
        var applied = 0, pushes = 0, rows = 0
        var last: UInt64 = 0
        // The log copies queued records from `buffers` when it writes them: they are freed only after the
        // last enqueued record is written, also when a later record of the page is refused.
        defer {
            if applied > 0 { try? log.waitDurable(last) }
            buffers.forEach { $0.deallocate() }
        }
        for (seq, payload) in records {
            if payload.withUnsafeBytes({ TableOperation.isOperation($0) }) {
                // An operation: applied (and logged) alone, after the pushes before it are durable.
                guard seq > lastSequence else { continue }
                let op: TableOperation
                switch payload.withUnsafeBytes({ TableOperation.decode($0) }) {
                case .success(let o): op = o
                case .failure(let why): throw .malformed("replicated record \(seq) of '\(spec.name)' \(why.message)")
                }
                try applyOperation(op, .replicated(seq))
                applied += 1; last = seq
                continue
            }
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
            let took: Bool = withCommitApplied { state in
                guard seq > state.lastSeq else { return false }
                state.lastSeq = seq
                log.enqueue(UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: base, count: payload.count)]), seq: seq)
                applyPinned(pins, gradients: grads, seq: seq, replay: true)
                if let requestID { state.ledger.record(requestID, rows: count) }
                return true
            }
            if took { applied += 1; pushes += 1; rows += count; last = seq }
        }
        guard applied > 0 else { return 0 }
        do { try log.waitDurable(last) } catch { throw poison(error) }
        counters.pushes.add(UInt64(pushes), ordering: .relaxed)
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

    /// Replication bootstrap done: the table takes over the primary's side state (sparsity schedule and last
    /// rewrite from `head`, the DNIS state `fields`; items were copied already) and numbering continues after
    /// max(log start, last rewrite) (a copy read after a rewrite holds it); a checkpoint records it.
    func finishReplicaBootstrap(head: ReplicationPage, dnis fields: DnisStateFields?) throws(EngineError) {
        var side = TableSideState(sparsityRound: head.sparsityRound, sparsityStepSequence: head.sparsityStepSequence, rewriteSequence: head.rewriteSequence)
        if let fields, let d = dnis {
            guard fields.alpha.count == d.config.blocks * spec.dim else {
                throw .malformed("the primary's DNIS state of '\(spec.name)' has \(fields.alpha.count) alpha values, expected \(d.config.blocks * spec.dim)")
            }
            var next = DnisState(blocks: d.config.blocks, dim: spec.dim)
            next.pruned = fields.pruned; next.version = fields.version; next.alpha = fields.alpha
            next.threshold = fields.threshold; next.assignmentRound = fields.assignmentRound
            side.dnis = Data(next.encoded)
        }
        try adoptSideState(side)
        try continueAfter(max(head.logStart, head.rewriteSequence))
    }

    /// Numbering continues after `base` (copied rows hold every update through it); a checkpoint records it.
    func continueAfter(_ base: UInt64) throws(EngineError) {
        withCommitApplied { state in
            if state.lastSeq < base { state.lastSeq = base; log.resume(after: base) }
        }
        try checkpoint()
    }
}
