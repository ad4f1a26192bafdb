import Foundation

/// A versioned assignment of the 4096 slots to shards. Invariant: `owners.count == 4096` and every owner
/// is < `shardCount`. Immutable.
public struct SlotMap: Sendable, Equatable {
    public let version: UInt64
    public let shardCount: Int
    public let owners: [UInt16]

    public init(version: UInt64, shardCount: Int, owners: [UInt16]) throws(ClusterSpecError) {
        guard shardCount > 0, shardCount <= 4096 else { throw ClusterSpecError("shard count \(shardCount) must be 1...4096") }
        guard owners.count == RowAddressing.slotCount else { throw ClusterSpecError("slot map has \(owners.count) slots, expected 4096") }
        if let bad = owners.first(where: { Int($0) >= shardCount }) {
            throw ClusterSpecError("slot owner \(bad) is not a shard index (0..<\(shardCount))")
        }
        self.version = version; self.shardCount = shardCount; self.owners = owners
    }

    /// Slots split into `shards` contiguous ranges of (almost) equal size.
    public static func evenSplit(shards: Int, version: UInt64 = 1) throws(ClusterSpecError) -> SlotMap {
        guard shards > 0 else { throw ClusterSpecError("a cluster needs at least one shard") }
        let owners = (0..<RowAddressing.slotCount).map { UInt16($0 * shards / RowAddressing.slotCount) }
        return try SlotMap(version: version, shardCount: shards, owners: owners)
    }

    @inline(__always) public func owner(ofSlot slot: UInt16) -> Int { Int(owners[Int(slot)]) }
    public func slotCount(of shard: Int) -> Int { owners.reduce(0) { $0 + (Int($1) == shard ? 1 : 0) } }
}

/// A malformed cluster spec or slot map; the message says which field and how to fix it.
public struct ClusterSpecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The cluster spec file (JSON) shared by shards, trainers and tools:
/// ```json
/// { "version": 1,
///   "shards": [ { "address": "127.0.0.1:7100", "dataDir": "runs/shard0" }, { "address": "127.0.0.1:7101" } ],
///   "slotRanges": [ { "first": 0, "last": 2047, "shard": 0 }, { "first": 2048, "last": 4095, "shard": 1 } ] }
/// ```
/// `slotRanges` is optional (default: an even contiguous split); `dataDir` and `followers` (addresses of
/// read-only followers, used by the lookup service) are optional per shard.
public struct ClusterSpec: Sendable, Codable, Equatable {
    public struct Shard: Sendable, Codable, Equatable {
        public var address: String
        public var dataDir: String?
        /// Read-only followers of this shard (`embedps-server --follow`), for readers that may use them.
        public var followers: [String]?
        /// The primary epoch of this shard: raised by each failover; a primary holding a map with a higher
        /// epoch for its index than its own refuses writes (nil = 0).
        public var epoch: UInt64?
        public init(address: String, dataDir: String? = nil, followers: [String]? = nil, epoch: UInt64? = nil) {
            self.address = address; self.dataDir = dataDir; self.followers = followers; self.epoch = epoch
        }
        /// This entry as a shard map carries it (no local data directory).
        public var member: Shard { Shard(address: address, followers: followers, epoch: epoch) }
    }
    public struct SlotRange: Sendable, Codable, Equatable {
        public var first: Int
        public var last: Int
        public var shard: Int
        public init(first: Int, last: Int, shard: Int) { self.first = first; self.last = last; self.shard = shard }
    }
    public var version: UInt64
    public var shards: [Shard]
    public var slotRanges: [SlotRange]?

    public init(version: UInt64 = 1, shards: [Shard], slotRanges: [SlotRange]? = nil) {
        self.version = version; self.shards = shards; self.slotRanges = slotRanges
    }

    /// The same cluster with each shard that lists followers addressed at its first follower (reads only:
    /// followers own the same slots and refuse writes). Equal to `self` when no shard lists one.
    public var readingFromFollowers: ClusterSpec {
        var c = self
        for i in c.shards.indices { if let f = c.shards[i].followers?.first { c.shards[i].address = f } }
        return c
    }

    /// Every address of the cluster: shards, then their followers.
    public var allAddresses: [String] { shards.map(\.address) + shards.flatMap { $0.followers ?? [] } }

    public static func load(path: String) throws -> ClusterSpec {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterSpecError("cannot read cluster spec \(path): no such file (pass --cluster PATH)")
        }
        do { return try JSONDecoder().decode(ClusterSpec.self, from: data) } catch {
            throw ClusterSpecError("cluster spec \(path) is not valid: \(error)")
        }
    }

    public func encoded() throws -> Data {
        let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// The slot map this spec describes. Throws when ranges overlap, leave gaps or name unknown shards.
    public func slotMap() throws(ClusterSpecError) -> SlotMap {
        guard let ranges = slotRanges else { return try .evenSplit(shards: shards.count, version: version) }
        var owners = [Int](repeating: -1, count: RowAddressing.slotCount)
        for r in ranges {
            guard r.first >= 0, r.last < RowAddressing.slotCount, r.first <= r.last else {
                throw ClusterSpecError("slot range \(r.first)...\(r.last) is outside 0...4095")
            }
            guard r.shard >= 0, r.shard < shards.count else { throw ClusterSpecError("slot range names shard \(r.shard), spec has \(shards.count) shards") }
            for s in r.first...r.last {
                guard owners[s] < 0 else { throw ClusterSpecError("slot \(s) is assigned twice") }
                owners[s] = r.shard
            }
        }
        if let gap = owners.firstIndex(of: -1) { throw ClusterSpecError("slot \(gap) has no owner: slot ranges must cover 0...4095") }
        return try SlotMap(version: version, shardCount: shards.count, owners: owners.map { UInt16($0) })
    }
}

extension ClusterSpec {
    /// A spec of `addresses` with `map`'s owners as explicit contiguous ranges and its version.
    public init(addresses: [String], map: SlotMap) {
        self.init(members: addresses.map { Shard(address: $0) }, map: map)
    }

    /// A spec of `members` (addresses, followers, epochs) with `map`'s owners as explicit ranges and its version.
    public init(members: [Shard], map: SlotMap) {
        var ranges: [SlotRange] = []
        for (slot, owner) in map.owners.enumerated() {
            if let last = ranges.last, last.shard == Int(owner), last.last == slot - 1 { ranges[ranges.count - 1].last = slot }
            else { ranges.append(SlotRange(first: slot, last: slot, shard: Int(owner))) }
        }
        self.init(version: map.version, shards: members.map(\.member), slotRanges: ranges)
    }
}
