import Foundation
import RPC
import Engine
import EmbedPSWire
import HTTP

extension EngineError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus {
        let code: StatusCode = switch self {
        case .unknownTable: .notFound
        case .tableExists: .alreadyExists
        case .invalidSpec, .wrongDimension, .nonFiniteGradient, .malformed: .invalidArgument
        case .wrongShard: .failedPrecondition
        case .tooLarge: .resourceExhausted
        case .storage: .internalError
        case .slotMoving: .unavailable
        case .unknownItem: .notFound
        case .notSemantic, .notSparse, .sparsityStepTooLarge, .notDnis, .dnisPruned, .notAlphaPrimary: .failedPrecondition
        }
        return RPCStatus(code, description)
    }
}

extension WireError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus { RPCStatus(.invalidArgument, description) }
}

extension CheckpointInfo {
    var wire: WireCheckpointInfo {
        var w = WireCheckpointInfo()
        w.name = name; w.shardIndex = UInt32(shardIndex); w.shardCount = UInt32(shardCount); w.shardMapVersion = mapVersion
        w.createdUnixMs = createdUnixMs; w.tables = tables; w.bytes = bytes
        return w
    }
}

extension TableSnapshot {
    var wire: WireTableStats {
        var w = WireTableStats()
        w.spec = spec.wire; w.rows = rows; w.cachedRows = cachedRows; w.bytesOnDisk = bytesOnDisk
        w.pulls = pulls; w.pushes = pushes; w.rowsPulled = rowsPulled; w.rowsPushed = rowsPushed
        w.dirtyRows = dirtyRows; w.logBytes = logBytes; w.checkpoints = checkpoints; w.cacheCapacityRows = cacheCapacityRows
        return w
    }
}

/// Who may call what on a shard. Invariant: without a token every call is allowed; with a token, the admin
/// methods (`adminMethods`) require `authorization: Bearer <token>` request metadata, and with scope `.all`
/// every method except the health check does. A refused call gets UNAUTHENTICATED and changes nothing.
public struct AccessPolicy: Sendable {
    public enum Scope: String, Sendable { case admin, all }
    public var token: String?
    public var scope: Scope
    public init(token: String? = nil, scope: Scope = .admin) { self.token = token; self.scope = scope }

    /// Methods that change a table's definition or its rows other than by a gradient push.
    public static let adminMethods: Set<String> = [
        ShardMethod.createTable, ShardMethod.dropTable, ShardMethod.flush, ShardMethod.registerItems, ShardMethod.sparsityStep,
        ShardMethod.dnisAssignBlocks, ShardMethod.dnisPrune, ShardMethod.compact,
        ShardMethod.freeze, ShardMethod.thaw, ShardMethod.createCheckpoint, ShardMethod.restoreCheckpoint, ShardMethod.importRows,
        ShardMethod.setShardMap, ShardMethod.beginMigration, ShardMethod.exportSlotRows, ShardMethod.importSlotRows, ShardMethod.endMigration,
        ShardMethod.setDnisState,
    ]

    public func check(_ context: ServerCallContext) throws {
        guard let token, context.method != ShardMethod.healthCheck else { return }
        guard scope == .all || Self.adminMethods.contains(context.method) else { return }
        let sent = context.metadata.first { $0.key.lowercased() == "authorization" }?.value
        guard let sent else {
            throw RPCStatus(.unauthenticated, "\(context.method) needs a token: send 'authorization: Bearer <token>' (tools: --auth-token-file PATH)")
        }
        let expected = Array("Bearer \(token)".utf8), got = Array(sent.utf8)
        // Constant time in the token's length.
        var diff = UInt8(expected.count == got.count ? 0 : 1)
        for i in 0..<expected.count { diff |= expected[i] ^ (i < got.count ? got[i] : 0) }
        guard diff == 0 else { throw RPCStatus(.unauthenticated, "\(context.method): wrong token") }
    }
}

/// The shard service: decodes each RPC, calls the engine, encodes the answer. Stateless apart from the
/// request meter; thread-safe because the engine is.
public final class ShardService: Sendable {
    public let host: ShardHost
    public let meter = RequestMeter()
    let maxMessageBytes: Int
    let policy: AccessPolicy

    public init(host: ShardHost, maxMessageBytes: Int, policy: AccessPolicy = AccessPolicy()) {
        self.host = host; self.maxMessageBytes = maxMessageBytes; self.policy = policy
    }

    /// The current engine (replaced by a checkpoint restore).
    public var engine: ShardEngine { get throws { try host.engine } }

    /// Registers every method of the shard and health services on `server`, each behind the access policy.
    public func register(on outer: Server) {
        let host = self.host, meter = self.meter, maxBytes = maxMessageBytes
        let server = PolicyRegistrar(server: outer, policy: policy, gate: host.gate)
        server.register(ShardMethod.pull) { _, message in
            try Self.serveRows(message, engine: try host.engine, meter: meter, maxBytes: maxBytes, what: "pulling") { table, ids, out in
                try host.engine.pull(table: table, ids: ids, into: out)
            }
        }
        server.register(ShardMethod.push) { context, message in
            // Optional idempotency key: a retry carrying the same id is answered without being applied again.
            var requestID: RequestID? = nil
            if let raw = context.metadata.first(where: { $0.key == ShardMetadata.requestID })?.value {
                guard let id = RequestID(hex: raw) else {
                    throw RPCStatus(.invalidArgument, "\(ShardMetadata.requestID) must be 32 hex digits, got '\(raw)'")
                }
                requestID = id
            }
            return try Self.applyRows(message, meter: meter) { table, ids, gradients in
                try host.engine.push(table: table, ids: ids, gradientBytes: gradients, requestID: requestID)
            }
        }
        server.register(ShardMethod.createTable) { _, message in
            let req = try message.withUnsafeBytes { try WireCreateTableRequest(decoding: $0) }
            let created = try host.engine.createTable(try TableSpec(wire: req.spec))
            return OutgoingMessage(bytes: WireCreateTableResponse(created: created).encoded())
        }
        server.register(ShardMethod.describeTable) { _, message in
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            var stats = try host.engine.snapshot(of: req.table).wire
            if let s = try host.engine.semanticStats(table: req.table) {
                stats.semantic = WireSemanticStats(items: UInt64(s.items), piecesPerItem: s.piecesPerItem, rowsUsed: UInt64(s.rowsUsed), collisions: UInt64(s.collisions))
            }
            return OutgoingMessage(bytes: WireDescribeTableResponse(stats: stats).encoded())
        }
        server.register(ShardMethod.listTables) { _, _ in
            OutgoingMessage(bytes: WireListTablesResponse(tables: try host.engine.tableNames()).encoded())
        }
        server.register(ShardMethod.dropTable) { _, message in
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            return OutgoingMessage(bytes: WireDropTableResponse(dropped: try host.engine.dropTable(req.table)).encoded())
        }
        server.register(ShardMethod.shardStatus) { _, _ in
            OutgoingMessage(bytes: try self.status().encoded())
        }
        server.register(ShardMethod.flush) { _, message in
            // FlushRequest has the same layout as DescribeTableRequest (field 1, string table).
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            let flushed: Int
            if req.table.isEmpty { try host.engine.checkpointAll(); flushed = try host.engine.tableNames().count }
            else { try host.engine.checkpoint(table: req.table); flushed = 1 }
            return OutgoingMessage(bytes: WireFlushResponse(tablesFlushed: UInt32(flushed)).encoded())
        }
        server.register(ShardMethod.registerItems) { _, message in
            let req = try message.withUnsafeBytes { try WireRegisterItemsRequest(decoding: $0) }
            let (registered, total) = try host.engine.registerItems(table: req.table, items: req.items, codes: req.codes)
            return OutgoingMessage(bytes: WireRegisterItemsResponse(registered: UInt64(registered), items: UInt64(total)).encoded())
        }
        server.register(ShardMethod.pullPooled) { _, message in
            try Self.serveRows(message, engine: try host.engine, meter: meter, maxBytes: maxBytes, what: "pooling") { table, items, out in
                try host.engine.pullPooled(table: table, items: items, into: out)
            }
        }
        server.register(ShardMethod.pushPooled) { _, message in
            try Self.applyRows(message, meter: meter) { table, items, gradients in
                try host.engine.pushPooled(table: table, items: items, gradientBytes: gradients)
            }
        }
        server.register(ShardMethod.sparsityReport) { _, message in
            // SparsityReportRequest has the same layout as DescribeTableRequest (field 1, string table).
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            let r = try host.engine.sparsityReport(table: req.table)
            var w = WireSparsityReport()
            w.rows = r.rows; w.active = r.active; w.inactive = r.inactive; w.fired = r.fired
            w.weightHistogram = r.weightHistogram; w.growthHistogram = r.growthHistogram; w.round = r.round
            w.pushesSinceStep = r.pushesSinceStep; w.storedBytes = r.storedBytes; w.denseBytes = r.denseBytes
            w.activePerNewRow = r.activePerNewRow
            return OutgoingMessage(bytes: w.encoded())
        }
        server.register(ShardMethod.sparsityStep) { _, message in
            let req = try message.withUnsafeBytes { try WireSparsityStepRequest(decoding: $0) }
            let r = try host.engine.sparsityStep(table: req.table, prune: req.prune, grow: req.grow, round: req.round)
            return OutgoingMessage(bytes: WireSparsityStepResponse(pruned: r.pruned, grown: r.grown, active: r.active, round: r.round, rows: r.rows).encoded())
        }
        server.register(ShardMethod.dnisReport) { _, message in
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            let r = try host.engine.dnisReport(table: req.table)
            var w = WireDnisReport()
            w.pruned = r.pruned; w.alphaVersion = r.alphaVersion; w.alpha = r.alpha
            w.blocks = r.blocks.map { WireDnisBlockStats(rows: $0.rows, active: $0.active, storedBytes: $0.storedBytes, denseBytes: $0.denseBytes) }
            w.frequencyHistogram = r.frequencyHistogram; w.magnitudeHistogram = r.magnitudeHistogram; w.assignmentRound = r.assignmentRound
            return OutgoingMessage(bytes: w.encoded())
        }
        server.register(ShardMethod.dnisAssignBlocks) { _, message in
            let req = try message.withUnsafeBytes { try WireDnisAssignRequest(decoding: $0) }
            return OutgoingMessage(bytes: WireDnisAssignResponse(rowsPerBlock: try host.engine.dnisAssign(table: req.table, take: req.take)).encoded())
        }
        server.register(ShardMethod.dnisAlpha) { _, message in
            let req = try message.withUnsafeBytes { try WireDnisAlphaRequest(decoding: $0) }
            let (version, alpha, pruned) = try host.engine.dnisAlpha(table: req.table, gradient: req.gradient, setVersion: req.setVersion, setAlpha: req.setAlpha)
            return OutgoingMessage(bytes: WireDnisAlphaResponse(version: version, alpha: alpha, pruned: pruned).encoded())
        }
        server.register(ShardMethod.dnisAlphaGradient) { _, message in
            let (partial, rows) = try message.withUnsafeBytes { bytes in
                try RowMessageDecoder.withPushRequest(bytes) { req in
                    (try host.engine.dnisAlphaGradient(table: req.table, ids: req.ids, gradientBytes: req.gradientBytes), req.ids.count)
                }
            }
            return OutgoingMessage(bytes: WireDnisAlphaGradientResponse(partial: partial, rows: UInt64(rows)).encoded())
        }
        server.register(ShardMethod.dnisPrune) { _, message in
            let req = try message.withUnsafeBytes { try WireDnisPruneRequest(decoding: $0) }
            let r = try host.engine.dnisPrune(table: req.table, prune: req.prune, threshold: req.threshold)
            return OutgoingMessage(bytes: WireDnisPruneResponse(pruned: r.pruned, active: r.active, rows: r.rows).encoded())
        }
        server.register(ShardMethod.pullCompact) { _, message in
            let r = try message.withUnsafeBytes { bytes in
                try RowMessageDecoder.withPullRequest(bytes) { req in try host.engine.pullCompact(table: req.table, ids: req.ids) }
            }
            return OutgoingMessage(bytes: WireCompactRows(dim: UInt32(r.dim), masks: r.masks, values: r.values).encoded())
        }
        server.register(ShardMethod.compact) { _, message in
            // CompactRequest has the same layout as DescribeTableRequest (field 1, string table).
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            let (n, before, after) = try host.engine.compact(table: req.table)
            return OutgoingMessage(bytes: WireCompactResponse(tablesCompacted: UInt32(n), bytesBefore: before, bytesAfter: after).encoded())
        }
        server.register(ShardMethod.exportRows) { _, message in
            let req = try message.withUnsafeBytes { try WireExportRowsRequest(decoding: $0) }
            let cursor = try req.cursor.map { c -> (slot: UInt16, key: UInt64) in
                guard c.slot < 4096 else { throw RPCStatus(.invalidArgument, "export cursor slot \(c.slot) is not a slot (0..4095)") }
                return (UInt16(c.slot), c.key)
            }
            let (dim, page) = try host.engine.exportRows(table: req.table, after: cursor, limit: req.limit == 0 ? 4096 : Int(req.limit))
            var w = WireExportRowsResponse()
            w.dim = UInt32(dim); w.keys = page.keys; w.values = page.values
            w.done = page.next == nil
            if let n = page.next { w.nextSlot = UInt32(n.slot); w.nextKey = n.key }
            return OutgoingMessage(bytes: w.encoded())
        }
        server.register(ShardMethod.importRows) { _, message in
            try Self.applyRows(message, meter: meter) { table, keys, values in
                try host.engine.importRows(table: table, keys: keys, valueBytes: values)
            }
        }
        // Live resharding.
        server.registerUngated(ShardMethod.getShardMap) { _, _ in
            let engine = try host.engine
            let spec = engine.shardMapSpec()
            return OutgoingMessage(bytes: WireShardMap(specJSON: String(decoding: try spec.encoded(), as: UTF8.self), version: spec.version,
                                                       movingSlots: engine.migratingSlots.map { UInt32($0) }).encoded())
        }
        server.registerUngated(ShardMethod.setShardMap) { _, message in
            let req = try message.withUnsafeBytes { try WireShardMap(decoding: $0) }
            let spec: ClusterSpec
            do { spec = try JSONDecoder().decode(ClusterSpec.self, from: Data(req.specJSON.utf8)) } catch {
                throw RPCStatus(.invalidArgument, "SetShardMap: the spec JSON is not a cluster spec: \(error)")
            }
            let engine = try host.engine
            try engine.adoptShardMap(spec)
            let now = engine.shardMapSpec()
            return OutgoingMessage(bytes: WireShardMap(specJSON: String(decoding: try now.encoded(), as: UTF8.self), version: now.version).encoded())
        }
        server.registerUngated(ShardMethod.beginMigration) { _, message in
            let req = try message.withUnsafeBytes { try WireSlotsRequest(decoding: $0) }
            let slots = try Self.slots(req.slots)
            // Freeze briefly so no write to these slots is in flight when they start being refused.
            try host.gate.freeze("migration", autoThawSeconds: 30)
            defer { host.gate.thaw("migration") }
            try host.engine.beginMigration(slots: slots)
            return OutgoingMessage(bytes: WireMigrationResponse(rows: 0).encoded())
        }
        server.registerUngated(ShardMethod.exportSlotRows) { _, message in
            let req = try message.withUnsafeBytes { try WireSlotRowsRequest(decoding: $0) }
            let slot = try Self.slots([req.slot])[0]
            let limit = req.limit == 0 ? 4096 : Int(req.limit)
            let rows = try host.engine.encodedSlotRows(table: req.table, slot: slot, after: req.after, limit: limit)
            return OutgoingMessage(bytes: WireSlotRows(table: req.table, keys: rows.map(\.key), rows: rows.map(\.row), done: rows.count < limit).encoded())
        }
        server.register(ShardMethod.importSlotRows) { _, message in
            let req = try message.withUnsafeBytes { try WireSlotRows(decoding: $0) }
            guard req.keys.count == req.rows.count else { throw RPCStatus(.invalidArgument, "\(req.keys.count) keys but \(req.rows.count) rows") }
            try host.engine.installMigratedRows(table: req.table, rows: Array(zip(req.keys, req.rows)).map { (key: $0.0, row: $0.1) })
            return OutgoingMessage(bytes: WireMigrationResponse(rows: UInt64(req.keys.count)).encoded())
        }
        server.registerUngated(ShardMethod.endMigration) { _, message in
            let req = try message.withUnsafeBytes { try WireSlotsRequest(decoding: $0) }
            let deleted = try host.engine.endMigration(slots: try Self.slots(req.slots))
            return OutgoingMessage(bytes: WireMigrationResponse(rows: UInt64(deleted)).encoded())
        }
        server.register(ShardMethod.exportItems) { _, message in
            let req = try message.withUnsafeBytes { try WireSlotRowsRequest(decoding: $0) }
            let page = try host.engine.itemPage(table: req.table, after: req.after, limit: req.limit == 0 ? 10_000 : Int(req.limit))
            return OutgoingMessage(bytes: WireRegisterItemsRequest(table: req.table, items: page.items, codes: page.codes).encoded())
        }
        server.register(ShardMethod.getDnisState) { _, message in
            let req = try message.withUnsafeBytes { try WireTableNameRequest(decoding: $0) }
            let st = try host.engine.dnisState(table: req.table)
            return OutgoingMessage(bytes: WireDnisState(table: req.table, pruned: st.pruned, alphaVersion: st.version, alpha: st.alpha,
                                                        threshold: st.threshold, assignmentRound: st.assignmentRound).encoded())
        }
        server.register(ShardMethod.setDnisState) { _, message in
            let req = try message.withUnsafeBytes { try WireDnisState(decoding: $0) }
            let adopted = try host.engine.adoptDnisState(table: req.table, pruned: req.pruned, version: req.alphaVersion, alpha: req.alpha,
                                                         threshold: req.threshold, assignmentRound: req.assignmentRound)
            return OutgoingMessage(bytes: WireMigrationResponse(rows: adopted ? 1 : 0).encoded())
        }
        // Cluster checkpoints (ungated: they run while the shard is frozen).
        server.registerUngated(ShardMethod.freeze) { _, message in
            let req = try message.withUnsafeBytes { try WireCheckpointRequest(decoding: $0) }
            try host.gate.freeze(req.name, autoThawSeconds: Double(req.freezeSeconds == 0 ? 30 : req.freezeSeconds))
            return OutgoingMessage(bytes: WireFreezeResponse(frozen: true).encoded())
        }
        server.registerUngated(ShardMethod.thaw) { _, message in
            let req = try message.withUnsafeBytes { try WireCheckpointRequest(decoding: $0) }
            host.gate.thaw(req.name)
            return OutgoingMessage(bytes: WireFreezeResponse(frozen: false).encoded())
        }
        server.registerUngated(ShardMethod.createCheckpoint) { _, message in
            let req = try message.withUnsafeBytes { try WireCheckpointRequest(decoding: $0) }
            guard host.gate.isFrozen(by: req.name) else {
                throw RPCStatus(.failedPrecondition, "CreateCheckpoint '\(req.name)' needs the shard frozen under that name first (Freeze)")
            }
            let engine = try host.engine
            let info = try engine.createCheckpoint(name: req.name, shardCount: engine.shardMap.shardCount)
            return OutgoingMessage(bytes: info.wire.encoded())
        }
        server.registerUngated(ShardMethod.listCheckpoints) { _, _ in
            let list = ShardEngine.listCheckpoints(dataDirectory: host.configuration.dataDirectory).map(\.wire)
            return OutgoingMessage(bytes: WireListCheckpointsResponse(checkpoints: list).encoded())
        }
        server.registerUngated(ShardMethod.restoreCheckpoint) { _, message in
            let req = try message.withUnsafeBytes { try WireCheckpointRequest(decoding: $0) }
            guard host.gate.isFrozen(by: req.name) else {
                throw RPCStatus(.failedPrecondition, "RestoreCheckpoint '\(req.name)' needs the shard frozen under that name first (Freeze)")
            }
            return OutgoingMessage(bytes: try host.restore(name: req.name).wire.encoded())
        }
        server.registerUngated(ShardMethod.healthCheck) { _, message in
            let req = try message.withUnsafeBytes { try WireHealthCheckRequest(decoding: $0) }
            guard req.service.isEmpty || req.service == "embedps.v1.Shard" else {
                throw RPCStatus(.notFound, "unknown service '\(req.service)': this server serves '' and 'embedps.v1.Shard'")
            }
            return OutgoingMessage(bytes: WireHealthCheckResponse(status: 1).encoded())
        }
    }

    static func slots(_ raw: [UInt32]) throws -> [UInt16] {
        try raw.map { s in
            guard s < UInt32(RowAddressing.slotCount) else { throw RPCStatus(.invalidArgument, "slot \(s) is not a slot (0..4095)") }
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
        let updated = try message.withUnsafeBytes { bytes in
            try RowMessageDecoder.withPushRequest(bytes) { req in try apply(req.table, req.ids, req.gradientBytes) }
        }
        meter.record(rows: updated, seconds: RequestMeter.now() - start)
        return OutgoingMessage(bytes: WirePushResponse(rowsUpdated: UInt64(updated)).encoded())
    }

    public func status() throws -> WireShardStatusResponse {
        let engine = try self.engine
        let c = engine.configuration
        var r = WireShardStatusResponse()
        let map = engine.shardMap
        r.shardIndex = UInt32(c.shardIndex); r.shardMapVersion = map.version
        r.ownedSlots = UInt32(map.slotCount(of: c.shardIndex)); r.durability = c.durability.rawValue
        let snaps = engine.snapshots()
        r.tables = snaps.map(\.wire)
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

/// Registers handlers on a server with the access policy checked before each one runs and, for gated
/// handlers, admission through the request gate (refused while the shard is frozen).
struct PolicyRegistrar {
    let server: Server
    let policy: AccessPolicy
    let gate: RequestGate
    func register(_ method: String, _ handler: @escaping UnaryHandler) {
        let policy = self.policy, gate = self.gate
        server.register(method) { context, message in
            try policy.check(context)
            try gate.enter()
            defer { gate.leave() }
            return try handler(context, message)
        }
    }
    func registerUngated(_ method: String, _ handler: @escaping UnaryHandler) {
        let policy = self.policy
        server.register(method) { context, message in
            try policy.check(context)
            return try handler(context, message)
        }
    }
}
