import Foundation
import RPC
import Engine
import EmbedPSWire

extension EmbedPSClient {
    /// Every stored row of a table, shard by shard in pages (row keys and what a pull returns for them);
    /// `progress(rowsSoFar)` after each page. Rows written after a shard's first page may be missing.
    public func exportTable(_ table: String, pageRows: Int = 4096, progress: (Int) -> Void = { _ in }) async throws -> (dim: Int, keys: [UInt64], values: [Float]) {
        var keys: [UInt64] = [], values: [Float] = []
        var dim = 0
        for s in 0..<shardCount {
            var cursor: (slot: UInt32, key: UInt64)? = nil
            while true {
                let request = WireExportRowsRequest(table: table, cursor: cursor, limit: UInt32(pageRows)).encoded()
                let m = try await call(shard: s, ShardMethod.exportRows) { OutgoingMessage(bytes: request) }
                let page = try m.withUnsafeBytes { try WireExportRowsResponse(decoding: $0) }
                dim = Int(page.dim)
                guard page.values.count == page.keys.count * dim else {
                    throw ClientError.inconsistentCluster("shard \(s) exported \(page.values.count) floats for \(page.keys.count) rows of dim \(dim)")
                }
                keys += page.keys; values += page.values
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
            _ = try await sendGradientRows(table: table, ids: Array(keys[start..<end]), gradients: part, method: ShardMethod.importRows)
            start = end
            progress(start)
        }
    }
}
