import Foundation
import Vocabulary
import Storage

/// A shard's part of a cluster checkpoint, stored as `checkpoint.json` beside the RocksDB copy in
/// `<data dir>/checkpoints/<name>/`. Invariant: `db/` holds every table's rows as of the cut (update logs
/// were flushed into it first), so restoring needs no log.
public struct CheckpointInfo: Sendable, Codable, Equatable {
    public var name: String
    public var shardIndex: Int
    public var shardCount: Int
    public var mapVersion: UInt64
    public var createdUnixMs: UInt64
    public var tables: [String]
    public var bytes: UInt64
    /// The shard map in force at the cut (addresses and slot ranges), so a part can be served without the cluster.
    public var shardMap: ClusterSpec?
    /// An incremental part: the checkpoint (a sibling directory) it is a delta of; nil for a full part.
    public var base: String? = nil
    /// Each table's incarnation, sequence and spec at the cut (what a later delta is taken against).
    public var cuts: [String: TableCut]? = nil
}

extension ShardEngine {
    static let checkpointsDirectory = "checkpoints"

    /// Directory of checkpoint `name` under a data directory (the name must satisfy `Names`).
    public static func checkpointPath(dataDirectory: String, name: String) -> String {
        dataDirectory + "/" + checkpointsDirectory + "/" + name
    }

    /// Writes this shard's part of checkpoint `name`: every table checkpointed (dirty rows written, logs
    /// trimmed), then a RocksDB checkpoint (hard links) of the whole database. The caller keeps updates out
    /// meanwhile (the server's request gate) so every shard cuts at the same moment.
    /// With `base`, the part is a delta against this shard's part of checkpoint `base` (see CheckpointDelta.swift).
    public func createCheckpoint(name: String, shardCount: Int, base: String? = nil) throws(EngineError) -> CheckpointInfo {
        do { try Names.check(name, as: .checkpoint) } catch { throw .invalidName(error) }
        let dir = Self.checkpointPath(dataDirectory: configuration.dataDirectory, name: name)
        var baseInfo: CheckpointInfo? = nil
        if let base {
            do { try Names.check(base, as: .checkpoint) } catch { throw .invalidName(error) }
            guard let b = Self.readCheckpoint(Self.checkpointPath(dataDirectory: configuration.dataDirectory, name: base)) else { throw .unknownCheckpoint(base) }
            guard b.mapVersion == shardMap.version else {
                throw .wrongState("the shard map changed since checkpoint '\(base)' (version \(b.mapVersion), now \(shardMap.version)): rows moved between shards; take a full checkpoint")
            }
            baseInfo = b
        }
        // The directory is claimed with one mkdir: of two calls with the same name, one writes the part and
        // the other is told it exists (and removes nothing of it).
        do { try FileManager.default.createDirectory(atPath: (dir as NSString).deletingLastPathComponent, withIntermediateDirectories: true) }
        catch { throw .storage("checkpoint \(name): \(error)") }
        guard mkdir(dir, 0o755) == 0 else {
            if errno == EEXIST { throw .checkpointExists(name) }
            throw .storage("checkpoint \(name): cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        do {
            try checkpointAll()
            let cuts: [String: TableCut]
            let bytes: UInt64
            if let baseInfo {
                cuts = try writeDelta(into: dir, base: baseInfo)
                bytes = Self.directoryBytes(dir + "/delta")
            } else {
                cuts = try tableCuts()
                try rocksCheckpoint(at: dir + "/db")
                bytes = Self.directoryBytes(dir + "/db")
            }
            let info = CheckpointInfo(name: name, shardIndex: configuration.shardIndex, shardCount: shardCount,
                                      mapVersion: shardMap.version, createdUnixMs: UInt64(Date().timeIntervalSince1970 * 1000),
                                      tables: tableNames(), bytes: bytes, shardMap: shardMapSpec(), base: base, cuts: cuts)
            let encoder = JSONEncoder(); encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(info).write(to: URL(fileURLWithPath: dir + "/checkpoint.json"))
            return info
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            if let e = error as? EngineError { throw e }
            throw .storage("checkpoint \(name): \(error)")
        }
    }

    /// Checkpoints stored in a data directory, by creation time.
    public static func listCheckpoints(dataDirectory: String) -> [CheckpointInfo] {
        let root = dataDirectory + "/" + checkpointsDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { readCheckpoint(root + "/" + $0) }.sorted { $0.createdUnixMs < $1.createdUnixMs }
    }

    public static func readCheckpoint(_ dir: String) -> CheckpointInfo? {
        guard let data = FileManager.default.contents(atPath: dir + "/checkpoint.json") else { return nil }
        return try? JSONDecoder().decode(CheckpointInfo.self, from: data)
    }

    static func directoryBytes(_ dir: String) -> UInt64 {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.reduce(0) { sum, f in
            sum + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)[.size] as? UInt64) ?? 0)
        }
    }

    /// Replaces the database in `dataDirectory` (which no engine has open) with the checkpoint in
    /// `checkpointDirectory` (a `checkpoints/<name>` directory, possibly copied from another host): the
    /// current RocksDB files and update logs are deleted (other checkpoints are kept), the checkpoint's files
    /// copied in. Refuses a checkpoint of another shard index.
    /// For an incremental part, the files come from the full checkpoint at the root of its chain; the
    /// deltas are applied once the engine is open (`applyCheckpointDeltas`).
    public static func installCheckpoint(from target: String, into dataDirectory: String, shardIndex: Int) throws(EngineError) {
        guard readCheckpoint(target) != nil else {
            throw .storage("no checkpoint at \(target) (expected checkpoint.json and db/)")
        }
        let chain = try checkpointChain(target)
        for (d, i) in chain where i.shardIndex != shardIndex {
            throw .invalidSpec(table: "-", message: "checkpoint \(i.name) at \(d) is shard \(i.shardIndex)'s, not shard \(shardIndex)'s")
        }
        let (checkpointDirectory, info) = chain[0]
        guard info.shardIndex == shardIndex else {
            throw .invalidSpec(table: "-", message: "checkpoint \(info.name) at \(checkpointDirectory) is shard \(info.shardIndex)'s, not shard \(shardIndex)'s")
        }
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
            for f in try fm.contentsOfDirectory(atPath: dataDirectory) where f != checkpointsDirectory {
                try fm.removeItem(atPath: dataDirectory + "/" + f)
            }
            for f in try fm.contentsOfDirectory(atPath: checkpointDirectory + "/db") {
                try fm.copyItem(atPath: checkpointDirectory + "/db/" + f, toPath: dataDirectory + "/" + f)
            }
        } catch { throw .storage("restoring \(checkpointDirectory) into \(dataDirectory): \(error)") }
    }

    /// Applies the deltas of checkpoint `dir`'s chain (nothing for a full checkpoint) to this engine, which
    /// was just opened on the chain's installed full base.
    public func applyCheckpointDeltas(of dir: String) throws(EngineError) {
        for (d, info) in try Self.checkpointChain(dir).dropFirst() { try applyDelta(from: d, info: info) }
    }
}
