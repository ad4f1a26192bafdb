import Foundation
import CLI
import Client

/// Consistent cluster checkpoints.
let checkpointCommands: [AdminCommand] = [
    AdminCommand(words: ["checkpoint", "create"], usage: """
      checkpoint create NAME [--base BASE]
                                     consistent cluster checkpoint: all shards frozen (updates refused and retried
                                     by clients), each writes checkpoints/NAME in its data directory, all thaw;
                                     with --base, incremental: only the rows changed since checkpoint BASE
    """) { c in
        let admin = c.admin
        let name = c.name("checkpoint NAME")
        let base = c.o.string("base")
        let t0 = Date()
        if !c.json { printFlush("checkpoint \(name)\(base.map { " (delta of \($0))" } ?? ""): freezing \(admin.shardCount) shards, writing each shard's part...") }
        let parts = try await admin.createCheckpoint(name: name, base: base)
        if c.json { print(jsonText(parts)); return }
        print(renderTable(["shard", "tables", "bytes"], parts.map { ["\($0.shardIndex)", "\($0.tables.count)", formatBytes($0.bytes)] }))
        print("checkpoint \(name) written on \(parts.count) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (updates were paused meanwhile)")
    },
    AdminCommand(words: ["checkpoint", "list"], usage: "  checkpoint list                checkpoints on the shards and whether every shard has its part") { c in
        let list = try await c.admin.listCheckpoints()
        if c.json { print(jsonText(list)); return }
        let f = DateFormatter(); f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        print(renderTable(["name", "created", "shards", "complete", "tables", "bytes", "delta of"], list.map {
            [$0.name, f.string(from: Date(timeIntervalSince1970: Double($0.createdUnixMs) / 1000)), "\($0.shardsWithPart.count)/\($0.shardCount)",
             $0.complete ? "yes" : "NO", "\($0.tables.count)", formatBytes($0.bytes), $0.base ?? "(full)"]
        }))
    },
    AdminCommand(words: ["checkpoint", "restore"], usage: """
      checkpoint restore NAME        every shard back to its part of NAME (a fresh cluster: copy each shard's
                                     checkpoints/NAME over and start embedps-server --restore-checkpoint DIR)
    """) { c in
        let admin = c.admin
        let name = c.name("checkpoint NAME")
        let t0 = Date()
        if !c.json { printFlush("restoring checkpoint \(name) on \(admin.shardCount) shards (updates paused meanwhile)...") }
        let parts = try await admin.restoreCheckpoint(name: name)
        if c.json { print(jsonText(parts)); return }
        print("restored \(name) on \(parts.count) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s; tables: \(parts.first?.tables.joined(separator: ", ") ?? "")")
    },
]
