import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSAdmin {
    /// Every stored row of a table, shard by shard in pages (row keys and what a pull returns for them);
    /// `progress(rowsSoFar)` after each page. Rows written after a shard's first page may be missing.
    public func exportTable(_ table: String, pageRows: Int = 4096, progress: (Int) -> Void = { _ in }) async throws -> (dim: Int, keys: [UInt64], values: [Float]) {
        let e = try await exportChanges(table, since: nil, pageRows: pageRows, progress: progress)
        return (e.dim, e.keys, e.values)
    }

    /// An export of `table`: every row (since nil), or only what changed after `since` (the `version` of a
    /// previous export of the same table: rows updated since, and keys removed since). Its `version` is
    /// what to pass next time. Applying a full export then each incremental one in order reproduces the
    /// table as of the last (rows changed during an export may come with newer values, and come again).
    public func exportChanges(_ table: String, since: ExportVersion?, pageRows: Int = 4096, progress: (Int) -> Void = { _ in }) async throws -> TableExport {
        if let since {
            guard since.table == table, since.shardSequences.count == shardCount else {
                throw ClientError.invalidArgument("the --since version is of table '\(since.table)' on \(since.shardSequences.count) shards; this is '\(table)' on \(shardCount) shards: export in full")
            }
            guard since.shardMapVersion == slotMap.version else {
                throw ClientError.invalidArgument("the shard map changed since that export (version \(since.shardMapVersion), now \(slotMap.version)): rows moved between shards; export in full")
            }
        }
        var out = TableExport(dim: 0, keys: [], values: [], removed: [],
                              version: ExportVersion(table: table, shardMapVersion: slotMap.version, shardSequences: Array(repeating: 0, count: shardCount)))
        for s in 0..<shardCount {
            let after = since?.shardSequences[s] ?? 0
            for removed in since == nil ? [false] : [false, true] {
                var cursor: (slot: UInt32, key: UInt64)? = nil
                while true {
                    var request = Wire.ExportRowsRequest(table: table, limit: UInt32(pageRows), sinceSequence: after, removed: removed)
                    if let cursor { request.hasCursor = true; request.afterSlot = cursor.slot; request.afterKey = cursor.key }
                    let page = try await call(shard: s, ShardRPC.exportRows, request)
                    if cursor == nil && !removed { out.version.shardSequences[s] = page.version }
                    if removed {
                        out.removed += page.keys
                    } else {
                        out.dim = Int(page.dim)
                        guard page.values.count == page.keys.count * out.dim * 4 else {
                            throw ClientError.inconsistentCluster("shard \(s) exported \(page.values.count) value bytes for \(page.keys.count) rows of dim \(out.dim)")
                        }
                        out.keys += page.keys
                        page.values.withUnsafeBytes { b in out.values += (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
                    }
                    progress(out.keys.count + out.removed.count)
                    if page.done { break }
                    cursor = (page.nextSlot, page.nextKey)
                }
            }
        }
        return out
    }

    /// Sets rows of a dense, collision-free table (row key = id) to `values` (keys.count * dim floats) with
    /// fresh optimizer state, in chunks of `chunkRows` split by owner; `progress(rowsSoFar)` after each chunk.
    /// Each chunk is applied whole or not at all on each shard.
    public func importRows(_ table: String, keys: [UInt64], values: [Float], chunkRows: Int = 8192, progress: (Int) -> Void = { _ in }) async throws {
        let dim = try await route(table).dim
        guard values.count == keys.count * dim else {
            throw ClientError.invalidArgument("import of \(keys.count) rows into '\(table)' (dim \(dim)) needs \(keys.count * dim) floats, got \(values.count)")
        }
        guard Set(keys).count == keys.count else { throw ClientError.invalidArgument("import rows must have distinct keys") }
        var start = 0
        while start < keys.count {
            let end = min(keys.count, start + chunkRows)
            let part = FloatBuffer(Array(values[(start * dim)..<(end * dim)]))
            _ = try await sendGradientRows(table: table, ids: Array(keys[start..<end]), gradients: part, method: ShardRPC.importRows)
            start = end
            progress(start)
        }
    }
}

/// Where an export of a table stands: per shard, the table's update-log sequence the export covered, under
/// one shard map version. Passed to `exportChanges(since:)` (and stored beside an export as JSON).
public struct ExportVersion: Sendable, Codable, Equatable {
    public var table: String
    public var shardMapVersion: UInt64
    public var shardSequences: [UInt64]
}

/// One export: rows (key, what a pull returns), the keys removed since the previous export (incremental
/// only), and the version to export from next time.
public struct TableExport: Sendable {
    public var dim: Int
    public var keys: [UInt64]
    public var values: [Float]
    public var removed: [UInt64]
    public var version: ExportVersion
}
