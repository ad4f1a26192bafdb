import Foundation
import CLI

/// The human table of a training report.
public func renderReport(_ r: TrainingReport) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    let header = "run \(r.run): \(r.workers) worker(s) x \(r.shards) shard(s), \(r.epochs) epochs, dim \(r.dim), " +
        "\(r.users) users, \(r.items) items, \(r.trainInteractions) train interactions, \(String(format: "%.1f", r.seconds)) s, final loss \(String(format: "%.4f", r.finalLoss))"
    let rows = r.test.map { [$0.model, $0.split, "\($0.users)", f($0.recallAt20), f($0.ndcgAt20), "\($0.tailUsers)", f($0.tailRecallAt20), f($0.tailNdcgAt20),
                             "\($0.newItemUsers)", f($0.newItemRecallAt20)] }
    return header + "\n" + renderTable(["model", "split", "users", "Recall@20", "NDCG@20", "tail users", "tail Recall@20", "tail NDCG@20",
                                         "new-item users", "new-item Recall@20"], rows)
}
