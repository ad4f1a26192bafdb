import Foundation
import CLI
import Client
import Vocabulary
import EmbedPSWire

// Rendering shared by the command groups: sizes, JSON rows, progress lines.

func formatBytes(_ b: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[u])
}

struct TableStatsJSON: Codable {
    var shard: Int, table: String, dim: Int, optimizer: String, rows: UInt64, cachedRows: UInt64, dirtyRows: UInt64
    var cacheCapacityRows: UInt64, bytesOnDisk: UInt64, logBytes: UInt64, snapshotBytes: UInt64, pulls: UInt64, pushes: UInt64
    var rowsPulled: UInt64, rowsPushed: UInt64, checkpoints: UInt64
    var semanticItems: UInt64?, piecesPerItem: Double?, pieceRowsUsed: UInt64?, pieceCollisions: UInt64?
    var rowsAdmitted: UInt64?, pushesRefused: UInt64?, admissionSketchBytes: UInt64?, rowsEvicted: UInt64?, evictionPasses: UInt64?
    var lastSequence: UInt64
    /// Followers only: whether the table is copied, the primary's sequence and seconds since caught up.
    var replicated: Bool?, primarySequence: UInt64?, lagSeconds: Double?
    init(shard: Int, _ s: Wire.TableStats, follower: Bool = false) {
        let spec = s.spec ?? Wire.TableSpec()
        self.shard = shard; table = spec.name; dim = Int(spec.dim)
        optimizer = OptimizerKind(rawValue: UInt8(truncatingIfNeeded: (spec.optimizer ?? Wire.OptimizerConfig()).kind.rawValue))?.description ?? "?"
        rows = s.rows; cachedRows = s.cachedRows; dirtyRows = s.dirtyRows; cacheCapacityRows = s.cacheCapacityRows
        bytesOnDisk = s.bytesOnDisk; logBytes = s.logBytes; snapshotBytes = s.snapshotBytes; pulls = s.pulls; pushes = s.pushes
        rowsPulled = s.rowsPulled; rowsPushed = s.rowsPushed; checkpoints = s.checkpoints
        semanticItems = s.semantic?.items; piecesPerItem = s.semantic?.piecesPerItem
        pieceRowsUsed = s.semantic?.rowsUsed; pieceCollisions = s.semantic?.collisions
        if spec.admission != nil { rowsAdmitted = s.rowsAdmitted; pushesRefused = s.pushesRefused; admissionSketchBytes = s.admissionSketchBytes }
        if spec.eviction != nil { rowsEvicted = s.rowsEvicted; evictionPasses = s.evictionPasses }
        lastSequence = s.lastSequence
        if follower { replicated = s.replicated; primarySequence = s.replicationPrimarySequence; lagSeconds = s.replicationLagSeconds }
    }
}

struct ShardStatusJSON: Codable {
    var shard: Int, address: String, mapVersion: UInt64, ownedSlots: UInt32, durability: String
    var cacheHitRate: Double, requestsPerSecond: Double, rowsPerSecond: Double, latencyP50Ms: Double, latencyP99Ms: Double
    var uptimeSeconds: UInt64, bytesOnDisk: UInt64, tables: [TableStatsJSON]
    /// A follower: its primary's address.
    var follows: String?
    /// Primary epoch; the primary that replaced this one when it is fenced; --ack-replicas; etcd lease state.
    var epoch: UInt64 = 0
    var fencedBy: String? = nil
    var ackReplicas: UInt32 = 0
    var lease: String? = nil
}

/// Type-erased Encodable for mixed JSON objects.
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

/// A progress line redrawn in place on stderr.
func progressLine(_ label: String, _ done: Int, of total: Int? = nil) {
    let text = total.map { t in "\r\(label): \(done)/\(t) rows (\(t == 0 ? 100 : 100 * done / t)%)   " } ?? "\r\(label): \(done) rows   "
    FileHandle.standardError.write(Data(text.utf8))
}
