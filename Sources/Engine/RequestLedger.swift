import Foundation
import Vocabulary

/// The most recent push request ids of one table on one shard with the rows each updated, so a retried push
/// (its acknowledgement lost) is answered without being applied twice. Bounded FIFO of `capacity` ids;
/// rebuilt on restart from the checkpointed copy plus the ids in replayed log records. Not thread-safe (the
/// table's exclusive lock guards it).
struct RequestLedger {
    let capacity: Int
    private var rows: [RequestID: UInt32] = [:]
    private var order: [RequestID] = []
    private var next = 0

    init(capacity: Int) { self.capacity = capacity }

    func rowsUpdated(by id: RequestID) -> Int? { rows[id].map(Int.init) }

    mutating func record(_ id: RequestID, rows n: Int) {
        guard rows[id] == nil else { return }
        if order.count < capacity { order.append(id) } else {
            rows.removeValue(forKey: order[next])
            order[next] = id
            next = (next + 1) % capacity
        }
        rows[id] = UInt32(clamping: n)
    }

    /// [count u32][(high u64, low u64, rows u32) ...], oldest first, little-endian.
    var encoded: [UInt8] {
        let ids = order.count < capacity ? order : Array(order[next...] + order[..<next])
        var out = [UInt8](repeating: 0, count: 4 + 20 * ids.count)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(ids.count), as: UInt32.self)
            for (i, id) in ids.enumerated() {
                b.storeBytes(of: id.high, toByteOffset: 4 + 20 * i, as: UInt64.self)
                b.storeBytes(of: id.low, toByteOffset: 12 + 20 * i, as: UInt64.self)
                b.storeBytes(of: rows[id] ?? 0, toByteOffset: 20 + 20 * i, as: UInt32.self)
            }
        }
        return out
    }

    mutating func load(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { b in
            guard b.count >= 4 else { return }
            let n = Int(b.loadUnaligned(as: UInt32.self))
            guard b.count == 4 + 20 * n else { return }
            for i in 0..<n {
                record(RequestID(high: b.loadUnaligned(fromByteOffset: 4 + 20 * i, as: UInt64.self),
                                 low: b.loadUnaligned(fromByteOffset: 12 + 20 * i, as: UInt64.self)),
                       rows: Int(b.loadUnaligned(fromByteOffset: 20 + 20 * i, as: UInt32.self)))
            }
        }
    }
}
