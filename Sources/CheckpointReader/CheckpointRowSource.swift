import Foundation
import Engine
import Vocabulary
import Server
import Lookup

/// Every shard's part of a cluster checkpoint, opened in process: each part's database is copied to a
/// scratch directory first (the checkpoint files are never modified) and requests are routed by the shard
/// map recorded at the cut. Read-only: nothing writes to the copies. Thread-safe (the engines are).
public final class CheckpointRowSource: RowSource, @unchecked Sendable {
    let engines: [ShardEngine]
    let map: SlotMap
    let scratch: String
    public let name: String
    public var partCount: Int { engines.count }

    /// `parts`: one `checkpoints/NAME` directory per shard of the checkpoint (any order).
    public init(parts: [String]) throws {
        let infos = try parts.map { dir -> (String, CheckpointInfo) in
            guard let info = ShardEngine.readCheckpoint(dir) else { throw EngineError.storage("\(dir) holds no checkpoint.json: pass checkpoints/NAME directories") }
            return (dir, info)
        }.sorted { $0.1.shardIndex < $1.1.shardIndex }
        guard let first = infos.first?.1, let spec = first.shardMap else { throw EngineError.storage("checkpoint parts carry no shard map (written by an older version)") }
        guard infos.map(\.1.shardIndex) == Array(0..<first.shardCount), infos.allSatisfy({ $0.1.name == first.name }) else {
            throw EngineError.storage("checkpoint \(first.name) has \(first.shardCount) parts; got shards \(infos.map(\.1.shardIndex)) of names \(Set(infos.map(\.1.name)))")
        }
        map = try spec.slotMap()
        name = first.name
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-lookup-\(getpid())-\(UUID().uuidString)").path
        var opened: [ShardEngine] = []
        for (dir, info) in infos {
            let data = scratch + "/shard-\(info.shardIndex)"
            try ShardEngine.installCheckpoint(from: dir, into: data, shardIndex: info.shardIndex)
            opened.append(try ShardEngine(ShardEngineConfiguration(dataDirectory: data, shardIndex: info.shardIndex, slotMap: map)))
        }
        engines = opened
    }

    deinit {
        engines.forEach { $0.close(checkpoint: false) }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    public func dim(of table: String) async throws -> Int { try engines[0].dim(of: table) }

    public func pull(table: String, ids: [UInt64]) async throws -> [Float] {
        let addressing = RowAddressing(spec: try engines[0].spec(of: table))
        let dim = try engines[0].dim(of: table)
        var byShard = [[Int]](repeating: [], count: engines.count)
        for (i, id) in ids.enumerated() { byShard[map.owner(ofSlot: addressing.slot(ofRowKey: addressing.rowKey(id)))].append(i) }
        var out = [Float](repeating: 0, count: ids.count * dim)
        for (s, members) in byShard.enumerated() where !members.isEmpty {
            var rows = [Float](repeating: 0, count: members.count * dim)
            let part = members.map { ids[$0] }
            try part.withUnsafeBufferPointer { p in try rows.withUnsafeMutableBufferPointer { try engines[s].pull(table: table, ids: p, into: $0.baseAddress!) } }
            for (j, i) in members.enumerated() { for k in 0..<dim { out[i * dim + k] = rows[j * dim + k] } }
        }
        return out
    }

    public func pullPooled(table: String, items: [UInt64]) async throws -> [Float] {
        let dim = try engines[0].dim(of: table)
        var out = [Float](repeating: 0, count: items.count * dim)
        for e in engines {
            var part = [Float](repeating: 0, count: items.count * dim)
            try items.withUnsafeBufferPointer { p in try part.withUnsafeMutableBufferPointer { try e.pullPooled(table: table, items: p, into: $0.baseAddress!) } }
            for i in out.indices { out[i] += part[i] }
        }
        return out
    }
}
