import Vocabulary
import CXXHash

/// Turns an item's semantic-ID code sequence (c1..cL, each in 0..<K) into sub-piece row keys of one
/// semantic table (techniques.md section 2; the item's embedding is the sum of its piece rows).
///
/// Piece key spaces (before the table budget):
/// - unigram: level l (0-based) owns keys [l*K, (l+1)*K); piece = l*K + c_l.
/// - ngram(N): non-overlapping groups of N consecutive levels (the last group may be shorter); group g owns
///   K^len(g) keys after the previous groups; piece = offset_g + (codes of the group read as base-K digits).
/// - prefix(N): prefixes of length 1..min(N, L); prefix length p owns K^p keys after shorter prefixes;
///   piece = offset_p + (c1..cp as base-K digits).
/// When the key space exceeds `budget`, every piece is instead hashed into it: XXH64 of the little-endian
/// words (kind tag, position, codes of the piece) mod budget, so collisions are deterministic everywhere.
/// Pure and thread-safe.
public struct SemanticIDTokenizer: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case unigram
        case ngram(Int)
        case prefix(Int)
    }
    public let kind: Kind
    public let levels: Int
    public let codebookSize: Int
    public let budget: UInt64

    public init(kind: Kind, levels: Int, codebookSize: Int, budget: UInt64) throws(TokenizerError) {
        func bad(_ m: String) -> TokenizerError { TokenizerError("semantic tokenizer: \(m)") }
        guard levels >= 1, codebookSize >= 2, budget >= 1 else { throw bad("needs levels >= 1, codebook size >= 2, budget >= 1") }
        switch kind {
        case .unigram: break
        case .ngram(let n), .prefix(let n): guard n >= 1 else { throw bad("n-gram length must be >= 1") }
        }
        self.kind = kind; self.levels = levels; self.codebookSize = codebookSize; self.budget = budget
    }

    /// (start level, length) of each piece, in order.
    var spans: [(start: Int, length: Int)] {
        switch kind {
        case .unigram: return (0..<levels).map { ($0, 1) }
        case .ngram(let n): return stride(from: 0, to: levels, by: n).map { ($0, min(n, levels - $0)) }
        case .prefix(let n): return (1...min(n, levels)).map { (0, $0) }
        }
    }

    /// Keys each piece position owns before hashing, as (offset, size); nil on overflow.
    var ranges: [(offset: UInt64, size: UInt64)]? {
        var out: [(UInt64, UInt64)] = []
        var offset: UInt64 = 0
        for s in spans {
            var size: UInt64 = 1
            for _ in 0..<s.length {
                let (m, o) = size.multipliedReportingOverflow(by: UInt64(codebookSize)); if o { return nil }; size = m
            }
            out.append((offset, size))
            let (next, o) = offset.addingReportingOverflow(size); if o { return nil }
            offset = next
        }
        return out
    }

    /// Size of the unhashed key space (nil when it does not fit in 64 bits).
    public var keySpace: UInt64? { ranges.map { $0.reduce(0) { $0 + $1.size } } }
    /// Whether pieces are hashed into the budget.
    public var hashed: Bool { (keySpace ?? .max) > budget }
    public var piecesPerItem: Int { spans.count }

    /// The unhashed identity of each piece of one item: (position, codes of the piece).
    public func pieceIdentities(_ codes: [Int]) -> [[Int]] {
        spans.enumerated().map { position, span in [position] + Array(codes[span.start..<(span.start + span.length)]) }
    }

    /// The piece keys of one item (codes.count must be `levels`; extra codes are ignored).
    public func pieces(_ codes: [Int]) throws(TokenizerError) -> [UInt64] {
        guard codes.count >= levels else { throw TokenizerError("item has \(codes.count) codes, the tokenizer needs \(levels)") }
        if let bad = codes.prefix(levels).first(where: { $0 < 0 || $0 >= codebookSize }) {
            throw TokenizerError("code \(bad) is outside 0..<\(codebookSize)")
        }
        let kindTag: UInt64 = switch kind { case .unigram: 1; case .ngram: 2; case .prefix: 3 }
        let r = ranges, useHash = hashed
        return spans.enumerated().map { position, span in
            if useHash {
                var h = EmbedHash.xxh64(kindTag, seed: UInt64(position))
                for l in span.start..<(span.start + span.length) { h = EmbedHash.xxh64(UInt64(codes[l]), seed: h) }
                return h % budget
            }
            var value: UInt64 = 0
            for l in span.start..<(span.start + span.length) { value = value * UInt64(codebookSize) + UInt64(codes[l]) }
            return r![position].offset + value
        }
    }
}
