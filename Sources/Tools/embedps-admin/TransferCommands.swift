import Foundation
import CLI
import Client

/// Export and import of dense tables as NumPy files.
let transferCommands: [AdminCommand] = [
    AdminCommand(words: ["export"], usage: """
      export TABLE --out PREFIX [--since PREVIOUS.version.json]
                                     every stored row to PREFIX.ids.npy (<u8, (n,)) and PREFIX.values.npy
                                     (<f4, (n, dim)): NumPy files of the row keys (= ids) and the pulled values;
                                     PREFIX.version.json records what it covered. With --since (a previous
                                     export's version file) only rows changed since, and PREFIX.removed.npy the
                                     keys removed (evicted) since: an incremental export for a serving store
    """) { c in
        let name = c.name("TABLE")
        guard let prefix = c.o.string("out") else { c.o.fail("usage: export TABLE --out PREFIX [--since PREVIOUS.version.json]") }
        var since: ExportVersion? = nil
        if let path = c.o.string("since") {
            guard let d = FileManager.default.contents(atPath: path), let v = try? JSONDecoder().decode(ExportVersion.self, from: d) else {
                c.o.fail("--since \(path): not an export version file (PREFIX.version.json written by export)")
            }
            since = v
        }
        let t0 = Date()
        let json = c.json
        let e = try await c.admin.exportChanges(name, since: since) { n in if !json { progressLine("exporting \(name)", n) } }
        try NumPyFile.write(prefix + ".ids.npy", descr: "<u8", shape: [e.keys.count], values: e.keys)
        try NumPyFile.write(prefix + ".values.npy", descr: "<f4", shape: [e.keys.count, e.dim], values: e.values)
        if since != nil { try NumPyFile.write(prefix + ".removed.npy", descr: "<u8", shape: [e.removed.count], values: e.removed) }
        let encoder = JSONEncoder(); encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(e.version).write(to: URL(fileURLWithPath: prefix + ".version.json"))
        if json { print(jsonText(["rows": e.keys.count, "dim": e.dim, "removed": e.removed.count])); return }
        print("\nexported \(e.keys.count) \(since == nil ? "" : "changed ")rows of dim \(e.dim)\(since == nil ? "" : " and \(e.removed.count) removed keys") from \(name) to \(prefix).* in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (version: \(prefix).version.json)")
    },
    AdminCommand(words: ["import"], usage: "  import TABLE --in PREFIX       set rows of a dense, collision-free table from such files (optimizer state reset)") { c in
        let name = c.name("TABLE")
        guard let prefix = c.o.string("in") else { c.o.fail("usage: import TABLE --in PREFIX") }
        let (idShape, keys) = try NumPyFile.read(prefix + ".ids.npy", descr: "<u8", as: UInt64.self)
        let (valueShape, values) = try NumPyFile.read(prefix + ".values.npy", descr: "<f4", as: Float.self)
        guard idShape.count == 1, valueShape.count == 2, valueShape[0] == idShape[0] else {
            c.o.fail("\(prefix).ids.npy has shape \(idShape) and \(prefix).values.npy \(valueShape): expected (n,) and (n, dim)")
        }
        let t0 = Date()
        let json = c.json
        try await c.admin.importRows(name, keys: keys, values: values) { n in if !json { progressLine("importing \(name)", n, of: keys.count) } }
        if json { print(jsonText(["rows": keys.count])); return }
        print("\nimported \(keys.count) rows into \(name) in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
    },
]
