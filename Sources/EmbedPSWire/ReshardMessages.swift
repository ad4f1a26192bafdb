import EmbedPSWireC

// Swift mirrors of the live-resharding messages of Protos/embedps.proto.

/// Mirror of `embedps.v1.ShardMapRequest` / `ShardMapResponse` (same field 1).
public struct WireShardMap: WireMessage, Equatable {
    public var specJSON = ""
    public var version: UInt64 = 0
    public var movingSlots: [UInt32] = []
    public init(specJSON: String, version: UInt64 = 0, movingSlots: [UInt32] = []) {
        self.specJSON = specJSON; self.version = version; self.movingSlots = movingSlots
    }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__ShardMapResponse()); embedps__v1__shard_map_response__init(p)
            p.pointee.spec_json = a.string(specJSON); p.pointee.version = version
            p.pointee.n_moving_slots = movingSlots.count; p.pointee.moving_slots = a.array(movingSlots)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__shard_map_response__unpack, name: "ShardMap") {
            WireShardMap(specJSON: swiftString($0.pointee.spec_json), version: $0.pointee.version,
                         movingSlots: buffer($0.pointee.moving_slots, $0.pointee.n_moving_slots))
        }
    }
}

/// Mirror of `embedps.v1.SlotsRequest`.
public struct WireSlotsRequest: WireMessage, Equatable {
    public var slots: [UInt32] = []
    public init(slots: [UInt32]) { self.slots = slots }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SlotsRequest()); embedps__v1__slots_request__init(p)
            p.pointee.n_slots = slots.count; p.pointee.slots = a.array(slots)
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        slots = try unpackMessage(bytes, embedps__v1__slots_request__unpack, name: "SlotsRequest") { buffer($0.pointee.slots, $0.pointee.n_slots) }
    }
}

/// Mirror of `embedps.v1.MigrationResponse`.
public struct WireMigrationResponse: WireMessage, Equatable {
    public var rows: UInt64 = 0
    public init(rows: UInt64) { self.rows = rows }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__MigrationResponse()); embedps__v1__migration_response__init(p)
            p.pointee.rows = rows
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        rows = try unpackMessage(bytes, embedps__v1__migration_response__unpack, name: "MigrationResponse") { $0.pointee.rows }
    }
}

/// Mirror of `embedps.v1.SlotRowsRequest`.
public struct WireSlotRowsRequest: WireMessage, Equatable {
    public var table = ""
    public var slot: UInt32 = 0
    public var after: UInt64? = nil
    public var limit: UInt32 = 0
    public init(table: String, slot: UInt32, after: UInt64?, limit: UInt32) { self.table = table; self.slot = slot; self.after = after; self.limit = limit }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SlotRowsRequest()); embedps__v1__slot_rows_request__init(p)
            p.pointee.table = a.string(table); p.pointee.slot = slot; p.pointee.limit = limit
            if let after { p.pointee.has_after = 1; p.pointee.after = after }
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__slot_rows_request__unpack, name: "SlotRowsRequest") {
            let c = $0.pointee
            return WireSlotRowsRequest(table: swiftString(c.table), slot: c.slot, after: c.has_after != 0 ? c.after : nil, limit: c.limit)
        }
    }
}

/// Mirror of `embedps.v1.SlotRows`.
public struct WireSlotRows: WireMessage, Equatable {
    public var table = ""
    public var keys: [UInt64] = []
    public var rows: [[UInt8]] = []
    public var done = false
    public init(table: String, keys: [UInt64], rows: [[UInt8]], done: Bool) { self.table = table; self.keys = keys; self.rows = rows; self.done = done }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__SlotRows()); embedps__v1__slot_rows__init(p)
            p.pointee.table = a.string(table); p.pointee.n_keys = keys.count; p.pointee.keys = a.array(keys)
            p.pointee.n_rows = rows.count
            p.pointee.rows = a.array(rows.map { ProtobufCBinaryData(len: $0.count, data: a.array($0)) })
            p.pointee.done = done ? 1 : 0
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__slot_rows__unpack, name: "SlotRows") {
            let c = $0.pointee
            let rows = (0..<c.n_rows).map { i -> [UInt8] in
                let d = c.rows[i]
                return d.len == 0 ? [] : Array(UnsafeBufferPointer(start: d.data, count: d.len))
            }
            return WireSlotRows(table: swiftString(c.table), keys: buffer(c.keys, c.n_keys), rows: rows, done: c.done != 0)
        }
    }
}

/// Mirror of `embedps.v1.DnisState`.
public struct WireDnisState: WireMessage, Equatable {
    public var table = ""
    public var pruned = false
    public var alphaVersion: UInt64 = 0
    public var alpha: [Float] = []
    public var threshold: Float = 0
    public var assignmentRound: UInt32 = 0
    public init(table: String, pruned: Bool, alphaVersion: UInt64, alpha: [Float], threshold: Float, assignmentRound: UInt32) {
        self.table = table; self.pruned = pruned; self.alphaVersion = alphaVersion; self.alpha = alpha
        self.threshold = threshold; self.assignmentRound = assignmentRound
    }
    public func encoded() -> [UInt8] {
        encodeC { a in
            let p = a.allocate(Embedps__V1__DnisState()); embedps__v1__dnis_state__init(p)
            p.pointee.table = a.string(table); p.pointee.pruned = pruned ? 1 : 0; p.pointee.alpha_version = alphaVersion
            p.pointee.n_alpha = alpha.count; p.pointee.alpha = a.array(alpha)
            p.pointee.threshold = threshold; p.pointee.assignment_round = assignmentRound
            return p
        }
    }
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        self = try unpackMessage(bytes, embedps__v1__dnis_state__unpack, name: "DnisState") {
            let c = $0.pointee
            return WireDnisState(table: swiftString(c.table), pruned: c.pruned != 0, alphaVersion: c.alpha_version, alpha: buffer(c.alpha, c.n_alpha),
                                 threshold: c.threshold, assignmentRound: c.assignment_round)
        }
    }
}
