import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSAdmin {
    /// Registers items' semantic-ID codes (`codes[i]` has the table's `levels` codes) on every shard.
    /// Returns the number of items the table knows afterwards.
    @discardableResult
    public func registerItems(table: String, items: [UInt64], codes: [[Int]]) async throws -> Int {
        guard items.count == codes.count else { throw ClientError.invalidArgument("\(items.count) items but \(codes.count) code lists") }
        guard let levels = codes.first?.count else { return 0 }
        guard codes.allSatisfy({ $0.count == levels && $0.allSatisfy { $0 >= 0 && $0 <= Int(UInt32.max) } }) else {
            throw ClientError.invalidArgument("every item needs \(levels) non-negative codes")
        }
        var total = 0
        let chunk = 100_000
        var start = 0
        while start < items.count {
            let part = start..<min(items.count, start + chunk)
            let request = Wire.RegisterItemsRequest(table: table, items: Array(items[part]), codes: part.flatMap { codes[$0].map { UInt32($0) } })
            let answers = try await callAll(ShardRPC.registerItems, request)
            total = answers.map { Int($0.items) }.min() ?? 0
            start += chunk
        }
        return total
    }
}

extension EmbedPSClient {
    /// Pooled pull from a semantic table: per item, the sum of its piece rows (items.count * dim floats).
    /// Every shard returns partial sums for the pieces it owns; they are added here.
    public func pullPooled(table: String, items: [UInt64]) async throws -> [Float] {
        let dim = try await route(table).dim
        let size = RowMessageEncoder.pullRequestSize(table: table, count: items.count)
        var request = [UInt8](repeating: 0, count: size)
        request.withUnsafeMutableBytes { RowMessageEncoder.writePullRequest(into: $0, table: table, count: items.count) { items[$0] } }
        var out = [Float](repeating: 0, count: items.count * dim)
        for message in try await callAllRaw(ShardRPC.pullPooled, request) {
            try message.withUnsafeBytes { bytes in
                let (rdim, values) = try RowMessageDecoder.pullResponse(bytes)
                guard rdim == dim, values.count == out.count * 4 else {
                    throw ClientError.inconsistentCluster("a shard answered \(values.count / 4) floats of dim \(rdim) for \(items.count) items of dim \(dim)")
                }
                for i in 0..<out.count { out[i] += values.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
            }
        }
        return out
    }

    /// Pooled push to a semantic table: each item's gradient (items.count * dim floats) goes to every piece
    /// of the item; each shard applies the pieces it owns. Returns the pieces updated across shards.
    @discardableResult
    public func pushPooled(table: String, items: [UInt64], gradients: [Float]) async throws -> Int {
        let dim = try await route(table).dim
        guard gradients.count == items.count * dim else {
            throw ClientError.invalidArgument("pooled push of \(items.count) items to '\(table)' (dim \(dim)) needs \(items.count * dim) floats, got \(gradients.count)")
        }
        if let bad = gradients.firstIndex(where: { !$0.isFinite }) {
            throw ClientError.invalidArgument("gradient for table '\(table)' item \(items[bad / dim]) column \(bad % dim) is NaN or Inf: nothing was sent")
        }
        let size = RowMessageEncoder.pushRequestSize(table: table, count: items.count, dim: dim)
        var request = [UInt8](repeating: 0, count: size)
        gradients.withUnsafeBufferPointer { g in
            request.withUnsafeMutableBytes {
                RowMessageEncoder.writePushRequest(into: $0, table: table, count: items.count, dim: dim, ids: { items[$0] },
                                                   row: { i, dst in dst.update(from: g.baseAddress! + i * dim, count: dim) })
            }
        }
        return try await callAllRaw(ShardRPC.pushPooled, request).enumerated().reduce(0) { acc, m in
            acc + Int(try Self.decode(Wire.PushResponse.self, m.element, shard: m.offset).rowsUpdated)
        }
    }
}
