/// Errors of the engine. Each case maps to one gRPC status (the mapping is `EngineError.rpcStatus` in the
/// Server module) and its description names
/// the table / id / shard and what to do.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    case unknownTable(String)
    case tableExists(String)
    case invalidSpec(table: String, message: String)
    case wrongDimension(table: String, expected: Int, got: Int)
    case nonFiniteGradient(table: String, id: UInt64, column: Int)
    case malformed(String)
    case wrongShard(table: String, id: UInt64, slot: Int, owner: Int, shard: Int, mapVersion: UInt64)
    case tooLarge(String)
    case storage(String)
    case unknownItem(table: String, item: UInt64)
    case notSemantic(String)
    case notSparse(String)
    case notDnis(String)
    case slotMoving(table: String, slot: Int)
    case dnisPruned(String)
    case notAlphaPrimary(table: String, shard: Int)
    case sparsityStepTooLarge(table: String, message: String)

    /// Text in every wrong-owner message (FAILED_PRECONDITION): clients that see it refresh the shard map.
    public static let shardMapVersionMarker = "shard map version"

    public var description: String {
        switch self {
        case .unknownTable(let t): "unknown table '\(t)': create it first (embedps-admin table create) or check the name"
        case .tableExists(let t): "table '\(t)' already exists with a different spec: drop it first or use another name"
        case .invalidSpec(let t, let m): "invalid spec for table '\(t)': \(m)"
        case .wrongDimension(let t, let e, let g): "table '\(t)' has dim \(e) but the request carries \(g) floats per row"
        case .nonFiniteGradient(let t, let id, let c): "gradient for table '\(t)' id \(id) column \(c) is NaN or Inf: nothing was applied"
        case .malformed(let m): "malformed request: \(m)"
        case .wrongShard(let t, let id, let slot, let owner, let shard, let v):
            "id \(id) of table '\(t)' is in slot \(slot), owned by shard \(owner), not this shard \(shard) (\(Self.shardMapVersionMarker) \(v)): refresh the shard map and retry"
        case .tooLarge(let m): "request too large: \(m)"
        case .storage(let m): "storage failure: \(m)"
        case .unknownItem(let t, let i): "item \(i) has no semantic-ID codes in table '\(t)': register its codes first (RegisterItems)"
        case .notSemantic(let t): "table '\(t)' is not a semantic-ID table: create it with a SemanticConfig"
        case .notSparse(let t): "table '\(t)' is not a dynamic-sparsity table: create it with a SparsityConfig"
        case .slotMoving(let t, let slot): "slot \(slot) of table '\(t)' is being migrated to another shard: retry shortly (clients retry UNAVAILABLE)"
        case .notDnis(let t): "table '\(t)' is not a DNIS table: create it with a DnisConfig"
        case .dnisPruned(let t): "DNIS table '\(t)' is already pruned (alpha folded into the rows): the search is over"
        case .notAlphaPrimary(let t, let s): "alpha updates of table '\(t)' go to shard 0 (the alpha primary), not shard \(s)"
        case .sparsityStepTooLarge(let t, let m): "prune-and-regrow step on table '\(t)' refused, nothing changed: \(m); take a fresh SparsityReport and retry"
        }
    }
}
