import Vocabulary

/// How one id batch splits over shards: the distinct ids in first-appearance order, each id's position in
/// that list, and per shard the distinct-id indices it owns (in order). Pure; built once per request.
struct BatchPlan {
    /// Index into `unique` for each input position.
    let uniqueIndex: [Int32]
    let unique: [UInt64]
    /// Per shard: indices into `unique`.
    let byShard: [[Int32]]
    /// True when the input had no duplicate ids (then uniqueIndex[i] == i).
    let distinct: Bool

    init(ids: UnsafeBufferPointer<UInt64>, route: TableRoute, slotMap: SlotMap) {
        // Ascending input (the common case for trainers that sort their batch) is distinct without hashing.
        let ascending = isStrictlyIncreasing(ids)
        if ascending && slotMap.shardCount == 1 {
            // Every id distinct and owned by the one shard: the plan is the identity.
            let all = Array(0..<Int32(ids.count))
            uniqueIndex = all; unique = Array(ids); byShard = [all]; distinct = true
            return
        }
        var position = UInt64Map(capacity: ascending ? 0 : ids.count)
        var uniqueIndex = [Int32](repeating: 0, count: ids.count)
        var unique: [UInt64] = []
        unique.reserveCapacity(ids.count)
        var byShard = [[Int32]](repeating: [], count: slotMap.shardCount)
        // One shard owns everything: no per-id slot hashing.
        let single = slotMap.shardCount == 1
        for i in 0..<ids.count {
            let id = ids[i]
            let p = Int32(unique.count)
            if !ascending, let existing = position.getOrInsert(id, Int(p)) { uniqueIndex[i] = Int32(existing); continue }
            uniqueIndex[i] = p
            unique.append(id)
            if single { byShard[0].append(p); continue }
            let slot = route.addressing.slot(ofRowKey: route.addressing.rowKey(id))
            byShard[slotMap.owner(ofSlot: slot)].append(p)
        }
        self.uniqueIndex = uniqueIndex; self.unique = unique; self.byShard = byShard
        distinct = unique.count == ids.count
    }
}
