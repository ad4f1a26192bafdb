import EmbedPSWireC

// Swift mirrors of the control-plane messages of Protos/embedps.proto, encoded and decoded through the
// generated protobuf-c code. Field meanings are documented in the .proto. Enums travel as raw values so
// that an unknown value from a newer peer is visible to validation instead of being lost.

/// Mirror of `embedps.v1.OptimizerConfig`.
public struct WireOptimizerConfig: Sendable, Equatable {
    public var kind: UInt32 = 0
    public var learningRate: Float = 0
    public var initialAccumulator: Float = 0
    public var beta1: Float = 0
    public var beta2: Float = 0
    public var epsilon: Float = 0
    public var l1: Float = 0
    public var l2: Float = 0
    public var beta: Float = 0
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__OptimizerConfig>?) {
        guard let c = c?.pointee else { return }
        kind = c.kind.rawValue; learningRate = c.learning_rate; initialAccumulator = c.initial_accumulator
        beta1 = c.beta1; beta2 = c.beta2; epsilon = c.epsilon; l1 = c.l1; l2 = c.l2; beta = c.beta
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__OptimizerConfig> {
        let p = arena.allocate(Embedps__V1__OptimizerConfig())
        embedps__v1__optimizer_config__init(p)
        p.pointee.kind = Embedps__V1__OptimizerKind(rawValue: kind)
        p.pointee.learning_rate = learningRate; p.pointee.initial_accumulator = initialAccumulator
        p.pointee.beta1 = beta1; p.pointee.beta2 = beta2; p.pointee.epsilon = epsilon
        p.pointee.l1 = l1; p.pointee.l2 = l2; p.pointee.beta = beta
        return p
    }
}

/// Mirror of `embedps.v1.InitializerConfig`.
public struct WireInitializerConfig: Sendable, Equatable {
    public var kind: UInt32 = 0
    public var low: Float = 0
    public var high: Float = 0
    public var mean: Float = 0
    public var stddev: Float = 0
    public var seed: UInt64 = 0
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__InitializerConfig>?) {
        guard let c = c?.pointee else { return }
        kind = c.kind.rawValue; low = c.low; high = c.high; mean = c.mean; stddev = c.stddev; seed = c.seed
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__InitializerConfig> {
        let p = arena.allocate(Embedps__V1__InitializerConfig())
        embedps__v1__initializer_config__init(p)
        p.pointee.kind = Embedps__V1__InitializerKind(rawValue: kind)
        p.pointee.low = low; p.pointee.high = high; p.pointee.mean = mean; p.pointee.stddev = stddev
        p.pointee.seed = seed
        return p
    }
}

/// Mirror of `embedps.v1.SemanticConfig`.
public struct WireSemanticConfig: Sendable, Equatable {
    public var tokenizer: UInt32 = 0
    public var levels: UInt32 = 0
    public var codebookSize: UInt32 = 0
    public var ngram: UInt32 = 0
    public var budget: UInt64 = 0
    public var sentencePieceModel: [UInt8] = []
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__SemanticConfig>) {
        let c = c.pointee
        tokenizer = c.tokenizer.rawValue; levels = c.levels; codebookSize = c.codebook_size; ngram = c.ngram; budget = c.budget
        sentencePieceModel = c.sentencepiece_model.len == 0 ? [] : Array(UnsafeBufferPointer(start: c.sentencepiece_model.data, count: c.sentencepiece_model.len))
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__SemanticConfig> {
        let p = arena.allocate(Embedps__V1__SemanticConfig())
        embedps__v1__semantic_config__init(p)
        p.pointee.tokenizer = Embedps__V1__TokenizerKind(rawValue: tokenizer)
        p.pointee.levels = levels; p.pointee.codebook_size = codebookSize; p.pointee.ngram = ngram; p.pointee.budget = budget
        if !sentencePieceModel.isEmpty {
            p.pointee.sentencepiece_model = ProtobufCBinaryData(len: sentencePieceModel.count, data: arena.array(sentencePieceModel))
        }
        return p
    }
}

/// Mirror of `embedps.v1.SparsityConfig`.
public struct WireSparsityConfig: Sendable, Equatable {
    public var density: Float = 0
    public var seed: UInt64 = 0
    public var growthDecay: Float = 0
    public var regrowInterval: UInt32 = 0
    public var updateFractionStart: Float = 0
    public var updateFractionEnd: Float = 0
    public var regrowRounds: UInt32 = 0
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__SparsityConfig>) {
        let c = c.pointee
        density = c.density; seed = c.seed; growthDecay = c.growth_decay; regrowInterval = c.regrow_interval
        updateFractionStart = c.update_fraction_start; updateFractionEnd = c.update_fraction_end; regrowRounds = c.regrow_rounds
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__SparsityConfig> {
        let p = arena.allocate(Embedps__V1__SparsityConfig())
        embedps__v1__sparsity_config__init(p)
        p.pointee.density = density; p.pointee.seed = seed; p.pointee.growth_decay = growthDecay
        p.pointee.regrow_interval = regrowInterval; p.pointee.update_fraction_start = updateFractionStart
        p.pointee.update_fraction_end = updateFractionEnd; p.pointee.regrow_rounds = regrowRounds
        return p
    }
}

/// Mirror of `embedps.v1.TableSpec`.
public struct WireTableSpec: Sendable, Equatable {
    public var name = ""
    public var dim: UInt32 = 0
    public var hashMode: UInt32 = 0
    public var rowBudget: UInt64 = 0
    public var hashSeed: UInt64 = 0
    public var optimizer = WireOptimizerConfig()
    public var initializer = WireInitializerConfig()
    /// Set for a semantic-ID table.
    public var semantic: WireSemanticConfig? = nil
    /// Set for a dynamic-sparsity table.
    public var sparsity: WireSparsityConfig? = nil
    /// Set for a DNIS table.
    public var dnis: WireDnisConfig? = nil
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__TableSpec>?) {
        guard let c = c?.pointee else { return }
        name = swiftString(c.name); dim = c.dim; hashMode = c.hash_mode.rawValue
        rowBudget = c.row_budget; hashSeed = c.hash_seed
        optimizer = WireOptimizerConfig(c.optimizer); initializer = WireInitializerConfig(c.initializer)
        semantic = c.semantic.map { WireSemanticConfig($0) }
        sparsity = c.sparsity.map { WireSparsityConfig($0) }
        dnis = c.dnis.map { WireDnisConfig($0) }
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__TableSpec> {
        let p = arena.allocate(Embedps__V1__TableSpec())
        embedps__v1__table_spec__init(p)
        p.pointee.name = arena.string(name); p.pointee.dim = dim
        p.pointee.hash_mode = Embedps__V1__HashMode(rawValue: hashMode)
        p.pointee.row_budget = rowBudget; p.pointee.hash_seed = hashSeed
        p.pointee.optimizer = optimizer.c(arena); p.pointee.initializer = initializer.c(arena)
        p.pointee.semantic = semantic?.c(arena)
        p.pointee.sparsity = sparsity?.c(arena)
        p.pointee.dnis = dnis?.c(arena)
        return p
    }

    public func encoded() -> [UInt8] {
        let arena = CArena()
        let p = c(arena)
        return withExtendedLifetime(arena) { p.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { packMessage($0) } }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__table_spec__unpack, name: "TableSpec") { WireTableSpec($0) }
    }
}

/// Mirror of `embedps.v1.SemanticStats`.
public struct WireSemanticStats: Sendable, Equatable {
    public var items: UInt64, piecesPerItem: Double, rowsUsed: UInt64, collisions: UInt64
    public init(items: UInt64, piecesPerItem: Double, rowsUsed: UInt64, collisions: UInt64) {
        self.items = items; self.piecesPerItem = piecesPerItem; self.rowsUsed = rowsUsed; self.collisions = collisions
    }
}

/// Mirror of `embedps.v1.TableStats`.
public struct WireTableStats: Sendable, Equatable {
    public var spec = WireTableSpec()
    public var rows: UInt64 = 0
    public var cachedRows: UInt64 = 0
    public var bytesOnDisk: UInt64 = 0
    public var pulls: UInt64 = 0
    public var pushes: UInt64 = 0
    public var rowsPulled: UInt64 = 0
    public var rowsPushed: UInt64 = 0
    public var dirtyRows: UInt64 = 0
    public var logBytes: UInt64 = 0
    public var checkpoints: UInt64 = 0
    public var cacheCapacityRows: UInt64 = 0
    /// Semantic tables: (items, mean pieces per item, rows used, collisions).
    public var semantic: WireSemanticStats? = nil
    public init() {}

    init(_ c: UnsafePointer<Embedps__V1__TableStats>?) {
        guard let c = c?.pointee else { return }
        spec = WireTableSpec(c.spec); rows = c.rows; cachedRows = c.cached_rows; bytesOnDisk = c.bytes_on_disk
        pulls = c.pulls; pushes = c.pushes; rowsPulled = c.rows_pulled; rowsPushed = c.rows_pushed
        dirtyRows = c.dirty_rows; logBytes = c.log_bytes; checkpoints = c.checkpoints; cacheCapacityRows = c.cache_capacity_rows
        semantic = c.semantic.map { WireSemanticStats(items: $0.pointee.items, piecesPerItem: $0.pointee.pieces_per_item,
                                                      rowsUsed: $0.pointee.rows_used, collisions: $0.pointee.collisions) }
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__TableStats> {
        let p = arena.allocate(Embedps__V1__TableStats())
        embedps__v1__table_stats__init(p)
        p.pointee.spec = spec.c(arena); p.pointee.rows = rows; p.pointee.cached_rows = cachedRows
        p.pointee.bytes_on_disk = bytesOnDisk; p.pointee.pulls = pulls; p.pointee.pushes = pushes
        p.pointee.rows_pulled = rowsPulled; p.pointee.rows_pushed = rowsPushed
        p.pointee.dirty_rows = dirtyRows; p.pointee.log_bytes = logBytes; p.pointee.checkpoints = checkpoints
        p.pointee.cache_capacity_rows = cacheCapacityRows
        if let sem = semantic {
            let q = arena.allocate(Embedps__V1__SemanticStats()); embedps__v1__semantic_stats__init(q)
            q.pointee.items = sem.items; q.pointee.pieces_per_item = sem.piecesPerItem
            q.pointee.rows_used = sem.rowsUsed; q.pointee.collisions = sem.collisions
            p.pointee.semantic = q
        }
        return p
    }
}

/// A message of the shard service with a protobuf-c encoding.
public protocol WireMessage: Sendable {
    func encoded() -> [UInt8]
    init(decoding bytes: UnsafeRawBufferPointer) throws
}

/// Encodes through a C struct built in an arena.
@inline(__always)
func encodeC<T>(_ build: (CArena) -> UnsafeMutablePointer<T>) -> [UInt8] {
    let arena = CArena()
    let p = build(arena)
    return withExtendedLifetime(arena) { UnsafeMutableRawPointer(p).withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { packMessage($0) } }
}


public struct WireCreateTableRequest: WireMessage, Equatable {
    public var spec = WireTableSpec()
    public init(spec: WireTableSpec) { self.spec = spec }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__CreateTableRequest()); embedps__v1__create_table_request__init(p)
            p.pointee.spec = spec.c(a); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        spec = try unpackMessage(bytes, embedps__v1__create_table_request__unpack, name: "CreateTableRequest") { WireTableSpec($0.pointee.spec) }
    }
}

public struct WireCreateTableResponse: WireMessage, Equatable {
    public var created = false
    public init(created: Bool) { self.created = created }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__CreateTableResponse()); embedps__v1__create_table_response__init(p)
            p.pointee.created = created ? 1 : 0; return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        created = try unpackMessage(bytes, embedps__v1__create_table_response__unpack, name: "CreateTableResponse") { $0.pointee.created != 0 }
    }
}

/// Request naming one table: DescribeTable and DropTable.
public struct WireTableNameRequest: WireMessage, Equatable {
    public var table = ""
    public init(table: String) { self.table = table }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DescribeTableRequest()); embedps__v1__describe_table_request__init(p)
            p.pointee.table = a.string(table); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        // DescribeTableRequest and DropTableRequest share one layout: field 1, string table.
        table = try unpackMessage(bytes, embedps__v1__describe_table_request__unpack, name: "table request") { swiftString($0.pointee.table) }
    }
}

public struct WireDescribeTableResponse: WireMessage, Equatable {
    public var stats = WireTableStats()
    public init(stats: WireTableStats) { self.stats = stats }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DescribeTableResponse()); embedps__v1__describe_table_response__init(p)
            p.pointee.stats = stats.c(a); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        stats = try unpackMessage(bytes, embedps__v1__describe_table_response__unpack, name: "DescribeTableResponse") { WireTableStats($0.pointee.stats) }
    }
}

public struct WireListTablesResponse: WireMessage, Equatable {
    public var tables: [String] = []
    public init(tables: [String]) { self.tables = tables }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ListTablesResponse()); embedps__v1__list_tables_response__init(p)
            p.pointee.n_tables = tables.count; p.pointee.tables = a.array(tables.map { Optional(a.string($0)) }); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        tables = try unpackMessage(bytes, embedps__v1__list_tables_response__unpack, name: "ListTablesResponse") { m in
            (0..<m.pointee.n_tables).map { swiftString(m.pointee.tables[$0]) }
        }
    }
}

public struct WireDropTableResponse: WireMessage, Equatable {
    public var dropped = false
    public init(dropped: Bool) { self.dropped = dropped }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DropTableResponse()); embedps__v1__drop_table_response__init(p)
            p.pointee.dropped = dropped ? 1 : 0; return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        dropped = try unpackMessage(bytes, embedps__v1__drop_table_response__unpack, name: "DropTableResponse") { $0.pointee.dropped != 0 }
    }
}

public struct WirePushResponse: WireMessage, Equatable {
    public var rowsUpdated: UInt64 = 0
    public init(rowsUpdated: UInt64) { self.rowsUpdated = rowsUpdated }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__PushResponse()); embedps__v1__push_response__init(p)
            p.pointee.rows_updated = rowsUpdated; return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        rowsUpdated = try unpackMessage(bytes, embedps__v1__push_response__unpack, name: "PushResponse") { $0.pointee.rows_updated }
    }
}

public struct WireShardStatusResponse: WireMessage, Equatable {
    public var shardIndex: UInt32 = 0
    public var shardMapVersion: UInt64 = 0
    public var ownedSlots: UInt32 = 0
    public var durability = ""
    public var tables: [WireTableStats] = []
    public var cacheCapacityRows: UInt64 = 0
    public var cacheHitRate: Double = 0
    public var requestsPerSecond: Double = 0
    public var rowsPerSecond: Double = 0
    public var latencyP50Ms: Double = 0
    public var latencyP99Ms: Double = 0
    public var uptimeSeconds: UInt64 = 0
    public var bytesOnDisk: UInt64 = 0
    public init() {}
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ShardStatusResponse()); embedps__v1__shard_status_response__init(p)
            p.pointee.shard_index = shardIndex; p.pointee.shard_map_version = shardMapVersion
            p.pointee.owned_slots = ownedSlots; p.pointee.durability = a.string(durability)
            p.pointee.n_tables = tables.count; p.pointee.tables = a.array(tables.map { Optional($0.c(a)) })
            p.pointee.cache_capacity_rows = cacheCapacityRows; p.pointee.cache_hit_rate = cacheHitRate
            p.pointee.requests_per_second = requestsPerSecond; p.pointee.rows_per_second = rowsPerSecond
            p.pointee.latency_p50_ms = latencyP50Ms; p.pointee.latency_p99_ms = latencyP99Ms
            p.pointee.uptime_seconds = uptimeSeconds; p.pointee.bytes_on_disk = bytesOnDisk
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__shard_status_response__unpack, name: "ShardStatusResponse") { m in
            let c = m.pointee
            var r = WireShardStatusResponse()
            r.shardIndex = c.shard_index; r.shardMapVersion = c.shard_map_version; r.ownedSlots = c.owned_slots
            r.durability = swiftString(c.durability)
            r.tables = (0..<c.n_tables).map { WireTableStats(c.tables[$0]) }
            r.cacheCapacityRows = c.cache_capacity_rows; r.cacheHitRate = c.cache_hit_rate
            r.requestsPerSecond = c.requests_per_second; r.rowsPerSecond = c.rows_per_second
            r.latencyP50Ms = c.latency_p50_ms; r.latencyP99Ms = c.latency_p99_ms
            r.uptimeSeconds = c.uptime_seconds; r.bytesOnDisk = c.bytes_on_disk
            return r
        }
    }
}

/// Mirror of `grpc.health.v1.HealthCheckRequest`.
public struct WireHealthCheckRequest: WireMessage, Equatable {
    public var service = ""
    public init(service: String) { self.service = service }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Grpc__Health__V1__HealthCheckRequest()); grpc__health__v1__health_check_request__init(p)
            p.pointee.service = a.string(service); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        service = try unpackMessage(bytes, grpc__health__v1__health_check_request__unpack, name: "HealthCheckRequest") { swiftString($0.pointee.service) }
    }
}

/// Mirror of `grpc.health.v1.HealthCheckResponse`; status 1 = SERVING, 2 = NOT_SERVING.
public struct WireHealthCheckResponse: WireMessage, Equatable {
    public var status: UInt32 = 0
    public init(status: UInt32) { self.status = status }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Grpc__Health__V1__HealthCheckResponse()); grpc__health__v1__health_check_response__init(p)
            p.pointee.status = Grpc__Health__V1__HealthCheckResponse__ServingStatus(rawValue: status); return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        status = try unpackMessage(bytes, grpc__health__v1__health_check_response__unpack, name: "HealthCheckResponse") { $0.pointee.status.rawValue }
    }
}

public struct WireFlushResponse: WireMessage, Equatable {
    public var tablesFlushed: UInt32 = 0
    public init(tablesFlushed: UInt32) { self.tablesFlushed = tablesFlushed }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__FlushResponse()); embedps__v1__flush_response__init(p)
            p.pointee.tables_flushed = tablesFlushed; return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        tablesFlushed = try unpackMessage(bytes, embedps__v1__flush_response__unpack, name: "FlushResponse") { $0.pointee.tables_flushed }
    }
}

/// Mirror of `embedps.v1.RegisterItemsRequest`.
public struct WireRegisterItemsRequest: WireMessage, Equatable {
    public var table = ""
    public var items: [UInt64] = []
    public var codes: [UInt32] = []
    public init(table: String, items: [UInt64], codes: [UInt32]) { self.table = table; self.items = items; self.codes = codes }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__RegisterItemsRequest()); embedps__v1__register_items_request__init(p)
            p.pointee.table = a.string(table)
            p.pointee.n_items = items.count; p.pointee.items = a.array(items)
            p.pointee.n_codes = codes.count; p.pointee.codes = a.array(codes)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__register_items_request__unpack, name: "RegisterItemsRequest") { m in
            let c = m.pointee
            return WireRegisterItemsRequest(table: swiftString(c.table), items: Array(UnsafeBufferPointer(start: c.items, count: c.n_items)),
                                            codes: Array(UnsafeBufferPointer(start: c.codes, count: c.n_codes)))
        }
    }
}

public struct WireRegisterItemsResponse: WireMessage, Equatable {
    public var registered: UInt64 = 0
    public var items: UInt64 = 0
    public init(registered: UInt64, items: UInt64) { self.registered = registered; self.items = items }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__RegisterItemsResponse()); embedps__v1__register_items_response__init(p)
            p.pointee.registered = registered; p.pointee.items = items; return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__register_items_response__unpack, name: "RegisterItemsResponse") {
            WireRegisterItemsResponse(registered: $0.pointee.registered, items: $0.pointee.items)
        }
    }
}

/// Mirror of `embedps.v1.SparsityReportResponse`.
public struct WireSparsityReport: WireMessage, Equatable {
    public var rows: UInt64 = 0
    public var active: UInt64 = 0
    public var inactive: UInt64 = 0
    public var fired: UInt64 = 0
    public var weightHistogram: [UInt64] = []
    public var growthHistogram: [UInt64] = []
    public var round: UInt32 = 0
    public var pushesSinceStep: UInt64 = 0
    public var storedBytes: UInt64 = 0
    public var denseBytes: UInt64 = 0
    public var activePerNewRow: UInt32 = 0
    public init() {}
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SparsityReportResponse()); embedps__v1__sparsity_report_response__init(p)
            p.pointee.rows = rows; p.pointee.active = active; p.pointee.inactive = inactive; p.pointee.fired = fired
            p.pointee.n_weight_histogram = weightHistogram.count; p.pointee.weight_histogram = a.array(weightHistogram)
            p.pointee.n_growth_histogram = growthHistogram.count; p.pointee.growth_histogram = a.array(growthHistogram)
            p.pointee.round = round; p.pointee.pushes_since_step = pushesSinceStep
            p.pointee.stored_bytes = storedBytes; p.pointee.dense_bytes = denseBytes; p.pointee.active_per_new_row = activePerNewRow
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__sparsity_report_response__unpack, name: "SparsityReportResponse") { m in
            let c = m.pointee
            var r = WireSparsityReport()
            r.rows = c.rows; r.active = c.active; r.inactive = c.inactive; r.fired = c.fired
            r.weightHistogram = Array(UnsafeBufferPointer(start: c.weight_histogram, count: c.n_weight_histogram))
            r.growthHistogram = Array(UnsafeBufferPointer(start: c.growth_histogram, count: c.n_growth_histogram))
            r.round = c.round; r.pushesSinceStep = c.pushes_since_step; r.storedBytes = c.stored_bytes
            r.denseBytes = c.dense_bytes; r.activePerNewRow = c.active_per_new_row
            return r
        }
    }
}

/// Mirror of `embedps.v1.SparsityStepRequest`.
public struct WireSparsityStepRequest: WireMessage, Equatable {
    public var table = ""
    public var prune: UInt64 = 0
    public var grow: UInt64 = 0
    public var round: UInt32 = 0
    public init(table: String, prune: UInt64, grow: UInt64, round: UInt32) { self.table = table; self.prune = prune; self.grow = grow; self.round = round }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SparsityStepRequest()); embedps__v1__sparsity_step_request__init(p)
            p.pointee.table = a.string(table); p.pointee.prune = prune; p.pointee.grow = grow; p.pointee.round = round
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__sparsity_step_request__unpack, name: "SparsityStepRequest") {
            WireSparsityStepRequest(table: swiftString($0.pointee.table), prune: $0.pointee.prune, grow: $0.pointee.grow, round: $0.pointee.round)
        }
    }
}

/// Mirror of `embedps.v1.SparsityStepResponse`.
public struct WireSparsityStepResponse: WireMessage, Equatable {
    public var pruned: UInt64 = 0
    public var grown: UInt64 = 0
    public var active: UInt64 = 0
    public var round: UInt32 = 0
    public var rows: UInt64 = 0
    public init(pruned: UInt64, grown: UInt64, active: UInt64, round: UInt32, rows: UInt64) {
        self.pruned = pruned; self.grown = grown; self.active = active; self.round = round; self.rows = rows
    }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SparsityStepResponse()); embedps__v1__sparsity_step_response__init(p)
            p.pointee.pruned = pruned; p.pointee.grown = grown; p.pointee.active = active; p.pointee.round = round
            p.pointee.rows = rows
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__sparsity_step_response__unpack, name: "SparsityStepResponse") {
            WireSparsityStepResponse(pruned: $0.pointee.pruned, grown: $0.pointee.grown, active: $0.pointee.active, round: $0.pointee.round, rows: $0.pointee.rows)
        }
    }
}
