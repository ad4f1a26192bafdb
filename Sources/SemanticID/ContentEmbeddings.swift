import Foundation

/// Item content embeddings: `count` rows of `dim` float32 (row-major, little-endian file), row r belonging
/// to `ids[r]` (the `item_embeddings.f32` + `item_ids.txt` format of the goodbooks data).
/// Invariant: `vectors.count == ids.count * dim`.
public struct ContentEmbeddings: Sendable {
    public let ids: [UInt64]
    public let dim: Int
    public let vectors: [Float]

    public init(ids: [UInt64], dim: Int, vectors: [Float]) throws(SemanticIDError) {
        guard dim > 0, vectors.count == ids.count * dim else {
            throw SemanticIDError("\(vectors.count) floats is not \(ids.count) items x \(dim) dims")
        }
        self.ids = ids; self.dim = dim; self.vectors = vectors
    }

    /// Loads `embeddingsPath` (float32 LE) and `idsPath` (one id per line); the dimension is the file size
    /// divided by the id count.
    public static func load(embeddingsPath: String, idsPath: String) throws -> ContentEmbeddings {
        guard let idText = try? String(contentsOfFile: idsPath, encoding: .utf8) else {
            throw SemanticIDError("cannot read item ids \(idsPath) (one id per line, same order as the embedding rows)")
        }
        var ids: [UInt64] = []
        for (n, line) in idText.split(separator: "\n").enumerated() {
            guard let id = UInt64(line.trimmingCharacters(in: .whitespaces)) else { throw SemanticIDError("\(idsPath):\(n + 1): '\(line)' is not an id") }
            ids.append(id)
        }
        guard let data = FileManager.default.contents(atPath: embeddingsPath) else {
            throw SemanticIDError("cannot read embeddings \(embeddingsPath) (float32 little-endian, items x dim)")
        }
        guard !ids.isEmpty, data.count % (4 * ids.count) == 0 else {
            throw SemanticIDError("\(embeddingsPath) has \(data.count) bytes, not a multiple of 4 x \(ids.count) items")
        }
        let dim = data.count / 4 / ids.count
        let vectors = data.withUnsafeBytes { raw in (0..<(ids.count * dim)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        return try ContentEmbeddings(ids: ids, dim: dim, vectors: vectors)
    }
}

/// A failure of semantic-ID building, naming the file or parameter and the fix.
public struct SemanticIDError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
