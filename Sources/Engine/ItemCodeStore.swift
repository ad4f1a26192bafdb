import Foundation
import Vocabulary
import Storage

/// The semantic-ID codes of the items of one semantic table on one shard, persisted in the column family
/// "items.<table>" (key: item id as 8 big-endian bytes; value: `levels` little-endian UInt16 codes) and held
/// in memory. Registration is durable (synced) before it returns. Thread-safe (one lock).
final class ItemCodeStore: @unchecked Sendable {
    let levels: Int
    private let db: RocksDatabase
    private let family: ColumnFamily
    private let lock = NSLock()
    private var codes: [UInt64: [UInt16]] = [:]
    /// Bumped by every registration.
    private var version = 0

    init(db: RocksDatabase, family: ColumnFamily, levels: Int) throws {
        self.db = db; self.family = family; self.levels = levels
        try db.scan(family) { k, v in
            guard k.count == 8, v.count == 2 * levels else { return true }
            let item = UInt64(bigEndian: k.loadUnaligned(as: UInt64.self))
            codes[item] = (0..<levels).map { UInt16(littleEndian: v.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
            return true
        }
    }

    var count: Int { lock.withLock { codes.count } }

    /// Every registered item's codes (a copy) and the store version they belong to.
    func snapshot() -> (version: Int, codes: [[Int]]) { lock.withLock { (version, codes.values.map { $0.map(Int.init) }) } }
    var currentVersion: Int { lock.withLock { version } }

    /// Up to `limit` items with ids above `after` (all when nil), in id order, with their codes flattened.
    func page(after: UInt64?, limit: Int) -> (items: [UInt64], codes: [UInt32]) {
        lock.withLock {
            let ids = codes.keys.filter { after == nil || $0 > after! }.sorted().prefix(limit)
            return (Array(ids), ids.flatMap { codes[$0]!.map(UInt32.init) })
        }
    }

    func codes(of item: UInt64) -> [Int]? { lock.withLock { codes[item].map { $0.map(Int.init) } } }

    /// Registers (or replaces) items' codes: `flat` holds items.count * levels codes, item-major.
    func register(items: [UInt64], flat: [UInt32]) throws {
        let batch = WriteBatch()
        var parsed: [(UInt64, [UInt16])] = []
        for (i, item) in items.enumerated() {
            let c = flat[(i * levels)..<((i + 1) * levels)].map { UInt16($0) }
            var key = item.bigEndian
            let value = c.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
            withUnsafeBytes(of: &key) { k in value.withUnsafeBytes { v in batch.put(family, key: k, value: v) } }
            parsed.append((item, c))
        }
        try db.write(batch, sync: true)
        lock.withLock { for (item, c) in parsed { codes[item] = c }; version += 1 }
    }
}
