import Foundation
import CLI
import Client
import Vocabulary

/// Live resharding.
let reshardCommands: [AdminCommand] = [
    AdminCommand(words: ["reshard", "prepare"], usage: """
      reshard prepare --add-shard HOST:PORT --out JOINING.json
                                     write a spec with a new shard that owns no slots yet (start it with that spec)
    """) { c in
        let admin = c.admin
        guard let address = c.o.string("add-shard"), let out = c.o.string("out") else { c.o.fail("usage: reshard prepare --add-shard HOST:PORT --out JOINING.json") }
        try await admin.refreshShardMap()
        var spec = admin.spec
        spec.shards.append(.init(address: address))
        spec.slotRanges = ClusterSpec(addresses: spec.shards.map(\.address), map: try SlotMap(version: admin.slotMap.version, shardCount: spec.shards.count, owners: admin.slotMap.owners)).slotRanges
        try spec.encoded().write(to: URL(fileURLWithPath: out))
        if c.json { print(jsonText(["spec": out, "newShard": "\(spec.shards.count - 1)"])); return }
        print("wrote \(out): \(spec.shards.count) shards, shard \(spec.shards.count - 1) at \(address) owning no slots yet (map version \(spec.version)).")
        print("next: start it with 'embedps-server --cluster \(out) --shard-index \(spec.shards.count - 1) ...', then 'embedps-admin reshard even --cluster \(out)'")
    },
    AdminCommand(words: ["reshard", "even"], usage: "  reshard even                   live: move slots until every shard of the spec owns an even share") { c in
        try await c.admin.refreshShardMap()
        try await reshard(c, to: EmbedPSAdmin.balancedOwners(current: c.admin.slotMap.owners, over: Array(0..<c.admin.shardCount)))
    },
    AdminCommand(words: ["reshard", "remove"], usage: "  reshard remove K               live: move every slot off shard K (then it can be stopped)") { c in
        let admin = c.admin
        try await admin.refreshShardMap()
        guard let k = c.args.first.flatMap(Int.init), k < admin.shardCount else { c.o.fail("usage: reshard remove SHARD_INDEX") }
        try await reshard(c, to: EmbedPSAdmin.balancedOwners(current: admin.slotMap.owners, over: (0..<admin.shardCount).filter { $0 != k }))
    },
    AdminCommand(words: ["reshard", "move"], usage: """
      reshard move FIRST-LAST --to K live: move a slot range to shard K
                                     (rows move while training continues; clients follow the new map)
    """) { c in
        let admin = c.admin
        try await admin.refreshShardMap()
        guard let range = c.args.first, let to = c.o.string("to").flatMap(Int.init), to < admin.shardCount else {
            c.o.fail("usage: reshard move FIRST-LAST --to SHARD_INDEX")
        }
        let bounds = range.split(separator: "-").compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] <= bounds[1], bounds[1] < 4096 else { c.o.fail("slot range must be FIRST-LAST within 0-4095") }
        var owners = admin.slotMap.owners
        for s in bounds[0]...bounds[1] { owners[s] = UInt16(to) }
        try await reshard(c, to: owners)
    },
    AdminCommand(words: ["failover"], usage: """
      failover SHARD [--to HOST:PORT] [--catch-up-seconds S]
                                     promote a follower of SHARD (default: its first in the map) to primary:
                                     fences the old primary (new epoch in the shard map), waits until the
                                     follower holds its records, promotes it; clients follow the new map
    """) { c in
        guard let shard = c.args.first.flatMap(Int.init) else { c.o.fail("usage: failover SHARD_INDEX [--to HOST:PORT]") }
        let json = c.json
        let report = try await c.admin.failover(shard: shard, to: c.o.string("to"), catchUpSeconds: c.o.double("catch-up-seconds", default: 60)) { line in
            if !json { printFlush(line) }
        }
        if json { print(jsonText(report)); return }
        print(renderTable(["table", "old primary sequence", "promoted at sequence"], report.tables.map {
            [$0.name, $0.primarySequence.map(String.init) ?? "unreachable", String($0.promotedSequence)]
        }))
        print("shard \(report.shard): \(report.newPrimary) is the primary at epoch \(report.epoch) (map version \(report.mapVersion)); " +
              "old primary \(report.oldPrimary) \(report.oldPrimaryReachable ? "fenced" : "unreachable (fenced when it restarts)"); " +
              String(format: "catch-up %.2f s, total %.2f s", report.catchUpSeconds, report.seconds))
        if !report.notUpdated.isEmpty { print("not updated (they learn the map when they restart): \(report.notUpdated.joined(separator: ", "))") }
    },
]

/// Moves slots to `target` owners live and prints what moved.
private func reshard(_ c: AdminContext, to target: [UInt16]) async throws {
    let json = c.json
    let summary = try await c.admin.reshard(to: target) { line in if !json { FileHandle.standardError.write(Data("\r\(line)   ".utf8)) } }
    if json { print(jsonText(summary)); return }
    print("")
    print(renderTable(["from", "to", "slots", "rows"], summary.moves.map { ["\($0.from)", "\($0.to)", "\($0.slots)", "\($0.rows)"] }))
    print("resharded live: \(summary.slotsMoved) slots, \(summary.rowsMoved) rows, map version \(summary.fromVersion) -> \(summary.toVersion) in \(String(format: "%.2f", summary.seconds)) s")
}
