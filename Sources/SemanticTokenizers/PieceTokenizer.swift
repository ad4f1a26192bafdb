import Vocabulary

/// A tokenizer settings or input defect; the text names it.
public struct TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The tokenizer of a semantic table: n-gram layouts or a SentencePiece model. Thread-safe.
public enum PieceTokenizer: Sendable {
    case ngram(SemanticIDTokenizer)
    case sentencePiece(SentencePieceTokenizer)

    public func pieces(_ codes: [Int]) throws(TokenizerError) -> [UInt64] {
        switch self {
        case .ngram(let t): try t.pieces(codes)
        case .sentencePiece(let t): try t.pieces(codes)
        }
    }
    /// Most pieces one item can have.
    public var maxPiecesPerItem: Int {
        switch self { case .ngram(let t): t.piecesPerItem; case .sentencePiece(let t): t.levels }
    }
    public var codebookSize: Int {
        switch self { case .ngram(let t): t.codebookSize; case .sentencePiece(let t): t.codebookSize }
    }
}

extension SemanticConfig {
    /// The tokenizer these settings describe (loads a SentencePiece model); throws when they cannot make one.
    public func makeTokenizer() throws(TokenizerError) -> PieceTokenizer {
        let kind: SemanticIDTokenizer.Kind
        switch tokenizer {
        case .unigram: kind = .unigram
        case .ngram(let n): kind = .ngram(n)
        case .prefix(let n): kind = .prefix(n)
        case .sentencePiece(let model):
            let spm = try SentencePieceTokenizer(model: model, levels: levels, codebookSize: codebookSize)
            guard UInt64(spm.vocabularySize) <= budget else {
                throw TokenizerError("SentencePiece vocabulary \(spm.vocabularySize) exceeds the table budget \(budget)")
            }
            return .sentencePiece(spm)
        }
        return .ngram(try SemanticIDTokenizer(kind: kind, levels: levels, codebookSize: codebookSize, budget: budget))
    }
}
