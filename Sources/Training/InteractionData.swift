import Foundation
import CZlib
import Vocabulary

/// Why interaction data could not be loaded; names the file and line.
public struct DataError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Reads a whole file, gunzipping when the name ends in ".gz".
public func readMaybeGzip(_ path: String) throws -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DataError("no such file \(path): pass --data DIR with ratings.csv.gz (goodbooks format: user_id,book_id,rating)")
    }
    if !path.hasSuffix(".gz") {
        guard let d = FileManager.default.contents(atPath: path) else { throw DataError("cannot read \(path)") }
        return [UInt8](d)
    }
    guard let gz = gzopen(path, "rb") else { throw DataError("cannot open \(path)") }
    defer { gzclose(gz) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buf.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
        if n < 0 { throw DataError("\(path) is not valid gzip data") }
        if n == 0 { break }
        out += buf[0..<Int(n)]
    }
    return out
}

/// One observed interaction, in file order.
public struct Interaction: Sendable, Equatable {
    public var user: UInt64
    public var item: UInt64
    public var rating: Float
}

/// Interactions of the goodbooks CSV format (`user_id,book_id,rating` with a header), kept in file order
/// (upstream order is chronological). Users and items get dense indices in ascending id order.
public struct InteractionData: Sendable {
    public let interactions: [Interaction]
    public let userIds: [UInt64]
    public let itemIds: [UInt64]
    public let userIndex: [UInt64: Int]
    public let itemIndex: [UInt64: Int]

    public init(interactions: [Interaction]) {
        self.interactions = interactions
        userIds = Array(Set(interactions.map(\.user))).sorted()
        itemIds = Array(Set(interactions.map(\.item))).sorted()
        userIndex = Dictionary(uniqueKeysWithValues: userIds.enumerated().map { ($1, $0) })
        itemIndex = Dictionary(uniqueKeysWithValues: itemIds.enumerated().map { ($1, $0) })
    }

    /// Loads a ratings file; `minRating` keeps interactions rated at least that (1 keeps all).
    public static func load(path: String, minRating: Float = 1) throws -> InteractionData {
        let bytes = try readMaybeGzip(path)
        var out: [Interaction] = []
        out.reserveCapacity(bytes.count / 12)
        var lineNo = 0
        var fields: [Substring] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true) {
            lineNo += 1
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line
            if lineNo == 1 {
                guard trimmed.hasPrefix("user_id,book_id") else {
                    throw DataError("\(path): header is '\(trimmed)', expected 'user_id,book_id,rating'")
                }
                continue
            }
            fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count >= 3, let u = UInt64(fields[0]), let i = UInt64(fields[1]), let r = Float(fields[2]) else {
                throw DataError("\(path):\(lineNo): expected user_id,book_id,rating, got '\(trimmed)'")
            }
            if r >= minRating { out.append(Interaction(user: u, item: i, rating: r)) }
        }
        guard !out.isEmpty else { throw DataError("\(path) holds no interactions") }
        return InteractionData(interactions: out)
    }
}

/// How held-out interactions are chosen.
public enum SplitKind: String, Sendable, Codable, CaseIterable {
    /// Per user, in file order, the last interaction is the test item and the one before it the validation
    /// item; every item is ranked.
    case leaveLastOut = "leave-last-out"
    /// A seeded random fraction of the items is held out with every interaction on it (half for validation,
    /// half for test); each held-out user ranks only that half's items, none of which occurs in train.
    case itemCold = "item-cold"
}

/// A reproducible split of interactions into train, validation and test (dense user and item indices).
/// Invariants: no (user, item) pair of validation or test is in train; with `.itemCold`, no interaction of a
/// validation or test candidate item is in train and the two candidate sets are disjoint.
public struct InteractionSplit: Sendable {
    public let kind: SplitKind
    /// (user index, item index) pairs.
    public let train: [(user: Int, item: Int)]
    public let validation: [(user: Int, item: Int)]
    public let test: [(user: Int, item: Int)]
    /// Items each user interacted with in train (dense indices), for negative sampling and masking.
    public let trainItemsByUser: [Set<Int>]
    /// Train interaction count per item.
    public let itemPopularity: [Int]
    /// Per user, its train items in the data file's order (upstream time order for goodbooks), repeats kept:
    /// the sequence a recency-aware user tower reads.
    public let trainSequences: [[Int]]
    /// The train pairs in the order of the data file (upstream time order for goodbooks), for streaming runs.
    public let trainInFileOrder: [(user: Int, item: Int)]
    /// Items a model may train on (negatives are drawn from these): every item with leave-last-out, the items
    /// not held out with item-cold.
    public let trainableItems: [Int]
    /// Items ranked for a validation / test user: empty = every item (leave-last-out); the held-out items of
    /// that half (item-cold).
    public let validationCandidates: [Int]
    public let testCandidates: [Int]

    /// The leave-last-out split: per user, in file order (chronological upstream), the last interaction is
    /// the test item, the one before it the validation item, the rest train. Users with fewer than 3
    /// interactions keep everything in train.
    public init(_ data: InteractionData) {
        var byUser = [[Int]](repeating: [], count: data.userIds.count)
        for x in data.interactions { byUser[data.userIndex[x.user]!].append(data.itemIndex[x.item]!) }
        var train: [(Int, Int)] = [], validation: [(Int, Int)] = [], test: [(Int, Int)] = []
        var sets = [Set<Int>](repeating: [], count: byUser.count)
        var popularity = [Int](repeating: 0, count: data.itemIds.count)
        for (u, items) in byUser.enumerated() {
            var trainPart = items
            if items.count >= 3 {
                test.append((u, items[items.count - 1]))
                validation.append((u, items[items.count - 2]))
                trainPart = Array(items.dropLast(2))
            }
            for i in trainPart { train.append((u, i)); sets[u].insert(i); popularity[i] += 1 }
        }
        trainSequences = byUser.map { $0.count >= 3 ? Array($0.dropLast(2)) : $0 }
        kind = .leaveLastOut
        self.train = train; self.validation = validation; self.test = test
        trainItemsByUser = sets; itemPopularity = popularity
        // A user's k-th interaction in file order is train unless it is one of the last two (held out).
        var seen = [Int](repeating: 0, count: byUser.count)
        var inOrder: [(user: Int, item: Int)] = []
        inOrder.reserveCapacity(train.count)
        for x in data.interactions {
            let u = data.userIndex[x.user]!, k = seen[u]
            seen[u] += 1
            if byUser[u].count < 3 || k < byUser[u].count - 2 { inOrder.append((u, data.itemIndex[x.item]!)) }
        }
        trainInFileOrder = inOrder
        trainableItems = Array(0..<data.itemIds.count)
        validationCandidates = []; testCandidates = []
    }

    /// The item-cold split: `fraction` of the items (at least 2), chosen by a seeded shuffle, are held out with
    /// all their interactions; the first half of them is the validation set, the rest the test set. Every
    /// other interaction is train, in file order. A (user, item) pair rated twice is held out once.
    public init(itemColdFrom data: InteractionData, fraction: Double, seed: UInt64) {
        let nItems = data.itemIds.count
        var order = Array(0..<nItems)
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ 0xC01D)
        for i in stride(from: nItems - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let cold = min(nItems, max(2, Int((Double(nItems) * fraction).rounded())))
        let validationItems = Set(order[0..<cold / 2]), testItems = Set(order[cold / 2..<cold])
        var train: [(user: Int, item: Int)] = [], validation: [(user: Int, item: Int)] = [], test: [(user: Int, item: Int)] = []
        var sets = [Set<Int>](repeating: [], count: data.userIds.count)
        var heldOut = Set<Int>()  // user * nItems + item, held out once
        var popularity = [Int](repeating: 0, count: nItems)
        var sequences = [[Int]](repeating: [], count: data.userIds.count)
        for x in data.interactions {
            let u = data.userIndex[x.user]!, i = data.itemIndex[x.item]!
            if validationItems.contains(i) || testItems.contains(i) {
                guard heldOut.insert(u * nItems + i).inserted else { continue }
                if validationItems.contains(i) { validation.append((u, i)) } else { test.append((u, i)) }
            } else {
                train.append((u, i)); sets[u].insert(i); popularity[i] += 1; sequences[u].append(i)
            }
        }
        trainSequences = sequences
        kind = .itemCold
        self.train = train; self.validation = validation; self.test = test
        trainItemsByUser = sets; itemPopularity = popularity; trainInFileOrder = train
        trainableItems = (0..<nItems).filter { !validationItems.contains($0) && !testItems.contains($0) }
        validationCandidates = validationItems.sorted(); testCandidates = testItems.sorted()
    }
}
