import Foundation
import Vocabulary
import CSentencePiece

/// A SentencePiece model over semantic-ID code sequences (Singh et al. 2023): each (level, code) is rendered
/// as one level-tagged character (U+F0000 + level*K + code, Unicode private use), an item is the string of its
/// L characters, and the model (trained with items repeated by how often they are seen) learns frequent code
/// runs as single pieces while rare ones fall back to short pieces. Piece ids (0..<vocabulary size) are the
/// item's row keys in a semantic table whose size is the vocabulary. Immutable after creation; thread-safe
/// for encoding (SentencePiece's processor is const while encoding).
public final class SentencePieceTokenizer: @unchecked Sendable {
    public let levels: Int
    public let codebookSize: Int
    /// The serialized model (what a shard stores to encode the same way).
    public let model: [UInt8]
    private let handle: OpaquePointer

    static let base: UInt32 = 0xF0000

    public init(model: [UInt8], levels: Int, codebookSize: Int) throws(TokenizerError) {
        var error: UnsafeMutablePointer<CChar>? = nil
        let h = model.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { embedps_spm_load($0.baseAddress, b.count, &error) }
        }
        guard let h else {
            defer { free(error) }
            throw TokenizerError("cannot load the SentencePiece model: \(error.map { String(cString: $0) } ?? "unknown error")")
        }
        handle = h; self.model = model; self.levels = levels; self.codebookSize = codebookSize
    }
    deinit { embedps_spm_free(handle) }

    public var vocabularySize: Int { Int(embedps_spm_vocab_size(handle)) }

    static func render(_ codes: [Int], levels: Int, codebookSize: Int) throws(TokenizerError) -> String {
        guard codes.count >= levels else { throw TokenizerError("item has \(codes.count) codes, expected \(levels)") }
        var s = String.UnicodeScalarView()
        for l in 0..<levels {
            let c = codes[l]
            guard c >= 0, c < codebookSize, let u = Unicode.Scalar(base + UInt32(l * codebookSize + c)) else {
                throw TokenizerError("code \(c) at level \(l + 1) is outside 0..<\(codebookSize)")
            }
            s.append(u)
        }
        return String(s)
    }

    /// Trains a model of `vocabularySize` pieces over item code sequences; `weights[i]` (default 1) is how
    /// many times item i is repeated in the training corpus (capped at 100 to bound its size).
    public static func train(codes: [[Int]], weights: [Int]? = nil, levels: Int, codebookSize: Int,
                             vocabularySize: Int) throws(TokenizerError) -> SentencePieceTokenizer {
        guard levels * codebookSize <= 65_534 else { throw TokenizerError("levels x codes must be <= 65534 to render codes as characters") }
        var sentences: [String] = []
        for (i, c) in codes.enumerated() {
            let s = try render(c, levels: levels, codebookSize: codebookSize)
            for _ in 0..<max(1, min(100, weights?[i] ?? 1)) { sentences.append(s) }
        }
        let args = "--vocab_size=\(vocabularySize) --model_type=unigram --character_coverage=1.0 --split_by_whitespace=false " +
            "--add_dummy_prefix=false --remove_extra_whitespaces=false --normalization_rule_name=identity " +
            "--max_sentencepiece_length=\(levels) --bos_id=-1 --eos_id=-1 --pad_id=-1 --unk_id=0 --hard_vocab_limit=false " +
            "--shuffle_input_sentence=false --num_threads=1 --input_sentence_size=0 --minloglevel=1"
        let cStrings = sentences.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var model: UnsafeMutablePointer<CChar>? = nil, length = 0
        var error: UnsafeMutablePointer<CChar>? = nil
        let rc = cStrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { p in
            embedps_spm_train(p.baseAddress, p.count, args, &model, &length, &error)
        }
        guard rc == 0, let model else {
            defer { free(error) }
            throw TokenizerError("SentencePiece training failed (vocabulary \(vocabularySize) for \(Set(sentences).count) distinct items): " +
                                  "\(error.map { String(cString: $0) } ?? "unknown error"); try a smaller --vocabulary or more items")
        }
        defer { free(model) }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: model, count: length))
        return try SentencePieceTokenizer(model: bytes, levels: levels, codebookSize: codebookSize)
    }

    /// Row keys (piece ids) of one item.
    public func pieces(_ codes: [Int]) throws(TokenizerError) -> [UInt64] {
        var text = try Self.render(codes, levels: levels, codebookSize: codebookSize)
        var ids = [Int32](repeating: 0, count: levels + 4)
        let n = text.withUTF8 { u in
            u.withMemoryRebound(to: CChar.self) { c in embedps_spm_encode(handle, c.baseAddress, c.count, &ids, ids.count) }
        }
        guard n >= 0, n <= ids.count else { throw TokenizerError("SentencePiece could not encode an item") }
        return ids.prefix(Int(n)).map { UInt64($0) }
    }
}
