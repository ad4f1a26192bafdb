import Foundation
import CLI
import SemanticID
import Vocabulary
import SemanticTokenizers

/// `embedps-admin semantic-ids build`: RQ-k-means codes for a catalogue, the codes file, and the quality table.
func runSemanticIDBuild(_ o: Options) throws {
    let embeddings = try ContentEmbeddings.load(embeddingsPath: o.required("embeddings"), idsPath: o.required("ids"))
    let rq = ResidualKMeans(levels: o.int("levels", default: 3), codebookSize: o.int("codes", default: 256),
                            iterations: o.int("iterations", default: 20), seed: UInt64(o.int("seed", default: 1)))
    let out = o.required("out")
    let json = o.flag("json")
    let started = Date()
    if !json { printFlush("building semantic ids: \(embeddings.ids.count) items x \(embeddings.dim) dims, \(rq.levels) levels x \(rq.codebookSize) codes") }
    let assignment = try rq.build(embeddings) { level in
        if !json { printFlush("  level \(level + 1)/\(rq.levels): k-means on \(level == 0 ? "the vectors" : "the residuals") (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)") }
    }
    try assignment.write(to: out)
    if let vocabulary = o.string("spm-vocabulary").flatMap(Int.init) {
        let spm = try SentencePieceTokenizer.train(codes: assignment.codes.map { Array($0.prefix(rq.levels)) }, levels: rq.levels,
                                                   codebookSize: rq.codebookSize, vocabularySize: vocabulary)
        try Data(spm.model).write(to: URL(fileURLWithPath: out + ".spm"))
        if !json { printFlush("wrote \(out).spm: SentencePiece model of \(spm.vocabularySize) pieces over the codes") }
    }
    let quality = SemanticIDQuality(assignment, embeddings: embeddings)
    if json {
        struct Report: Codable {
            var items: Int, levels: Int, codebookSize: Int, residualMeanSquare: [Double], collidingItems: Int, largestCollision: Int
            var quality: SemanticIDQuality, out: String, seconds: Double
        }
        print(jsonText(Report(items: embeddings.ids.count, levels: rq.levels, codebookSize: rq.codebookSize, residualMeanSquare: assignment.residualMeanSquare,
                              collidingItems: assignment.collidingItems, largestCollision: assignment.largestCollision, quality: quality,
                              out: out, seconds: Date().timeIntervalSince(started))))
        return
    }
    printFlush("wrote \(out) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; \(assignment.collidingItems) items shared a full code " +
          "(largest group \(assignment.largestCollision)) and were told apart by the disambiguation code")
    print("")
    print(renderTable(["shared prefix", "sampled pairs", "mean cosine"],
                      quality.prefixes.map { ["\($0.prefixLength)\($0.prefixLength == 0 ? " (random pairs)" : "")", "\($0.pairs)", String(format: "%.3f", $0.meanCosine)] }))
    print("")
    print(renderTable(["level", "codes used", "utilisation", "perplexity", "residual mean square"],
                      quality.levels.map { ["\($0.level)", "\($0.codesUsed)", String(format: "%.1f%%", $0.utilisation * 100), String(format: "%.1f", $0.perplexity),
                                            String(format: "%.4f", assignment.residualMeanSquare[$0.level - 1])] }))
}
