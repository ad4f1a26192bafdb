import Foundation
import CLI
import Client
import SemanticID
import Vocabulary
import SemanticTokenizers

/// Semantic IDs: building codes from content embeddings (no cluster) and registering them with a table.
let semanticIDCommands: [AdminCommand] = [
    AdminCommand(words: ["semantic-ids", "build"], usage: """
      semantic-ids build --embeddings F32 --ids TXT --out CODES.tsv [--levels 3] [--codes 256]
                        [--iterations 20] [--seed 1] [--spm-vocabulary N]
                                     semantic IDs by residual k-means over item content embeddings (no
                                     cluster needed); prints prefix-similarity and codebook-utilisation tables;
                                     --spm-vocabulary also writes CODES.tsv.spm (a SentencePiece model)
    """, needsCluster: false) { c in try runSemanticIDBuild(c.o) },
    AdminCommand(words: ["semantic-ids", "register"], usage: """
      semantic-ids register --table T --codes-file CODES.tsv [--levels L]
                                     registers the items' codes (default: all but the disambiguation code)
    """) { c in
        let admin = c.admin
        let path = c.o.required("codes-file"), table = c.o.required("table")
        let (items, codes) = try readCodesFile(path, levels: c.o.string("levels").flatMap(Int.init))
        let t0 = Date()
        let total = try await admin.registerItems(table: table, items: items, codes: codes)
        if c.json { print(jsonText(["registered": items.count, "items": total])) }
        else { print("registered \(items.count) items from \(path) into \(table) on \(admin.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (\(total) items known)") }
    },
]

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

/// Reads a codes file written by `semantic-ids build` (`item_id<TAB>c1 c2 ...`; '#' comments and the header
/// skipped), keeping the first `levels` codes of each item (all but the disambiguation code by default).
func readCodesFile(_ path: String, levels: Int?) throws -> ([UInt64], [[Int]]) {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ClientError.invalidArgument("cannot read codes file \(path)") }
    var items: [UInt64] = [], codes: [[Int]] = []
    for (n, line) in text.split(separator: "\n").enumerated() where !line.hasPrefix("#") && !line.hasPrefix("item_id") {
        let parts = line.split(separator: "\t")
        guard parts.count == 2, let item = UInt64(parts[0]) else { throw ClientError.invalidArgument("\(path):\(n + 1): expected item_id<TAB>codes") }
        let c = parts[1].split(separator: " ").compactMap { Int($0) }
        let keep = levels ?? max(1, c.count - 1)
        guard c.count >= keep else { throw ClientError.invalidArgument("\(path):\(n + 1): \(c.count) codes, need \(keep)") }
        items.append(item); codes.append(Array(c.prefix(keep)))
    }
    return (items, codes)
}

