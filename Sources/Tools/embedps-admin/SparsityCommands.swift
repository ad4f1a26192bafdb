import Foundation
import CLI
import Client

/// Dynamic-sparsity tables: report and prune-and-regrow steps.
let sparsityCommands: [AdminCommand] = [
    AdminCommand(words: ["sparsity", "report"], usage: "  sparsity report TABLE          active entries vs budget, density, fired share, rounds, bytes per row") { c in
        let s = try await c.admin.sparsitySummary(table: c.name("TABLE"))
        if c.json { print(jsonText(s)); return }
        print(renderTable(["table", "rows", "dim", "active", "budget", "density", "fired", "round", "pushes since step", "bytes/row", "dense bytes/row", "stored"],
                          [[s.table, String(s.rows), String(s.dim), String(s.active), String(s.budget), String(format: "%.4f", s.density),
                            String(format: "%.4f", s.firedFraction), String(s.round), String(s.pushesSinceStep), String(format: "%.1f", s.bytesPerRow),
                            String(format: "%.1f", s.denseBytesPerRow), formatBytes(s.storedBytes)]]))
    },
    AdminCommand(words: ["sparsity", "step"], usage: """
      sparsity step TABLE [--fraction F]
                                     one cluster-wide prune-and-regrow step (default fraction: the table's
                                     cosine schedule)
    """) { c in
        let admin = c.admin
        let name = c.name("TABLE")
        let fraction = c.o.string("fraction").map { Double($0) ?? -1 }
        if !c.json { printFlush("prune-and-regrow on \(name): collecting histograms from \(admin.shardCount) shards...") }
        let r = try await admin.sparsityStep(table: name, fraction: fraction)
        if c.json { print(jsonText(r)); return }
        print(renderTable(["shard", "pruned", "grown"], r.prunedPerShard.indices.map { [String($0), String(r.prunedPerShard[$0]), String(r.grownPerShard[$0])] }))
        print(String(format: "round %d: moved %llu entries (fraction %.4f); active %llu -> %llu, budget %llu (%@) in %.2f s", r.round, r.moved, r.fraction,
                     r.activeBefore, r.activeAfter, r.budgetAfter, r.activeAfter == r.budgetAfter ? "exact" : "MISMATCH", r.seconds))
    },
]
