import Foundation
import CLI
import Client
import EmbedPSWire

/// Cluster status, health, flush and compaction.
let statusCommands: [AdminCommand] = [
    AdminCommand(words: ["status"], usage: "  status                         shards, slots, tables, rows, bytes, cache, rates, latency") { c in
        let admin = c.admin
        let statuses = try await admin.shardStatus()
        let out = statuses.enumerated().map { i, s in
            ShardStatusJSON(shard: i, address: admin.spec.shards[i].address, mapVersion: s.shardMapVersion, ownedSlots: s.ownedSlots,
                            durability: s.durability, cacheHitRate: s.cacheHitRate, requestsPerSecond: s.requestsPerSecond,
                            rowsPerSecond: s.rowsPerSecond, latencyP50Ms: s.latencyP50Ms, latencyP99Ms: s.latencyP99Ms,
                            uptimeSeconds: s.uptimeSeconds, bytesOnDisk: s.bytesOnDisk,
                            tables: s.tables.map { TableStatsJSON(shard: i, $0, follower: !s.follows.isEmpty) }, follows: s.follows.isEmpty ? nil : s.follows,
                            epoch: s.epoch, fencedBy: s.fencedBy.isEmpty ? nil : s.fencedBy, ackReplicas: s.ackReplicas, lease: s.lease.isEmpty ? nil : s.lease)
        }
        if c.json { print(jsonText(out)); return }
        print(renderTable(["shard", "address", "slots", "map", "durability", "tables", "rows", "disk", "hit rate", "req/s", "rows/s", "p50 ms", "p99 ms", "uptime"],
                          out.map { s in [String(s.shard), s.address, String(s.ownedSlots), String(s.mapVersion), s.durability, String(s.tables.count),
                                          String(s.tables.reduce(0) { $0 + $1.rows }), formatBytes(s.bytesOnDisk), String(format: "%.1f%%", s.cacheHitRate * 100),
                                          String(format: "%.0f", s.requestsPerSecond), String(format: "%.0f", s.rowsPerSecond),
                                          String(format: "%.2f", s.latencyP50Ms), String(format: "%.2f", s.latencyP99Ms), "\(s.uptimeSeconds)s"] }))
        for s in out where s.epoch > 0 || s.fencedBy != nil || s.ackReplicas > 0 || s.lease != nil {
            print("shard \(s.shard): primary epoch \(s.epoch)" + (s.fencedBy.map { "; FENCED: writes go to \($0)" } ?? "") +
                  (s.ackReplicas > 0 ? "; pushes acknowledged by a replica" : "") + (s.lease.map { "; etcd lease: \($0)" } ?? ""))
        }
        for s in out where s.follows != nil {
            print("\nshard \(s.shard) is a follower of \(s.follows ?? ""):")
            print(renderTable(["table", "replicated", "sequence", "primary sequence", "behind (records)", "caught up"], s.tables.map { t in
                [t.table, t.replicated == true ? "yes" : "no", String(t.lastSequence), String(t.primarySequence ?? 0),
                 String((t.primarySequence ?? 0) &- min(t.lastSequence, t.primarySequence ?? 0)),
                 (t.lagSeconds ?? -1) < 0 ? "never" : String(format: "%.1f s ago", t.lagSeconds ?? 0)]
            }))
        }
    },
    AdminCommand(words: ["health"], usage: "  health                         SERVING / not serving per shard (exit 1 when any is down)") { c in
        let admin = c.admin
        let h = await admin.health()
        if c.json { print(jsonText(h.enumerated().map { ["shard": "\($0.offset)", "address": admin.spec.shards[$0.offset].address, "serving": "\($0.element)"] })) }
        else { print(renderTable(["shard", "address", "health"], h.enumerated().map { ["\($0.offset)", admin.spec.shards[$0.offset].address, $0.element ? "SERVING" : "DOWN"] })) }
        if !h.allSatisfy({ $0 }) { exitNow(1) }
    },
    AdminCommand(words: ["flush"], usage: "  flush [TABLE]                  checkpoint now: write dirty rows to RocksDB and trim update logs") { c in
        let admin = c.admin
        let table = c.args.first ?? ""
        let t0 = Date()
        try await admin.flush(table: table)
        if c.json { print(jsonText(["flushed": table.isEmpty ? "*" : table])) }
        else { print("flushed \(table.isEmpty ? "all tables" : table) on \(admin.shardCount) shards in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s") }
    },
    AdminCommand(words: ["compact"], usage: "  compact [TABLE]                checkpoint, then compact the table's RocksDB data (all tables by default)") { c in
        let admin = c.admin
        let table = c.args.first ?? ""
        let t0 = Date()
        if !c.json { printFlush("compacting \(table.isEmpty ? "all tables" : table) on \(admin.shardCount) shards (checkpoint, then RocksDB compaction)...") }
        let (before, after) = try await admin.compact(table: table)
        if c.json { print(jsonText(["bytesBefore": before, "bytesAfter": after])) }
        else { print("compacted in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s: \(formatBytes(before)) -> \(formatBytes(after))") }
    },
    AdminCommand(words: ["evict"], usage: "  evict [TABLE]                  run an eviction pass now (tables with an eviction policy; all by default)") { c in
        let admin = c.admin
        let table = c.args.first ?? ""
        let t0 = Date()
        let (evicted, after) = try await admin.evict(table: table)
        if c.json { print(jsonText(["rowsEvicted": evicted, "rowsAfter": after])) }
        else { print("evicted \(evicted) rows of \(table.isEmpty ? "every table with an eviction policy" : table) in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s; \(after) rows left") }
    },
]
