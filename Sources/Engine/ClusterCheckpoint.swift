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
    public func createCheckpoint(name: String, shardCount: Int) throws(EngineError) -> CheckpointInfo {
        do { try Names.check(name, as: .checkpoint) } catch { throw .invalidName(error) }
        let dir = Self.checkpointPath(dataDirectory: configuration.dataDirectory, name: name)
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
            try rocksCheckpoint(at: dir + "/db")
            let bytes = Self.directoryBytes(dir + "/db")
            let info = CheckpointInfo(name: name, shardIndex: configuration.shardIndex, shardCount: shardCount,
                                      mapVersion: shardMap.version, createdUnixMs: UInt64(Date().timeIntervalSince1970 * 1000),
                                      tables: tableNames(), bytes: bytes, shardMap: shardMapSpec())
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
    public static func installCheckpoint(from checkpointDirectory: String, into dataDirectory: String, shardIndex: Int) throws(EngineError) {
        guard let info = readCheckpoint(checkpointDirectory) else {
            throw .storage("no checkpoint at \(checkpointDirectory) (expected checkpoint.json and db/)")
        }
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
}
