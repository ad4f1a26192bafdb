import Foundation
import Client

/// The history part of a user tower (FISM-style): a user is also the mean of a history table's rows over the
/// items it interacted with in train. Holds, for a set of users, the union of their train items, those items'
/// history rows, and per user the sum of its rows. Invariant: `sums[u]` is the sum of `rows` over
/// `histories[u]`, which lists (as positions in `items`) every train item of `users[u]`.
struct UserHistory {
    let dim: Int
    /// Dense item indices whose rows are held, sorted, and their ids on the history table.
    let items: [Int]
    let itemIds: [UInt64]
    let rows: FloatBuffer
    let position: [Int: Int]
    let histories: [[Int]]
    let sums: FloatBuffer

    /// `rows` holds the history rows of `items` (items.count * dim), in that order.
    init(users: [Int], split: InteractionSplit, dim: Int, items: [Int], itemIds: [UInt64], rows: FloatBuffer) {
        self.dim = dim; self.items = items; self.itemIds = itemIds; self.rows = rows
        let position = Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1, $0) })
        self.position = position
        histories = users.map { u in split.trainItemsByUser[u].sorted().compactMap { position[$0] } }
        sums = FloatBuffer(count: users.count * dim)
        for (u, h) in histories.enumerated() {
            let s = sums.base + u * dim
            for p in h { let r = rows.base + p * dim; for k in 0..<dim { s[k] += r[k] } }
        }
    }

    /// Every item's history row (evaluation and serving: all users, all items).
    init(users: [Int], split: InteractionSplit, dim: Int, itemIds: [UInt64], rows: FloatBuffer) {
        self.init(users: users, split: split, dim: dim, items: Array(itemIds.indices), itemIds: itemIds, rows: rows)
    }

    /// Pulls the history rows of every train item of `users` from `table`.
    static func pull(users: [Int], split: InteractionSplit, data: InteractionData, dim: Int, client: EmbedPSClient, table: String) async throws -> UserHistory {
        var union = Set<Int>()
        for u in users { union.formUnion(split.trainItemsByUser[u]) }
        let p = try await HistoryRows.pull(union, data: data, dim: dim, client: client, table: table)
        return UserHistory(users: users, split: split, dim: dim, items: p.items, itemIds: p.itemIds, rows: p.rows)
    }

    /// Adds the mean history row of user `u` (a position in `users`) to `v`.
    func addMean(user u: Int, into v: UnsafeMutablePointer<Float>) {
        let n = histories[u].count
        guard n > 0 else { return }
        let s = sums.base + u * dim, scale = 1 / Float(n)
        for k in 0..<dim { v[k] += s[k] * scale }
    }

    /// The divisor of user `u`'s history when training on `item`, and that item's position when it is in the
    /// history (it is left out of the mean).
    func leaveOut(item: Int, user u: Int) -> (count: Int, left: Int?) {
        let n = histories[u].count
        if let p = position[item], n > 1, histories[u].contains(p) { return (n - 1, p) }
        return (n, nil)
    }

    /// Adds user `u`'s mean history row without `item` (the example's target) to `v`.
    func addLeavingOut(item: Int, user u: Int, into v: UnsafeMutablePointer<Float>) {
        let (n, left) = leaveOut(item: item, user: u)
        guard n > 0 else { return }
        let s = sums.base + u * dim, scale = 1 / Float(n)
        if let left {
            let r = rows.base + left * dim
            for k in 0..<dim { v[k] += (s[k] - r[k]) * scale }
        } else {
            for k in 0..<dim { v[k] += s[k] * scale }
        }
    }

    /// Gradients with respect to the history rows (items.count * dim) given each example's gradient with
    /// respect to its user vector (`exampleGradients`, examples x dim; example b is user `exampleUser[b]`
    /// training on `examples[b]`), plus 2 * l2 * row for every held row.
    func gradients(examples: [Int], exampleUser: [Int], exampleGradients: UnsafePointer<Float>, l2: Float) -> FloatBuffer {
        let g = FloatBuffer(count: items.count * dim)
        var perUser = [Float](repeating: 0, count: histories.count * dim)
        for (b, item) in examples.enumerated() {
            let u = exampleUser[b]
            let (n, left) = leaveOut(item: item, user: u)
            guard n > 0 else { continue }
            let e = exampleGradients + b * dim, scale = 1 / Float(n)
            for k in 0..<dim { perUser[u * dim + k] += e[k] * scale }
            if let left { let r = g.base + left * dim; for k in 0..<dim { r[k] -= e[k] * scale } }
        }
        for (u, h) in histories.enumerated() {
            for p in h { let r = g.base + p * dim; for k in 0..<dim { r[k] += perUser[u * dim + k] } }
        }
        if l2 > 0 { for x in 0..<(items.count * dim) { g.base[x] += 2 * l2 * rows.base[x] } }
        return g
    }
}

/// The history-table rows of a set of items, pulled once for a batch (both history towers read them).
/// Invariant: `rows` holds `items.count * dim` floats, the row of `items[n]` (id `itemIds[n]`) at n * dim.
struct HistoryRows {
    /// Dense item indices, sorted, and their ids on the history table.
    let items: [Int]
    let itemIds: [UInt64]
    let rows: FloatBuffer

    static func pull(_ items: Set<Int>, data: InteractionData, dim: Int, client: EmbedPSClient, table: String) async throws -> HistoryRows {
        let sorted = items.sorted(), ids = sorted.map { data.itemIds[$0] }
        let rows = FloatBuffer(count: sorted.count * dim)
        if !sorted.isEmpty { try await client.pull(table: table, ids: ids, into: rows) }
        return HistoryRows(items: sorted, itemIds: ids, rows: rows)
    }
}
