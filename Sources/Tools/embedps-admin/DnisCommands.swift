import Foundation
import CLI
import Client

/// DNIS mixed-dimension tables: report, block assignment, pruning.
let dnisCommands: [AdminCommand] = [
    AdminCommand(words: ["dnis", "report"], usage: """
      dnis report TABLE              per frequency block: rows, mean dimension, parameters, alpha, bytes vs.
                                     full dimension
    """) { c in
        let s = try await c.admin.dnisSummary(table: c.name("TABLE"))
        if c.json { print(jsonText(s)); return }
        printDnis(s)
    },
    AdminCommand(words: ["dnis", "assign"], usage: "  dnis assign TABLE              (re)assign rows to frequency blocks by push count across all shards") { c in
        let admin = c.admin
        let name = c.name("TABLE")
        let t0 = Date()
        let rows = try await admin.dnisAssignBlocks(table: name)
        if c.json { print(jsonText(["rowsPerBlock": rows])); return }
        print(renderTable(["block", "rows"], rows.enumerated().map { ["\($0.offset)", "\($0.element)"] }))
        print("blocks of \(name) assigned by push frequency on \(admin.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
    },
    AdminCommand(words: ["dnis", "prune"], usage: "  dnis prune TABLE --ratio R     prune R of all entries (global percentile of |alpha*v|), fold alpha in") { c in
        let admin = c.admin
        let name = c.name("TABLE")
        guard let ratio = c.o.string("ratio").flatMap(Double.init) else { c.o.fail("dnis prune needs --ratio R (share of entries to prune, 0 <= R < 1)") }
        let before = try await admin.dnisSummary(table: name)
        if !c.json { printFlush("pruning \(Int(ratio * 100))% of \(before.parameters) entries of \(name) on \(admin.shardCount) shards...") }
        let r = try await admin.dnisPrune(table: name, ratio: ratio)
        let after = try await admin.dnisSummary(table: name)
        if c.json { print(jsonText(["prune": AnyEncodable(r), "before": AnyEncodable(before), "after": AnyEncodable(after)])); return }
        printDnis(after)
        print(String(format: "pruned %llu -> %llu entries (threshold %.3g) in %.2f s; bytes %@ -> %@", r.entriesBefore, r.entriesAfter, r.threshold, r.seconds,
                     formatBytes(before.storedBytes), formatBytes(after.storedBytes)))
    },
]

/// Per-block dimensions, parameters and bytes of a DNIS table, then totals against the full-dimension form.
func printDnis(_ s: DnisSummary) {
    print(renderTable(["block", "rows", "mean dim", "parameters", "alpha mean", "bytes", "full-dim bytes"],
                      s.blocks.map { ["\($0.block)", "\($0.rows)", String(format: "%.1f", $0.meanDimension), "\($0.parameters)",
                                      String(format: "%.3f", $0.alphaMean), formatBytes($0.storedBytes), formatBytes($0.denseBytes)] }))
    print(String(format: "%@ (%@, alpha version %llu): %llu rows, %llu parameters of %llu at full dim %d (%.2fx), stored %@ vs %@ full-dim (%.2fx)",
                 s.table, s.pruned ? "pruned" : "searching", s.alphaVersion, s.rows, s.parameters, s.denseParameters, s.dim,
                 Double(s.parameters) / Double(max(1, s.denseParameters)), formatBytes(s.storedBytes), formatBytes(s.denseBytes),
                 Double(s.storedBytes) / Double(max(1, s.denseBytes))))
}

