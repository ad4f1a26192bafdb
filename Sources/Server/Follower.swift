import Foundation
import Engine
import RPC
import EmbedPSWire
import Vocabulary

/// How far a follower's copy of one table is (reported in TableStats on the follower).
public struct TableReplicationState: Sendable {
    /// The primary's incarnation of the table this copy follows (0 before the first page).
    var incarnation: UInt64 = 0
    /// The primary's durable sequence in the last page read.
    var primarySequence: UInt64 = 0
    /// When this follower last held every record the primary had (nil: not yet).
    var caughtUpAt: Date? = nil
    var bootstraps = 0
}

/// A follower's copy loop (see REPLICATION in the proto): one thread that keeps this shard's tables equal
/// to the primary's. Each round it lists the primary's tables (creating, replacing and dropping local ones
/// to match), then for every replicable table reads log pages after its local last sequence and applies
/// them; a table whose needed records were trimmed on the primary (LOG_TRUNCATED), or that is new here, is
/// first copied from the primary's stored rows after a Flush there. Errors talking to the primary are
/// retried every round (the primary may be restarting). Thread-safe; `stop` waits for the thread.
public final class Follower: @unchecked Sendable {
    public let primary: String
    let host: ShardHost
    let channel: Channel
    let metadata: Metadata
    private let lock = NSLock()
    private var states: [String: TableReplicationState] = [:]
    private var stopped = false
    private var lastError: String? = nil
    private let done = DispatchSemaphore(value: 0)
    let log: @Sendable (String) -> Void

    public init(primary: String, host: ShardHost, token: String?, log: @escaping @Sendable (String) -> Void) {
        self.primary = primary; self.host = host; self.log = log
        channel = Channel(ChannelConfiguration(target: primary))
        metadata = token.map { [(key: "authorization", value: "Bearer \($0)")] } ?? []
    }

    public func start() {
        let t = Thread { [self] in
            defer { done.signal() }
            var lastList = Date.distantPast
            var names: [String] = []
            while !isStopped {
                var applied = 0
                do {
                    if Date().timeIntervalSince(lastList) > 0.5 {
                        names = try syncTables()
                        lastList = Date()
                    }
                    for name in names where !isStopped { applied += try copyLog(of: name) }
                    setError(nil)
                } catch {
                    setError("\(error)")
                    lastList = .distantPast
                    Thread.sleep(forTimeInterval: 0.2)
                }
                if applied == 0 { Thread.sleep(forTimeInterval: 0.002) }
            }
        }
        t.name = "follower"
        t.start()
    }

    public func stop() {
        lock.withLock { stopped = true }
        done.wait()
        channel.close()
    }

    private var isStopped: Bool { lock.withLock { stopped } }
    private func setError(_ e: String?) {
        let changed: Bool = lock.withLock { defer { lastError = e }; return lastError != e }
        if changed, let e { log("follower of \(primary): \(e) (retrying)") }
    }

    /// Replication state of `table` for TableStats (nil when unknown).
    public func state(of table: String) -> (replicated: Bool, primarySequence: UInt64, lagSeconds: Double)? {
        lock.withLock {
            states[table].map { s in
                (true, s.primarySequence, s.caughtUpAt.map { Date().timeIntervalSince($0) } ?? -1)
            }
        }
    }

    private func call<Q: WireMessage, A: WireMessage>(_ method: RPCMethod<Q, A>, _ request: Q) throws -> A {
        let reply = try channel.unarySync(method.path, OutgoingMessage(bytes: request.encoded()), metadata: metadata, timeoutMs: 10_000)
        return try reply.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try A(decoding: b) }
    }

    /// Makes the local tables those of the primary (same names, same specs); returns the names.
    private func syncTables() throws -> [String] {
        let names = try call(ShardRPC.listTables, Wire.ListTablesRequest()).tables
        var specs: [String: TableSpec] = [:]
        for name in names {
            guard let w = try call(ShardRPC.describeTable, Wire.DescribeTableRequest(table: name)).stats?.spec else { continue }
            specs[name] = try TableSpec(wire: w)
        }
        try host.withEngine { engine in
            for name in engine.tableNames() where specs[name] == nil {
                _ = try engine.dropTable(name)
                lock.withLock { _ = states.removeValue(forKey: name) }
                log("follower: dropped table '\(name)' (gone on the primary)")
            }
            for (name, spec) in specs.sorted(by: { $0.key < $1.key }) {
                if let local = try? engine.snapshot(of: name).spec, local != spec {
                    _ = try engine.dropTable(name)
                    lock.withLock { _ = states.removeValue(forKey: name) }
                }
                if try engine.createTable(spec) { log("follower: created table '\(name)'") }
                lock.withLock { if states[name] == nil { states[name] = TableReplicationState() } }
            }
        }
        return specs.keys.sorted()
    }

    /// Applies the primary's log pages of `name` until caught up; returns records applied.
    private func copyLog(of name: String) throws -> Int {
        guard lock.withLock({ states[name] != nil }) else { return 0 }
        var applied = 0
        while !isStopped {
            let after = try host.withEngine { try $0.lastSequence(table: name) }
            // Everything through `after` is durable here (applyReplicated returns once it is): the request
            // confirms it, which is what a primary with --ack-replicas 1 waits for.
            let known = lock.withLock { states[name]?.incarnation ?? 0 }
            let page: Wire.ReadLogResponse
            do {
                page = try call(ShardRPC.readLog, Wire.ReadLogRequest(table: name, afterSequence: after, maxBytes: 8 << 20, confirmsThrough: known != 0, incarnation: known))
            } catch let s as RPCStatus {
                let detail = s.trailer(ShardMetadata.errorDetail).flatMap { try? Wire.ErrorDetail(decoding: $0) }
                guard detail?.reason == .logTruncated else { throw s }
                try bootstrap(name)
                continue
            }
            let incarnation = lock.withLock { states[name]?.incarnation ?? 0 }
            if incarnation != 0 && incarnation != page.incarnation {
                // Dropped and created again on the primary between two list rounds: start over.
                try host.withEngine { engine in
                    let spec = try engine.snapshot(of: name).spec
                    _ = try engine.dropTable(name); _ = try engine.createTable(spec)
                }
                lock.withLock { states[name]?.incarnation = 0 }
                continue
            }
            if try host.withEngine({ try $0.rowsGeneration(table: name) }) != page.rowsGeneration {
                // Rows were imported on the primary (outside the log) since the local rows were copied: copy the
                // stored rows again first (the local generation is persisted, so this holds across restarts).
                try bootstrap(name)
                continue
            }
            let records = Array(zip(page.sequences, page.payloads)).map { (seq: $0.0, payload: $0.1) }
            if !records.isEmpty { _ = try host.withEngine { try $0.applyReplicated(table: name, records: records) } }
            applied += page.sequences.count
            let last = page.sequences.last ?? after
            lock.withLock {
                states[name]?.incarnation = page.incarnation
                states[name]?.primarySequence = page.durableSequence
                if last >= page.durableSequence { states[name]?.caughtUpAt = Date() }
            }
            if page.sequences.isEmpty || last >= page.durableSequence { break }
        }
        return applied
    }

    /// Copies the primary's table `name` into an empty local table: its stored rows (after a Flush there, so
    /// they hold every update through the log's start; each keeps its sequence), its items and its DNIS state;
    /// then numbering continues after max(log start, last rewrite) with the sparsity schedule of the head.
    /// A whole-table rewrite on the primary during the copy (rewrite_sequence moved) makes it start over.
    private func bootstrap(_ name: String) throws {
        let started = Date()
        let spec = try host.withEngine { try $0.snapshot(of: name).spec }
        for attempt in 1...Self.copyAttempts where !isStopped {
            try host.withEngine { engine in
                _ = try engine.dropTable(name); _ = try engine.createTable(spec)
            }
            _ = try call(ShardRPC.flush, Wire.FlushRequest(table: name))
            // The head (and its rows generation) is read before the copy: an import during it makes the next
            // page copy again.
            let head = try readHead(name)
            let rows = try copyStoredRows(name, spec)
            if spec.semantic != nil { try copyItems(name) }
            let dnis: DnisStateFields? = spec.dnis == nil ? nil : try {
                let w = try call(ShardRPC.getDnisState, Wire.DnisReportRequest(table: name))
                return (w.pruned, w.alphaVersion, w.alpha, w.threshold, w.assignmentRound)
            }()
            let end = try readHead(name)
            guard end.rewriteSequence == head.rewriteSequence, end.incarnation == head.incarnation else {
                log("follower: '\(name)' was rewritten on the primary while it was copied (attempt \(attempt)); copying again")
                continue
            }
            let page = ReplicationPage(sequences: [], payloads: [], durableSequence: head.durableSequence, logStart: head.logStart,
                                       incarnation: head.incarnation, rowsGeneration: head.rowsGeneration, rewriteSequence: head.rewriteSequence,
                                       sparsityRound: head.sparsityRound, sparsityStepSequence: head.sparsityStepSequence)
            try host.withEngine { engine in
                try engine.finishReplicaBootstrap(table: name, head: page, dnis: dnis)
                try engine.setRowsGeneration(table: name, head.rowsGeneration)
            }
            lock.withLock {
                states[name]?.incarnation = head.incarnation
                states[name]?.bootstraps += 1
            }
            log(String(format: "follower: copied %d stored rows of '%@' from %@ (log from sequence %llu) in %.1f s", rows, name, primary,
                       max(head.logStart, head.rewriteSequence), Date().timeIntervalSince(started)))
            return
        }
        throw RPCStatus(.unavailable, "table '\(name)' was rewritten on the primary during each of \(Self.copyAttempts) copies; trying again")
    }

    static let copyAttempts = 5

    private func readHead(_ name: String) throws -> Wire.ReadLogResponse {
        try call(ShardRPC.readLog, Wire.ReadLogRequest(table: name, afterSequence: UInt64.max, maxBytes: 1))
    }

    /// Copies every stored row of `name` (pages of ReadStoredRows); returns the rows copied.
    private func copyStoredRows(_ name: String, _ spec: TableSpec) throws -> Int {
        let addressing = RowAddressing(spec: spec)
        var rows = 0
        var cursor: (slot: UInt16, key: UInt64)? = nil
        while true {
            var req = Wire.SlotRowsRequest(table: name, slot: UInt32(cursor?.slot ?? 0), limit: 8192)
            if let c = cursor { req.hasAfter = true; req.after = c.key }
            let page = try call(ShardRPC.readStoredRows, req)
            guard page.keys.count == page.rows.count else { throw RPCStatus(.internalError, "ReadStoredRows answered \(page.keys.count) keys and \(page.rows.count) rows") }
            if let last = page.keys.last {
                let batch = Array(zip(page.keys, page.rows)).map { (key: $0.0, row: $0.1) }
                try host.withEngine { try $0.installReplicaRows(table: name, rows: batch) }
                rows += batch.count
                cursor = (addressing.slot(ofRowKey: last), last)
            }
            if page.done || page.keys.isEmpty { return rows }
        }
    }

    /// Copies every registered item of a semantic table (pages of ExportItems).
    private func copyItems(_ name: String) throws {
        var after: UInt64? = nil
        while true {
            var req = Wire.SlotRowsRequest(table: name, limit: 10_000)
            if let after { req.hasAfter = true; req.after = after }
            let page = try call(ShardRPC.exportItems, req)
            guard let last = page.items.last else { return }
            try host.withEngine { try $0.installReplicaItems(table: name, items: page.items, codes: page.codes) }
            after = last
        }
    }
}
