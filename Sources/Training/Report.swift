import Foundation
import CLI
import Client

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

/// One row per item tower (test split), each the mean over its seeds with the spread (max - min over
/// seeds), plus each baseline once (popularity; on the item-cold split, popularity among the held-out items
/// and, from runs with catalogue features, the catalogue's ratings count).
public func renderComparison(_ towers: [[TrainingReport]]) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
    func spread(_ xs: [Double]) -> Double { (xs.max() ?? 0) - (xs.min() ?? 0) }
    var rows = towers.compactMap { runs -> [String]? in
        guard let r = runs.first else { return nil }
        let recall = runs.map { $0.test[0].recallAt20 }
        return [r.itemTower, "\(r.itemRows)", "\(runs.count)", f(mean(recall)), f(spread(recall)), f(mean(runs.map { $0.test[0].ndcgAt20 })),
                f(mean(runs.map { $0.test[0].tailRecallAt20 })), f(mean(runs.map { $0.test[0].newItemRecallAt20 })),
                String(format: "%.1f", mean(runs.map(\.seconds)))]
    }
    guard let first = towers.first?.first else { return "" }
    // Baselines do not depend on the tower; a run with catalogue features adds the catalogue's own.
    var shown = Set<String>()
    for pop in towers.flatMap({ $0.first?.test.dropFirst() ?? [] }) where shown.insert(pop.model).inserted {
        rows.append([pop.model, "-", "-", f(pop.recallAt20), "-", f(pop.ndcgAt20), f(pop.tailRecallAt20), f(pop.newItemRecallAt20), "-"])
    }
    let m = first.test[0]
    let header = "split \(first.split?.rawValue ?? SplitKind.leaveLastOut.rawValue): test users \(m.users), tail \(m.tailUsers), new-item \(m.newItemUsers)"
    return header + "\n" + renderTable(["item tower", "item rows", "seeds", "Recall@20", "spread", "NDCG@20", "tail Recall@20", "new-item Recall@20", "seconds/run"], rows)
}

/// One row per embedding density (test split): quality, parameters and stored bytes of the user and item
/// tables, with ratios against the first (dense) run.
public func renderDensityComparison(_ reports: [TrainingReport]) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    let base = reports.first
    let rows = reports.map { r -> [String] in
        let m = r.test[0], fp = r.footprint
        let params = fp?.parameters ?? 0, bytes = fp?.storedBytes ?? 0
        let bp = Double(max(1, base?.footprint?.parameters ?? 1)), bb = Double(max(1, base?.footprint?.storedBytes ?? 1))
        return [String(format: "%.2f", fp?.density ?? 1), f(m.recallAt20), f(m.ndcgAt20), String(format: "%.3f", m.recallAt20 / max(1e-9, base?.test[0].recallAt20 ?? 1)),
                "\(params)", params == fp?.budget ? "yes" : "no", String(format: "%.2f", Double(params) / bp),
                String(format: "%.1f", Double(bytes) / Double(max(1, fp?.rows ?? 1))), String(format: "%.2f", Double(bytes) / bb),
                f(fp?.firedFraction ?? 1), "\(fp?.regrowRounds ?? 0)"]
    }
    var out = renderTable(["density", "Recall@20", "NDCG@20", "recall vs dense", "parameters", "= budget", "params vs dense", "bytes/row", "bytes vs dense",
                           "fired", "regrow rounds"], rows)
    if let pop = base?.test[1] { out += "\npopularity baseline: Recall@20 \(f(pop.recallAt20)), NDCG@20 \(f(pop.ndcgAt20))" }
    return out
}

/// A full-dimension baseline (first report) against DNIS runs: quality, parameters and bytes with ratios to
/// the baseline, then the per-block dimensions each DNIS run ended with.
public func renderDnisComparison(_ reports: [TrainingReport]) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    guard let base = reports.first else { return "" }
    let bp = Double(max(1, base.footprint?.parameters ?? 1)), bb = Double(max(1, base.footprint?.storedBytes ?? 1))
    let rows = reports.map { r -> [String] in
        let m = r.test[0], fp = r.footprint
        let label = r.dnis == nil ? "full dim \(r.dim)" : "DNIS prune \(r.run.split(separator: "-").last.map(String.init) ?? "?")"
        return [label, f(m.recallAt20), f(m.ndcgAt20), String(format: "%.3f", m.recallAt20 / max(1e-9, base.test[0].recallAt20)),
                "\(fp?.parameters ?? 0)", String(format: "%.2f", Double(fp?.parameters ?? 0) / bp),
                String(format: "%.1f", Double(fp?.storedBytes ?? 0) / Double(max(1, fp?.rows ?? 1))), String(format: "%.2f", Double(fp?.storedBytes ?? 0) / bb)]
    }
    var out = renderTable(["model", "Recall@20", "NDCG@20", "recall vs full", "parameters", "params vs full", "bytes/row", "bytes vs full"], rows)
    out += "\npopularity baseline: Recall@20 \(f(base.test[1].recallAt20))"
    for r in reports {
        for s in r.dnis ?? [] {
            out += "\n\n\(s.table): mean dimension per frequency block (block 0 = most frequent)\n"
            out += renderTable(["block", "rows", "mean dim", "parameters", "alpha mean", "bytes", "dense bytes"],
                               s.blocks.map { ["\($0.block)", "\($0.rows)", String(format: "%.1f", $0.meanDimension), "\($0.parameters)",
                                               String(format: "%.3f", $0.alphaMean), "\($0.storedBytes)", "\($0.denseBytes)"] })
        }
    }
    return out
}

/// One row per (admission, TTL) setting, each the mean over its seeds (test split): quality with its spread
/// (max - min over seeds) and ratio to the first setting, rows of the user and item id tables at the end,
/// rows evicted, pushes refused, and stored bytes saved against the first setting.
public func renderLifecycleComparison(_ settings: [[TrainingReport]]) -> String {
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
    func spread(_ xs: [Double]) -> Double { (xs.max() ?? 0) - (xs.min() ?? 0) }
    func rows(_ r: TrainingReport) -> Double { Double(r.lifecycle?.rows ?? r.footprint?.rows ?? 0) }
    guard let base = settings.first, !base.isEmpty else { return "" }
    let baseRecall = mean(base.map { $0.test[0].recallAt20 }), baseRows = mean(base.map(rows))
    let rowBytes = Double(16 + 4 * base[0].dim * 2)  // Adagrad row: header, weights, accumulator
    let table = settings.compactMap { runs -> [String]? in
        guard let first = runs.first else { return nil }
        let recall = runs.map { $0.test[0].recallAt20 }, tail = runs.map { $0.test[0].tailRecallAt20 }
        let admit = first.lifecycle?.admitMinCount ?? 0
        let ttl = "\(first.lifecycle?.userTTLUpdates ?? 0) / \(first.lifecycle?.itemTTLUpdates ?? 0)"
        let r = mean(runs.map(rows))
        return ["\(admit)", ttl, "\(runs.count)", f(mean(recall)), f(spread(recall)), String(format: "%.3f", mean(recall) / max(1e-9, baseRecall)),
                f(mean(runs.map { $0.test[0].ndcgAt20 })), f(mean(tail)), String(format: "%.0f", r), String(format: "%.3f", r / max(1, baseRows)),
                String(format: "%.0f", mean(runs.map { Double($0.lifecycle?.rowsEvicted ?? 0) })),
                String(format: "%.0f", mean(runs.map { Double($0.lifecycle?.pushesRefused ?? 0) })),
                String(format: "%.0f", (baseRows - r) * rowBytes), String(format: "%.1f", mean(runs.map(\.seconds)))]
    }
    var out = renderTable(["admit", "TTL users / items", "seeds", "Recall@20", "spread", "recall vs first", "NDCG@20", "tail Recall@20",
                           "rows at end", "rows vs first", "rows evicted", "pushes refused", "bytes saved", "seconds/run"], table)
    out += "\npopularity baseline: Recall@20 \(f(base[0].test[1].recallAt20))"
    return out
}
