import Foundation
import RPC
import Engine
import EmbedPSWire
import Vocabulary
import HTTP
import ServiceSupport

extension CheckpointInfo {
    var wire: Wire.CheckpointInfo {
        Wire.CheckpointInfo(name: name, shardIndex: UInt32(shardIndex), shardCount: UInt32(shardCount), shardMapVersion: mapVersion,
                            createdUnixMs: createdUnixMs, tables: tables, bytes: bytes, base: base ?? "")
    }
}

extension TableSnapshot {
    var wire: Wire.TableStats {
        Wire.TableStats(spec: spec.wire, rows: rows, cachedRows: cachedRows, bytesOnDisk: bytesOnDisk, pulls: pulls, pushes: pushes,
                        rowsPulled: rowsPulled, rowsPushed: rowsPushed, dirtyRows: dirtyRows, logBytes: logBytes, checkpoints: checkpoints,
                        cacheCapacityRows: cacheCapacityRows, rowsAdmitted: rowsAdmitted, pushesRefused: pushesRefused, rowsEvicted: rowsEvicted,
                        admissionSketchBytes: admissionSketchBytes, evictionPasses: evictionPasses, lastSequence: lastSequence, snapshotBytes: snapshotBytes)
    }
}

extension ShardHost {
    /// A table's stats with the follower's replication state when this shard is a follower.
    func stats(_ snapshot: TableSnapshot) -> Wire.TableStats {
        var w = snapshot.wire
        if let f = follower, let r = f.state(of: snapshot.spec.name) {
            w.replicated = r.replicated; w.replicationPrimarySequence = r.primarySequence; w.replicationLagSeconds = r.lagSeconds
        }
        return w
    }
}

/// The shard service: decodes each RPC, calls the engine, encodes the answer. Stateless apart from the
/// request meter; thread-safe because the engine is.
public final class ShardService: Sendable {
    public let host: ShardHost
    public let meter = RequestMeter()
    let maxMessageBytes: Int
    let policy: AccessPolicy
    /// Followers' confirmations and the pushes waiting for them (--ack-replicas).
    public let acks: ReplicaAcks
    /// With --etcd: the primary-lease loop (its state in ShardStatus.lease).
    public var leaseKeeper: LeaseKeeper? {
        get { leaseBox.withLock { $0 } }
        set { leaseBox.withLock { $0 = newValue } }
    }
    private let leaseBox = LockedLease()

    public init(host: ShardHost, maxMessageBytes: Int, policy: AccessPolicy = AccessPolicy(), acks: ReplicaAcks = ReplicaAcks(required: 0, timeoutSeconds: 5)) {
        self.host = host; self.maxMessageBytes = maxMessageBytes; self.policy = policy; self.acks = acks
    }

    /// Server settings every shard server needs: every failed status carries an ErrorDetail.
    public static func configure(_ config: inout ServerConfiguration) {
        config.decorateStatus = { $0.withDefaultDetail }
    }

    /// The push request id of a call's metadata, if any (INVALID_ARGUMENT when malformed).
    static func requestID(_ context: ServerCallContext) throws -> RequestID? {
        guard let raw = context.metadata.first(where: { $0.key == ShardMetadata.requestID })?.value else { return nil }
        guard let id = RequestID(hex: raw) else {
            throw RPCStatus(.invalidArgument, .malformed, "\(ShardMetadata.requestID) must be 32 hex digits, got '\(raw.prefix(64))'")
        }
        return id
    }

    /// Registers every method of the shard and health services on `server`.
    public func register(on server: Server) {
        let host = self.host, meter = self.meter, maxBytes = maxMessageBytes, acks = self.acks
        let r = Registrar(server: server, policy: policy, gate: host.gate)
        let replicated = ReplicatedWrites(registrar: r, host: host, acks: acks), replies = replicated.replies

        // Rows.
        r.handleRaw(ShardRPC.pull) { _, message in
            try host.withEngine { engine in
                try Self.serveRows(message, engine: engine, meter: meter, maxBytes: maxBytes, what: "pulling") { table, ids, out in
                    try engine.pull(table: table, ids: ids, into: out)
                }
            }
        }
        r.handleRawDeferred(ShardRPC.push) { context, message, reply in
            let requestID = try Self.requestID(context)
            var table = ""
            let answer = try host.withEngine { engine in
                try Self.applyRows(message, meter: meter) { t, ids, gradients in
                    table = t
                    return try engine.push(table: t, ids: ids, gradientBytes: gradients, requestID: requestID)
                }
            }
            // A retried push (same request id) waits for the table's current point, at or after its own.
            try replies.answer(answer, table: table, reply)
        }
        r.handleRaw(ShardRPC.pullPooled) { _, message in
            try host.withEngine { engine in
                try Self.serveRows(message, engine: engine, meter: meter, maxBytes: maxBytes, what: "pooling") { table, items, out in
                    try engine.pullPooled(table: table, items: items, into: out)
                }
            }
        }
        r.handleRawDeferred(ShardRPC.pushPooled) { context, message, reply in
            let requestID = try Self.requestID(context)
            var table = ""
            let answer = try host.withEngine { engine in
                try Self.applyRows(message, meter: meter) { t, items, gradients in
                    table = t
                    return try engine.pushPooled(table: t, items: items, gradientBytes: gradients, requestID: requestID)
                }
            }
            try replies.answer(answer, table: table, reply)
        }
        r.handleRawDeferred(ShardRPC.importRows) { _, message, reply in
            var table = ""
            let answer = try host.withEngine { engine in
                try Self.applyRows(message, meter: meter) { t, keys, values in table = t; return try engine.importRows(table: t, keys: keys, valueBytes: values) }
            }
            try replies.answer(answer, table: table, reply)
        }
        r.handleRaw(ShardRPC.pullCompact) { _, message in
            let compact = try host.withEngine { engine in
                try message.withUnsafeBytes { bytes in
                    try RowMessageDecoder.withPullRequest(bytes) { req in try engine.pullCompact(table: req.table, ids: req.ids) }
                }
            }
            return OutgoingMessage(bytes: Wire.CompactRowsResponse(dim: UInt32(compact.dim), masks: compact.masks, values: compact.values).encoded())
        }

        // Tables.
        r.handle(ShardRPC.createTable) { _, req in
            guard let wspec = req.spec else { throw RPCStatus(.invalidArgument, .invalidSpec, "CreateTable needs a spec") }
            let spec = try TableSpec(wire: wspec)
            return Wire.CreateTableResponse(created: try host.withEngine { try $0.createTable(spec) })
        }
        r.handle(ShardRPC.describeTable) { _, req in
            try host.withEngine { engine in
                var stats = host.stats(try engine.snapshot(of: req.table))
                if let s = try engine.semanticStats(table: req.table) {
                    stats.semantic = Wire.SemanticStats(items: UInt64(s.items), piecesPerItem: s.piecesPerItem, rowsUsed: UInt64(s.rowsUsed), collisions: UInt64(s.collisions))
                }
                return Wire.DescribeTableResponse(stats: stats)
            }
        }
        r.handle(ShardRPC.listTables) { _, _ in Wire.ListTablesResponse(tables: try host.withEngine { $0.tableNames() }) }
        r.handle(ShardRPC.dropTable) { _, req in Wire.DropTableResponse(dropped: try host.withEngine { try $0.dropTable(req.table) }) }
        r.handle(ShardRPC.shardStatus) { _, _ in try self.status() }
        r.handle(ShardRPC.flush) { _, req in
            try host.withEngine { engine in
                if req.table.isEmpty { try engine.checkpointAll(); return Wire.FlushResponse(tablesFlushed: UInt32(engine.tableNames().count)) }
                try engine.checkpoint(table: req.table)
                return Wire.FlushResponse(tablesFlushed: 1)
            }
        }
        r.handle(ShardRPC.compact) { _, req in
            let (n, before, after) = try host.withEngine { try $0.compact(table: req.table) }
            return Wire.CompactResponse(tablesCompacted: UInt32(n), bytesBefore: before, bytesAfter: after)
        }
        r.handle(ShardRPC.evict) { _, req in
            let (evicted, after) = try host.withEngine { try $0.evict(table: req.table) }
            return Wire.EvictResponse(rowsEvicted: evicted, rowsAfter: after)
        }

        // Semantic tables.
        replicated.handle(ShardRPC.registerItems, table: \.table) { _, req in
            let (registered, total) = try host.withEngine { try $0.registerItems(table: req.table, items: req.items, codes: req.codes) }
            return Wire.RegisterItemsResponse(registered: UInt64(registered), items: UInt64(total))
        }
        r.handle(ShardRPC.exportItems) { _, req in
            let page = try host.withEngine { try $0.itemPage(table: req.table, after: req.hasAfter ? req.after : nil, limit: req.limit == 0 ? 10_000 : Int(req.limit)) }
            return Wire.RegisterItemsRequest(table: req.table, items: page.items, codes: page.codes)
        }

        // Dynamic sparsity.
        r.handle(ShardRPC.sparsityReport) { _, req in
            let x = try host.withEngine { try $0.sparsityReport(table: req.table) }
            return Wire.SparsityReportResponse(rows: x.rows, active: x.active, inactive: x.inactive, fired: x.fired, weightHistogram: x.weightHistogram,
                                               growthHistogram: x.growthHistogram, round: x.round, pushesSinceStep: x.pushesSinceStep,
                                               storedBytes: x.storedBytes, denseBytes: x.denseBytes, activePerNewRow: x.activePerNewRow)
        }
        replicated.handle(ShardRPC.sparsityStep, table: \.table) { _, req in
            let x = try host.withEngine { try $0.sparsityStep(table: req.table, prune: req.prune, grow: req.grow, round: req.round) }
            return Wire.SparsityStepResponse(pruned: x.pruned, grown: x.grown, active: x.active, round: x.round, rows: x.rows)
        }

        // DNIS.
        r.handle(ShardRPC.dnisReport) { _, req in
            let x = try host.withEngine { try $0.dnisReport(table: req.table) }
            return Wire.DnisReportResponse(pruned: x.pruned, alphaVersion: x.alphaVersion, alpha: x.alpha,
                                           blocks: x.blocks.map { Wire.DnisBlockStats(rows: $0.rows, active: $0.active, storedBytes: $0.storedBytes, denseBytes: $0.denseBytes) },
                                           frequencyHistogram: x.frequencyHistogram, magnitudeHistogram: x.magnitudeHistogram, assignmentRound: x.assignmentRound)
        }
        replicated.handle(ShardRPC.dnisAssignBlocks, table: \.table) { _, req in
            Wire.DnisAssignResponse(rowsPerBlock: try host.withEngine { try $0.dnisAssign(table: req.table, take: req.take) })
        }
        replicated.handle(ShardRPC.dnisAlpha, table: \.table) { _, req in
            let (version, alpha, pruned) = try host.withEngine {
                try $0.dnisAlpha(table: req.table, gradient: req.gradient, setVersion: req.setVersion, setAlpha: req.setAlpha)
            }
            return Wire.DnisAlphaResponse(version: version, alpha: alpha, pruned: pruned)
        }
        r.handleRaw(ShardRPC.dnisAlphaGradient) { _, message in
            let (partial, rows) = try host.withEngine { engine in
                try message.withUnsafeBytes { bytes in
                    try RowMessageDecoder.withPushRequest(bytes) { req in
                        (try engine.dnisAlphaGradient(table: req.table, ids: req.ids, gradientBytes: req.gradientBytes), req.ids.count)
                    }
                }
            }
            return OutgoingMessage(bytes: Wire.DnisAlphaGradientResponse(partial: partial, rows: UInt64(rows)).encoded())
        }
        replicated.handle(ShardRPC.dnisPrune, table: \.table) { _, req in
            let x = try host.withEngine { try $0.dnisPrune(table: req.table, prune: req.prune, threshold: req.threshold) }
            return Wire.DnisPruneResponse(pruned: x.pruned, active: x.active, rows: x.rows)
        }
        r.handle(ShardRPC.getDnisState) { _, req in
            let st = try host.withEngine { try $0.dnisState(table: req.table) }
            return Wire.DnisState(table: req.table, pruned: st.pruned, alphaVersion: st.version, alpha: st.alpha, threshold: st.threshold, assignmentRound: st.assignmentRound)
        }
        replicated.handle(ShardRPC.setDnisState, table: \.table) { _, req in
            let adopted = try host.withEngine {
                try $0.adoptDnisState(table: req.table, pruned: req.pruned, version: req.alphaVersion, alpha: req.alpha,
                                      threshold: req.threshold, assignmentRound: req.assignmentRound)
            }
            return Wire.MigrationResponse(rows: adopted ? 1 : 0)
        }

        // Export.
        r.handle(ShardRPC.exportRows) { _, req in
            var cursor: (slot: UInt16, key: UInt64)? = nil
            if req.hasCursor {
                guard req.afterSlot < UInt32(RowAddressing.slotCount) else {
                    throw RPCStatus(.invalidArgument, .malformed, "export cursor slot \(req.afterSlot) is not a slot (0..4095)")
                }
                cursor = (UInt16(req.afterSlot), req.afterKey)
            }
            let (dim, page) = try host.withEngine {
                try $0.exportRows(table: req.table, after: cursor, limit: req.limit == 0 ? 4096 : Int(req.limit), since: req.sinceSequence, removed: req.removed)
            }
            var w = Wire.ExportRowsResponse(dim: UInt32(dim), keys: page.keys, values: page.values.withUnsafeBytes { Array($0) }, done: page.next == nil,
                                            version: page.version)
            if let n = page.next { w.nextSlot = UInt32(n.slot); w.nextKey = n.key }
            return w
        }

        // Live resharding.
        r.handle(ShardRPC.getShardMap) { _, _ in
            try host.withEngine { engine in
                let spec = engine.shardMapSpec()
                return Wire.ShardMapResponse(specJson: String(decoding: try spec.encoded(), as: UTF8.self), version: spec.version,
                                             movingSlots: engine.migratingSlots.map { UInt32($0) })
            }
        }
        r.handle(ShardRPC.setShardMap) { _, req in
            let spec: ClusterSpec
            do { spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(req.specJson.utf8)) } catch {
                throw RPCStatus(.invalidArgument, .invalidSpec, "SetShardMap: spec_json is not a cluster spec: \(error)")
            }
            let answer = try host.withEngine { engine in
                try engine.adoptShardMap(spec)
                let now = engine.shardMapSpec()
                return Wire.ShardMapResponse(specJson: String(decoding: try now.encoded(), as: UTF8.self), version: now.version)
            }
            try host.refreshWriteRole()  // a map naming a newer epoch for this shard fences it
            return answer
        }
        r.handle(ShardRPC.promote) { _, req in
            let spec: ClusterSpec
            do { spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(req.specJson.utf8)) } catch {
                throw RPCStatus(.invalidArgument, .invalidSpec, "Promote: spec_json is not a cluster spec: \(error)")
            }
            try host.promote(epoch: req.epoch, spec: spec)
            return try host.withEngine { engine in Wire.PromoteResponse(epoch: engine.primaryEpoch, tables: engine.snapshots().map { host.stats($0) }) }
        }
        r.handle(ShardRPC.beginMigration) { _, req in
            let slots = try Self.slots(req.slots)
            if req.incoming {
                try host.withEngine { $0.beginIncoming(slots: slots) }
                return Wire.MigrationResponse(rows: 0)
            }
            // Freeze briefly so no write to these slots is in flight when they start being refused. While a
            // checkpoint freeze holds, this answers UNAVAILABLE / FROZEN (the contract says retry).
            try host.gate.freeze("migration", autoThawSeconds: 30, busyCode: .unavailable)
            defer { host.gate.thaw("migration") }
            try host.withEngine { try $0.beginMigration(slots: slots) }
            return Wire.MigrationResponse(rows: 0)
        }
        r.handle(ShardRPC.exportSlotRows) { _, req in
            // One slot (`slot`), or a chunk of them (`slots`, which must hold `slot`).
            let chunk = try Self.slots(req.slots.isEmpty ? [req.slot] : req.slots)
            guard chunk.count <= RowAddressing.slotCount, zip(chunk, chunk.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw RPCStatus(.invalidArgument, .malformed, "ExportSlotRows: slots must be strictly ascending (\(chunk.count) given)")
            }
            guard chunk.contains(where: { UInt32($0) == req.slot }) else {
                throw RPCStatus(.invalidArgument, .malformed, "ExportSlotRows: slot \(req.slot) (where the page starts) is not one of the \(chunk.count) slots")
            }
            return try Self.slotRowsPage(req) { slot, after, limit in
                try host.withEngine { try $0.encodedSlotRows(table: req.table, slots: chunk, start: slot, after: after, limit: limit) }
            }
        }
        replicated.handle(ShardRPC.importSlotRows, table: \.table) { _, req in
            guard req.keys.count == req.rows.count else {
                throw RPCStatus(.invalidArgument, .malformed, "ImportSlotRows: \(req.keys.count) keys but \(req.rows.count) rows")
            }
            try host.withEngine { try $0.installMigratedRows(table: req.table, rows: Array(zip(req.keys, req.rows)).map { (key: $0.0, row: $0.1) }) }
            return Wire.MigrationResponse(rows: UInt64(req.keys.count))
        }
        r.handle(ShardRPC.readLog) { _, req in
            let pageBytes = req.maxBytes == 0 ? 4 << 20 : min(Int(req.maxBytes), maxBytes / 2)
            let p = try host.withEngine { try $0.readLog(table: req.table, after: req.afterSequence, maxBytes: pageBytes) }
            if req.confirmsThrough && req.incarnation == p.incarnation {
                acks.confirm(table: req.table, incarnation: p.incarnation, through: req.afterSequence)
            }
            return Wire.ReadLogResponse(sequences: p.sequences, payloads: p.payloads, durableSequence: p.durableSequence, logStart: p.logStart,
                                        incarnation: p.incarnation, rowsGeneration: p.rowsGeneration)
        }
        r.handle(ShardRPC.readStoredRows) { _, req in
            try Self.slotRowsPage(req) { slot, after, limit in try host.withEngine { try $0.storedSlotRows(table: req.table, slot: slot, after: after, limit: limit) } }
        }
        r.handle(ShardRPC.endMigration) { _, req in
            let slots = try Self.slots(req.slots)
            return Wire.MigrationResponse(rows: UInt64(try host.withEngine { try $0.endMigration(slots: slots) }))
        }

        // Cluster checkpoints (they run while the shard is frozen).
        r.handle(ShardRPC.freeze) { _, req in
            try Names.check(req.name, as: .freeze)
            try host.gate.freeze(req.name, autoThawSeconds: Double(req.freezeSeconds == 0 ? 30 : min(req.freezeSeconds, 3600)))
            return Wire.FreezeResponse(frozen: true)
        }
        r.handle(ShardRPC.thaw) { _, req in
            try Names.check(req.name, as: .freeze)
            host.gate.thaw(req.name)
            return Wire.FreezeResponse(frozen: false)
        }
        r.handle(ShardRPC.createCheckpoint) { _, req in
            try Names.check(req.name, as: .checkpoint)
            try host.gate.requireFrozen(by: req.name, for: "CreateCheckpoint")
            return try host.withEngine { engine in
                try engine.createCheckpoint(name: req.name, shardCount: engine.shardMap.shardCount, base: req.base.isEmpty ? nil : req.base).wire
            }
        }
        r.handle(ShardRPC.listCheckpoints) { _, _ in
            Wire.ListCheckpointsResponse(checkpoints: ShardEngine.listCheckpoints(dataDirectory: host.configuration.dataDirectory).map(\.wire))
        }
        r.handle(ShardRPC.restoreCheckpoint) { _, req in
            try Names.check(req.name, as: .checkpoint)
            try host.gate.requireFrozen(by: req.name, for: "RestoreCheckpoint")
            return try host.restore(name: req.name).wire
        }

        // Health.
        r.handle(HealthRPC.check) { _, req in
            guard req.service.isEmpty || req.service == "embedps.v1.Shard" else {
                throw RPCStatus(.notFound, .unknownService, "unknown service '\(req.service.prefix(128))': this server serves '' and 'embedps.v1.Shard'")
            }
            return Wire.HealthCheckResponse(status: .serving)
        }
        r.finish(ShardRPC.all + HealthRPC.all)
    }

    /// A page of encoded rows for ExportSlotRows / ReadStoredRows: the slot checked, the limit defaulted
    /// (4096) and capped (65536) at the door, so `done` (fewer rows than asked) means the end.
    static func slotRowsPage(_ req: Wire.SlotRowsRequest, _ read: (UInt16, UInt64?, Int) throws -> [(key: UInt64, row: [UInt8])]) throws -> Wire.SlotRows {
        let slot = try slots([req.slot])[0]
        let limit = req.limit == 0 ? 4096 : min(Int(req.limit), 65536)
        let rows = try read(slot, req.hasAfter ? req.after : nil, limit)
        return Wire.SlotRows(table: req.table, keys: rows.map(\.key), rows: rows.map(\.row), done: rows.count < limit)
    }

    static func slots(_ raw: [UInt32]) throws -> [UInt16] {
        try raw.map { s in
            guard s < UInt32(RowAddressing.slotCount) else { throw RPCStatus(.invalidArgument, .malformed, "slot \(s) is not a slot (0..4095)") }
            return UInt16(s)
        }
    }

    /// Serves a PullRequest-shaped call: sizes a PullResponse from the table's dimension (refusing one over the
    /// message limit) and lets `fill` write one row per requested id straight into the outgoing buffer.
    static func serveRows(_ message: ReceivedMessage, engine: ShardEngine, meter: RequestMeter, maxBytes: Int, what: String,
                          fill: (String, UnsafeBufferPointer<UInt64>, UnsafeMutablePointer<Float>) throws -> Void) throws -> OutgoingMessage {
        let start = RequestMeter.now()
        var rows = 0
        let out = try message.withUnsafeBytes { bytes in
            try RowMessageDecoder.withPullRequest(bytes) { req in
                let dim = try engine.dim(of: req.table)
                let size = RowMessageEncoder.pullResponseSize(count: req.ids.count, dim: dim)
                guard size <= maxBytes else {
                    throw EngineError.tooLarge("\(what) \(req.ids.count) rows of dim \(dim) needs a \(size)-byte response; the limit is \(maxBytes): split the batch")
                }
                rows = req.ids.count
                return try OutgoingMessage(length: size) { buffer in
                    let area = RowMessageEncoder.writePullResponse(into: buffer, count: req.ids.count, dim: dim)
                    try fill(req.table, req.ids, area)
                }
            }
        }
        meter.record(rows: rows, seconds: RequestMeter.now() - start)
        return out
    }

    /// Serves a PushRequest-shaped call: `apply` validates and applies it, returning the rows updated.
    static func applyRows(_ message: ReceivedMessage, meter: RequestMeter,
                          apply: (String, UnsafeBufferPointer<UInt64>, UnsafeRawBufferPointer) throws -> Int) throws -> OutgoingMessage {
        let start = RequestMeter.now()
        // The rows at a 64-byte boundary, so the engine logs and applies them where they are.
        let rowsOffset = message.withSegments { r in RowMessageDecoder.pushRowsOffset(total: r.remaining) { r.read($0, into: $1) } } ?? nil
        let updated = try message.withUnsafeBytes(placing: rowsOffset ?? 0, at: 64) { bytes in
            try RowMessageDecoder.withPushRequest(bytes) { req in try apply(req.table, req.ids, req.gradientBytes) }
        }
        meter.record(rows: updated, seconds: RequestMeter.now() - start)
        return OutgoingMessage(bytes: Wire.PushResponse(rowsUpdated: UInt64(updated)).encoded())
    }

    public func status() throws -> Wire.ShardStatusResponse {
        try host.withEngine { engine in
            let c = engine.configuration
            var r = Wire.ShardStatusResponse()
            let map = engine.shardMap
            r.shardIndex = UInt32(c.shardIndex); r.shardMapVersion = map.version
            r.ownedSlots = UInt32(map.slotCount(of: c.shardIndex)); r.durability = c.durability.rawValue
            let snaps = engine.snapshots()
            r.tables = snaps.map { host.stats($0) }
            r.follows = host.follower?.primary ?? ""
            r.fencedBy = r.follows.isEmpty ? host.gate.followedPrimary ?? "" : ""
            r.epoch = engine.primaryEpoch
            r.ackReplicas = UInt32(acks.required)
            r.lease = leaseKeeper?.state ?? ""
            r.cacheCapacityRows = snaps.reduce(0) { $0 + $1.cacheCapacityRows }
            let hits = snaps.reduce(0) { $0 + $1.cacheHits }, lookups = hits + snaps.reduce(0) { $0 + $1.cacheMisses }
            r.cacheHitRate = lookups == 0 ? 0 : Double(hits) / Double(lookups)
            let m = meter.summary()
            r.requestsPerSecond = m.requestsPerSecond; r.rowsPerSecond = m.rowsPerSecond
            r.latencyP50Ms = m.p50Ms; r.latencyP99Ms = m.p99Ms
            r.uptimeSeconds = UInt64(Date().timeIntervalSince(meter.started)); r.bytesOnDisk = engine.bytesOnDisk
            return r
        }
    }
}

/// The service's lease-loop reference (set once after start). Thread-safe.
final class LockedLease: @unchecked Sendable {
    private let lock = NSLock()
    private var value: LeaseKeeper? = nil
    func withLock<R>(_ body: (inout LeaseKeeper?) -> R) -> R { lock.withLock { body(&value) } }
}

/// Writes that a primary started with --ack-replicas 1 answers only once a follower confirmed the table's
/// update-log point after them (see ACKNOWLEDGED BY A REPLICA in the proto): pushes, imports and every RPC
/// that logs a table operation. With 0, they are answered at once.
struct ReplicatedWrites {
    let registrar: Registrar
    let replies: ReplicaReplies

    init(registrar: Registrar, host: ShardHost, acks: ReplicaAcks) {
        self.registrar = registrar; replies = ReplicaReplies(host: host, acks: acks)
    }

    /// A handler of decoded requests that write to the table `table(request)`, answered as `answer` says.
    func handle<Q, A>(_ method: RPCMethod<Q, A>, table: @escaping @Sendable (Q) -> String, _ body: @escaping @Sendable (ServerCallContext, Q) throws -> A) {
        let replies = self.replies
        registrar.handleRawDeferred(method) { context, message, reply in
            let request = try message.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try Q(decoding: b) }
            try replies.answer(OutgoingMessage(bytes: try body(context, request).encoded()), table: table(request), reply)
        }
    }
}

/// The answer to a replicated write (see `ReplicatedWrites`).
struct ReplicaReplies: Sendable {
    let host: ShardHost
    let acks: ReplicaAcks

    /// Answers `answer` for a write to `table` that was applied: at once, or once a follower confirmed the
    /// table's current point (UNAVAILABLE, reason NOT_REPLICATED, when none did in time).
    func answer(_ answer: OutgoingMessage, table: String, _ reply: ServerReply) throws {
        guard acks.required > 0, !table.isEmpty else { return reply(.success(answer)) }
        let point = try host.withEngine { try $0.replicationPoint(table: table) }
        let timeout = acks.timeoutSeconds
        acks.wait(for: point) { confirmed in
            reply(confirmed ? .success(answer) : .failure(RPCStatus(
                .unavailable, "applied on the primary but no follower confirmed it within \(timeout) s (--ack-replicas 1): resend it (a push with the same request id)",
                detail: Wire.ErrorDetail(reason: .notReplicated, table: point.table))))
        }
    }
}
