import EmbedPSWireC

// Swift mirrors of the DNIS and compact-row messages of Protos/embedps.proto (see the .proto for meanings).

@inline(__always) func buffer<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int) -> [T] { n == 0 ? [] : Array(UnsafeBufferPointer(start: p, count: n)) }

/// Mirror of `embedps.v1.DnisConfig`.
public struct WireDnisConfig: Sendable, Equatable {
    public var blocks: UInt32 = 0
    public var blockSizes: [UInt64] = []
    public var alphaLearningRate: Float = 0
    public var alphaL1: Float = 0
    public init() {}
    init(_ c: UnsafePointer<Embedps__V1__DnisConfig>) {
        let c = c.pointee
        blocks = c.blocks; blockSizes = buffer(c.block_sizes, c.n_block_sizes); alphaLearningRate = c.alpha_learning_rate; alphaL1 = c.alpha_l1
    }
    func c(_ arena: CArena) -> UnsafeMutablePointer<Embedps__V1__DnisConfig> {
        let p = arena.allocate(Embedps__V1__DnisConfig())
        embedps__v1__dnis_config__init(p)
        p.pointee.blocks = blocks; p.pointee.n_block_sizes = blockSizes.count; p.pointee.block_sizes = arena.array(blockSizes)
        p.pointee.alpha_learning_rate = alphaLearningRate; p.pointee.alpha_l1 = alphaL1
        return p
    }
}

/// Mirror of `embedps.v1.DnisBlockStats`.
public struct WireDnisBlockStats: Sendable, Equatable, Codable {
    public var rows: UInt64 = 0, active: UInt64 = 0, storedBytes: UInt64 = 0, denseBytes: UInt64 = 0
    public init(rows: UInt64 = 0, active: UInt64 = 0, storedBytes: UInt64 = 0, denseBytes: UInt64 = 0) {
        self.rows = rows; self.active = active; self.storedBytes = storedBytes; self.denseBytes = denseBytes
    }
}

/// Mirror of `embedps.v1.DnisReportResponse`.
public struct WireDnisReport: WireMessage, Equatable {
    public var pruned = false
    public var alphaVersion: UInt64 = 0
    public var alpha: [Float] = []
    public var blocks: [WireDnisBlockStats] = []
    public var frequencyHistogram: [UInt64] = []
    public var magnitudeHistogram: [UInt64] = []
    public var assignmentRound: UInt32 = 0
    public init() {}
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisReportResponse()); embedps__v1__dnis_report_response__init(p)
            p.pointee.pruned = pruned ? 1 : 0; p.pointee.alpha_version = alphaVersion
            p.pointee.n_alpha = alpha.count; p.pointee.alpha = a.array(alpha)
            p.pointee.n_blocks = blocks.count
            p.pointee.blocks = a.array(blocks.map { b -> UnsafeMutablePointer<Embedps__V1__DnisBlockStats>? in
                let q = a.allocate(Embedps__V1__DnisBlockStats()); embedps__v1__dnis_block_stats__init(q)
                q.pointee.rows = b.rows; q.pointee.active = b.active; q.pointee.stored_bytes = b.storedBytes; q.pointee.dense_bytes = b.denseBytes
                return q
            })
            p.pointee.n_frequency_histogram = frequencyHistogram.count; p.pointee.frequency_histogram = a.array(frequencyHistogram)
            p.pointee.n_magnitude_histogram = magnitudeHistogram.count; p.pointee.magnitude_histogram = a.array(magnitudeHistogram)
            p.pointee.assignment_round = assignmentRound
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_report_response__unpack, name: "DnisReportResponse") { m in
            let c = m.pointee
            var r = WireDnisReport()
            r.pruned = c.pruned != 0; r.alphaVersion = c.alpha_version; r.alpha = buffer(c.alpha, c.n_alpha)
            r.blocks = (0..<c.n_blocks).map { i in
                let b = c.blocks[i]!.pointee
                return WireDnisBlockStats(rows: b.rows, active: b.active, storedBytes: b.stored_bytes, denseBytes: b.dense_bytes)
            }
            r.frequencyHistogram = buffer(c.frequency_histogram, c.n_frequency_histogram)
            r.magnitudeHistogram = buffer(c.magnitude_histogram, c.n_magnitude_histogram)
            r.assignmentRound = c.assignment_round
            return r
        }
    }
}

/// Mirror of `embedps.v1.DnisAssignRequest`.
public struct WireDnisAssignRequest: WireMessage, Equatable {
    public var table = ""
    public var take: [UInt64] = []
    public init(table: String, take: [UInt64]) { self.table = table; self.take = take }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisAssignRequest()); embedps__v1__dnis_assign_request__init(p)
            p.pointee.table = a.string(table); p.pointee.n_take = take.count; p.pointee.take = a.array(take)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_assign_request__unpack, name: "DnisAssignRequest") {
            WireDnisAssignRequest(table: swiftString($0.pointee.table), take: buffer($0.pointee.take, $0.pointee.n_take))
        }
    }
}

/// Mirror of `embedps.v1.DnisAssignResponse`.
public struct WireDnisAssignResponse: WireMessage, Equatable {
    public var rowsPerBlock: [UInt64] = []
    public init(rowsPerBlock: [UInt64]) { self.rowsPerBlock = rowsPerBlock }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisAssignResponse()); embedps__v1__dnis_assign_response__init(p)
            p.pointee.n_rows_per_block = rowsPerBlock.count; p.pointee.rows_per_block = a.array(rowsPerBlock)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_assign_response__unpack, name: "DnisAssignResponse") {
            WireDnisAssignResponse(rowsPerBlock: buffer($0.pointee.rows_per_block, $0.pointee.n_rows_per_block))
        }
    }
}

/// Mirror of `embedps.v1.DnisAlphaRequest`.
public struct WireDnisAlphaRequest: WireMessage, Equatable {
    public var table = ""
    public var gradient: [Float] = []
    public var setVersion: UInt64 = 0
    public var setAlpha: [Float] = []
    public init(table: String, gradient: [Float] = [], setVersion: UInt64 = 0, setAlpha: [Float] = []) {
        self.table = table; self.gradient = gradient; self.setVersion = setVersion; self.setAlpha = setAlpha
    }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisAlphaRequest()); embedps__v1__dnis_alpha_request__init(p)
            p.pointee.table = a.string(table)
            p.pointee.n_gradient = gradient.count; p.pointee.gradient = a.array(gradient)
            p.pointee.set_version = setVersion
            p.pointee.n_set_alpha = setAlpha.count; p.pointee.set_alpha = a.array(setAlpha)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_alpha_request__unpack, name: "DnisAlphaRequest") {
            let c = $0.pointee
            return WireDnisAlphaRequest(table: swiftString(c.table), gradient: buffer(c.gradient, c.n_gradient), setVersion: c.set_version,
                                        setAlpha: buffer(c.set_alpha, c.n_set_alpha))
        }
    }
}

/// Mirror of `embedps.v1.DnisAlphaResponse`.
public struct WireDnisAlphaResponse: WireMessage, Equatable {
    public var version: UInt64 = 0
    public var alpha: [Float] = []
    public var pruned = false
    public init(version: UInt64, alpha: [Float], pruned: Bool) { self.version = version; self.alpha = alpha; self.pruned = pruned }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisAlphaResponse()); embedps__v1__dnis_alpha_response__init(p)
            p.pointee.version = version; p.pointee.n_alpha = alpha.count; p.pointee.alpha = a.array(alpha); p.pointee.pruned = pruned ? 1 : 0
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_alpha_response__unpack, name: "DnisAlphaResponse") {
            WireDnisAlphaResponse(version: $0.pointee.version, alpha: buffer($0.pointee.alpha, $0.pointee.n_alpha), pruned: $0.pointee.pruned != 0)
        }
    }
}

/// Mirror of `embedps.v1.DnisAlphaGradientResponse`.
public struct WireDnisAlphaGradientResponse: WireMessage, Equatable {
    public var partial: [Float] = []
    public var rows: UInt64 = 0
    public init(partial: [Float], rows: UInt64) { self.partial = partial; self.rows = rows }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisAlphaGradientResponse()); embedps__v1__dnis_alpha_gradient_response__init(p)
            p.pointee.n_partial = partial.count; p.pointee.partial = a.array(partial); p.pointee.rows = rows
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_alpha_gradient_response__unpack, name: "DnisAlphaGradientResponse") {
            WireDnisAlphaGradientResponse(partial: buffer($0.pointee.partial, $0.pointee.n_partial), rows: $0.pointee.rows)
        }
    }
}

/// Mirror of `embedps.v1.DnisPruneRequest`.
public struct WireDnisPruneRequest: WireMessage, Equatable {
    public var table = ""
    public var prune: UInt64 = 0
    public var threshold: Float = 0
    public init(table: String, prune: UInt64, threshold: Float) { self.table = table; self.prune = prune; self.threshold = threshold }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisPruneRequest()); embedps__v1__dnis_prune_request__init(p)
            p.pointee.table = a.string(table); p.pointee.prune = prune; p.pointee.threshold = threshold
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_prune_request__unpack, name: "DnisPruneRequest") {
            WireDnisPruneRequest(table: swiftString($0.pointee.table), prune: $0.pointee.prune, threshold: $0.pointee.threshold)
        }
    }
}

/// Mirror of `embedps.v1.DnisPruneResponse`.
public struct WireDnisPruneResponse: WireMessage, Equatable {
    public var pruned: UInt64 = 0, active: UInt64 = 0, rows: UInt64 = 0
    public init(pruned: UInt64, active: UInt64, rows: UInt64) { self.pruned = pruned; self.active = active; self.rows = rows }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisPruneResponse()); embedps__v1__dnis_prune_response__init(p)
            p.pointee.pruned = pruned; p.pointee.active = active; p.pointee.rows = rows
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_prune_response__unpack, name: "DnisPruneResponse") {
            WireDnisPruneResponse(pruned: $0.pointee.pruned, active: $0.pointee.active, rows: $0.pointee.rows)
        }
    }
}

/// Mirror of `embedps.v1.CompactRowsResponse`.
public struct WireCompactRows: WireMessage, Equatable {
    public var dim: UInt32 = 0
    public var masks: [UInt32] = []
    public var values: [Float] = []
    public init(dim: UInt32, masks: [UInt32], values: [Float]) { self.dim = dim; self.masks = masks; self.values = values }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__CompactRowsResponse()); embedps__v1__compact_rows_response__init(p)
            p.pointee.dim = dim; p.pointee.n_masks = masks.count; p.pointee.masks = a.array(masks)
            p.pointee.n_values = values.count; p.pointee.values = a.array(values)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__compact_rows_response__unpack, name: "CompactRowsResponse") {
            WireCompactRows(dim: $0.pointee.dim, masks: buffer($0.pointee.masks, $0.pointee.n_masks), values: buffer($0.pointee.values, $0.pointee.n_values))
        }
    }
}

/// Mirror of `embedps.v1.CompactResponse`.
public struct WireCompactResponse: WireMessage, Equatable {
    public var tablesCompacted: UInt32 = 0, bytesBefore: UInt64 = 0, bytesAfter: UInt64 = 0
    public init(tablesCompacted: UInt32, bytesBefore: UInt64, bytesAfter: UInt64) {
        self.tablesCompacted = tablesCompacted; self.bytesBefore = bytesBefore; self.bytesAfter = bytesAfter
    }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__CompactResponse()); embedps__v1__compact_response__init(p)
            p.pointee.tables_compacted = tablesCompacted; p.pointee.bytes_before = bytesBefore; p.pointee.bytes_after = bytesAfter
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__compact_response__unpack, name: "CompactResponse") {
            WireCompactResponse(tablesCompacted: $0.pointee.tables_compacted, bytesBefore: $0.pointee.bytes_before, bytesAfter: $0.pointee.bytes_after)
        }
    }
}
