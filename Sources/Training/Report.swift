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

/// One row per item tower (test split), plus the popularity baseline of the first run.
public func renderComparison(_ reports: [TrainingReport]) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    var rows = reports.map { r -> [String] in
        let m = r.test[0]
        return [r.itemTower, "\(r.itemRows)", f(m.recallAt20), f(m.ndcgAt20), f(m.tailRecallAt20), f(m.newItemRecallAt20)]
    }
    if let pop = reports.first?.test[1] {
        rows.append(["popularity", "-", f(pop.recallAt20), f(pop.ndcgAt20), f(pop.tailRecallAt20), f(pop.newItemRecallAt20)])
    }
    let users = reports.first.map { "test users \($0.test[0].users), tail \($0.test[0].tailUsers), new-item \($0.test[0].newItemUsers)" } ?? ""
    return users + "\n" + renderTable(["item tower", "item rows", "Recall@20", "NDCG@20", "tail Recall@20", "new-item Recall@20"], rows)
}
