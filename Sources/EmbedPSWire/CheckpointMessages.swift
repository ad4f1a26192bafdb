import EmbedPSWireC

// Swift mirrors of the cluster-checkpoint messages of Protos/embedps.proto.

/// Mirror of `embedps.v1.CheckpointRequest`.
public struct WireCheckpointRequest: WireMessage, Equatable {
    public var name = ""
    public var freezeSeconds: UInt32 = 0
    public init(name: String, freezeSeconds: UInt32 = 0) { self.name = name; self.freezeSeconds = freezeSeconds }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__CheckpointRequest()); embedps__v1__checkpoint_request__init(p)
            p.pointee.name = a.string(name); p.pointee.freeze_seconds = freezeSeconds
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__checkpoint_request__unpack, name: "CheckpointRequest") {
            WireCheckpointRequest(name: swiftString($0.pointee.name), freezeSeconds: $0.pointee.freeze_seconds)
        }
    }
}

/// Mirror of `embedps.v1.FreezeResponse`.
public struct WireFreezeResponse: WireMessage, Equatable {
    public var frozen = false
    public init(frozen: Bool) { self.frozen = frozen }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__FreezeResponse()); embedps__v1__freeze_response__init(p)
            p.pointee.frozen = frozen ? 1 : 0
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        frozen = try unpackMessage(bytes, embedps__v1__freeze_response__unpack, name: "FreezeResponse") { $0.pointee.frozen != 0 }
    }
}

/// Mirror of `embedps.v1.CheckpointInfo`.
public struct WireCheckpointInfo: WireMessage, Equatable, Codable {
    public var name = ""
    public var shardIndex: UInt32 = 0
    public var shardCount: UInt32 = 0
    public var shardMapVersion: UInt64 = 0
    public var createdUnixMs: UInt64 = 0
    public var tables: [String] = []
    public var bytes: UInt64 = 0
    public init() {}
    init(_ c: UnsafePointer<Embedps__V1__CheckpointInfo>) {
        let c = c.pointee
        name = swiftString(c.name); shardIndex = c.shard_index; shardCount = c.shard_count; shardMapVersion = c.shard_map_version
        createdUnixMs = c.created_unix_ms; tables = (0..<c.n_tables).map { swiftString(c.tables[$0]) }; bytes = c.bytes
    }
    func c(_ a: CArena) -> UnsafeMutablePointer<Embedps__V1__CheckpointInfo> {
        let p = a.allocate(Embedps__V1__CheckpointInfo()); embedps__v1__checkpoint_info__init(p)
        p.pointee.name = a.string(name); p.pointee.shard_index = shardIndex; p.pointee.shard_count = shardCount
        p.pointee.shard_map_version = shardMapVersion; p.pointee.created_unix_ms = createdUnixMs
        p.pointee.n_tables = tables.count; p.pointee.tables = a.array(tables.map { Optional(a.string($0)) }); p.pointee.bytes = bytes
        return p
    }
    public func encoded() -> [UInt8] { encodeC { c($0) } }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__checkpoint_info__unpack, name: "CheckpointInfo") { WireCheckpointInfo($0) }
    }
}

/// Mirror of `embedps.v1.ListCheckpointsResponse`.
public struct WireListCheckpointsResponse: WireMessage, Equatable {
    public var checkpoints: [WireCheckpointInfo] = []
    public init(checkpoints: [WireCheckpointInfo]) { self.checkpoints = checkpoints }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ListCheckpointsResponse()); embedps__v1__list_checkpoints_response__init(p)
            p.pointee.n_checkpoints = checkpoints.count; p.pointee.checkpoints = a.array(checkpoints.map { Optional($0.c(a)) })
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        checkpoints = try unpackMessage(bytes, embedps__v1__list_checkpoints_response__unpack, name: "ListCheckpointsResponse") { m in
            (0..<m.pointee.n_checkpoints).map { WireCheckpointInfo(m.pointee.checkpoints[$0]!) }
        }
    }
}

/// Mirror of `embedps.v1.ExportRowsRequest`.
public struct WireExportRowsRequest: WireMessage, Equatable {
    public var table = ""
    public var cursor: (slot: UInt32, key: UInt64)? = nil
    public var limit: UInt32 = 0
    public init(table: String, cursor: (slot: UInt32, key: UInt64)?, limit: UInt32) { self.table = table; self.cursor = cursor; self.limit = limit }
    public static func == (a: Self, b: Self) -> Bool { a.table == b.table && a.cursor?.slot == b.cursor?.slot && a.cursor?.key == b.cursor?.key && a.limit == b.limit }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ExportRowsRequest()); embedps__v1__export_rows_request__init(p)
            p.pointee.table = a.string(table); p.pointee.limit = limit
            if let c = cursor { p.pointee.has_cursor = 1; p.pointee.after_slot = c.slot; p.pointee.after_key = c.key }
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__export_rows_request__unpack, name: "ExportRowsRequest") {
            let c = $0.pointee
            return WireExportRowsRequest(table: swiftString(c.table), cursor: c.has_cursor != 0 ? (c.after_slot, c.after_key) : nil, limit: c.limit)
        }
    }
}

/// Mirror of `embedps.v1.ExportRowsResponse`.
public struct WireExportRowsResponse: WireMessage, Equatable {
    public var dim: UInt32 = 0
    public var keys: [UInt64] = []
    public var values: [Float] = []
    public var done = false
    public var nextSlot: UInt32 = 0
    public var nextKey: UInt64 = 0
    public init() {}
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ExportRowsResponse()); embedps__v1__export_rows_response__init(p)
            p.pointee.dim = dim; p.pointee.n_keys = keys.count; p.pointee.keys = a.array(keys)
            if !values.isEmpty {
                let bytes = values.withUnsafeBytes { Array($0) }
                p.pointee.values = ProtobufCBinaryData(len: bytes.count, data: a.array(bytes))
            }
            p.pointee.done = done ? 1 : 0; p.pointee.next_slot = nextSlot; p.pointee.next_key = nextKey
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__export_rows_response__unpack, name: "ExportRowsResponse") {
            let c = $0.pointee
            var r = WireExportRowsResponse()
            r.dim = c.dim; r.keys = buffer(c.keys, c.n_keys)
            let n = c.values.len / 4
            r.values = n == 0 ? [] : [Float](unsafeUninitializedCapacity: n) { b, count in
                UnsafeMutableRawPointer(b.baseAddress!).copyMemory(from: c.values.data, byteCount: n * 4); count = n
            }
            r.done = c.done != 0; r.nextSlot = c.next_slot; r.nextKey = c.next_key
            return r
        }
    }
}
