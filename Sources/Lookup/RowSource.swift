import Foundation
import Client

/// Where the lookup service reads rows: the live cluster, or a cluster checkpoint opened read-only.
public protocol RowSource: Sendable {
    func dim(of table: String) async throws -> Int
    /// Rows of `ids` (ids.count * dim floats), in order.
    func pull(table: String, ids: [UInt64]) async throws -> [Float]
    /// Per item, the sum of its semantic-ID piece rows (items.count * dim floats).
    func pullPooled(table: String, items: [UInt64]) async throws -> [Float]
}

extension EmbedPSClient: RowSource {}
