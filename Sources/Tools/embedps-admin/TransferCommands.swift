import Foundation
import CLI
import Client

/// Export and import of dense tables as NumPy files.
let transferCommands: [AdminCommand] = [
    AdminCommand(words: ["export"], usage: """
      export TABLE --out PREFIX      every stored row to PREFIX.ids.npy (<u8, (n,)) and PREFIX.values.npy
                                     (<f4, (n, dim)): NumPy files of the row keys (= ids) and the pulled values
    """) { c in
        let name = c.name("TABLE")
        guard let prefix = c.o.string("out") else { c.o.fail("usage: export TABLE --out PREFIX") }
        let t0 = Date()
        let json = c.json
        let (dim, keys, values) = try await c.admin.exportTable(name) { n in if !json { progressLine("exporting \(name)", n) } }
        try NumPyFile.write(prefix + ".ids.npy", descr: "<u8", shape: [keys.count], values: keys)
        try NumPyFile.write(prefix + ".values.npy", descr: "<f4", shape: [keys.count, dim], values: values)
        if json { print(jsonText(["rows": keys.count, "dim": dim])); return }
        print("\nexported \(keys.count) rows of dim \(dim) from \(name) to \(prefix).ids.npy and \(prefix).values.npy in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
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
