import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSAdmin {
    /// Every stored row of a table, shard by shard in pages (row keys and what a pull returns for them);
    /// `progress(rowsSoFar)` after each page. Rows written after a shard's first page may be missing.
    public func exportTable(_ table: String, pageRows: Int = 4096, progress: (Int) -> Void = { _ in }) async throws -> (dim: Int, keys: [UInt64], values: [Float]) {
        var keys: [UInt64] = [], values: [Float] = []
        var dim = 0
        for s in 0..<shardCount {
            var cursor: (slot: UInt32, key: UInt64)? = nil
            while true {
                var request = Wire.ExportRowsRequest(table: table, limit: UInt32(pageRows))
                if let cursor { request.hasCursor = true; request.afterSlot = cursor.slot; request.afterKey = cursor.key }
                let page = try await call(shard: s, ShardRPC.exportRows, request)
                dim = Int(page.dim)
                guard page.values.count == page.keys.count * dim * 4 else {
                    throw ClientError.inconsistentCluster("shard \(s) exported \(page.values.count) value bytes for \(page.keys.count) rows of dim \(dim)")
                }
                keys += page.keys
                page.values.withUnsafeBytes { b in values += (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
                progress(keys.count)
                if page.done { break }
                cursor = (page.nextSlot, page.nextKey)
            }
        }
        return (dim, keys, values)
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
