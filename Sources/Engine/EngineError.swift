import Vocabulary
import SemanticTokenizers

/// Errors of the engine. Each case maps to one gRPC status and one `ErrorReason` of the .proto (the mapping
/// is `EngineError.rpcStatus` in the Server module); its description names the table / id / shard and what
/// to do. A request that fails with any of these changed nothing.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    case unknownTable(String)
    case tableExists(String)
    case invalidName(NameError)
    case invalidSpec(table: String, message: String)
    case wrongDimension(table: String, expected: Int, got: Int)
    case nonFiniteGradient(table: String, id: UInt64, column: Int)
    case malformed(String)
    case wrongShard(table: String, id: UInt64, slot: Int, owner: Int, shard: Int, mapVersion: UInt64)
    case tooLarge(String)
    case storage(String)
    case unknownItem(table: String, item: UInt64)
    case unknownCheckpoint(String)
    case checkpointExists(String)
    case notSemantic(String)
    case notSparse(String)
    case notDnis(String)
    case slotMoving(table: String, slot: Int)
    /// Slots are moving to or from this shard: an operation that needs stable slots (eviction) waits.
    case migrationInProgress(table: String)
    case dnisPruned(String)
    case notAlphaPrimary(table: String, shard: Int)
    case sparsityStepTooLarge(table: String, message: String)
    /// A request that cannot apply in the state the shard or table is in (not a defect of the request bytes).
    case wrongState(String)
    case logTruncated(table: String, after: UInt64, logStart: UInt64)
    case notPrimary(primary: String)
    /// The engine was closed (shutdown or restore) while the call was on its way in.
    case closed


    /// Maps a table-spec rule violation (from the vocabulary) to its engine error.
    public init(_ e: SpecError) {
        switch e.reason {
        case .invalidName: self = .invalidName(NameError(kind: .table, name: e.table))
        case .invalidSpec: self = .invalidSpec(table: e.table, message: e.message)
        }
    }

    public var description: String {
        switch self {
        case .unknownTable(let t): "unknown table '\(t)': create it first (embedps-admin table create) or check the name"
        case .tableExists(let t): "table '\(t)' already exists with a different spec: drop it first or use another name"
        case .invalidName(let e): e.description
        case .invalidSpec(let t, let m): "invalid spec for table '\(t)': \(m)"
        case .wrongDimension(let t, let e, let g): "table '\(t)' has dim \(e) but the request carries \(g) floats per row"
        case .nonFiniteGradient(let t, let id, let c): "value for table '\(t)' id \(id) column \(c) is NaN or Inf: nothing was applied"
        case .malformed(let m): "malformed request: \(m)"
        case .wrongShard(let t, let id, let slot, let owner, let shard, let v):
            "id \(id) of table '\(t)' is in slot \(slot), owned by shard \(owner), not this shard \(shard) (shard map version \(v)): refresh the shard map and retry"
        case .tooLarge(let m): "request too large: \(m)"
        case .storage(let m): "storage failure: \(m)"
        case .unknownItem(let t, let i): "item \(i) has no semantic-ID codes in table '\(t)': register its codes first (RegisterItems)"
        case .unknownCheckpoint(let n): "no checkpoint '\(n)' on this shard (embedps-admin checkpoint list)"
        case .checkpointExists(let n): "checkpoint '\(n)' already exists: pick another name"
        case .notSemantic(let t): "table '\(t)' is not a semantic-ID table: create it with a SemanticConfig"
        case .notSparse(let t): "table '\(t)' is not a dynamic-sparsity table: create it with a SparsityConfig"
        case .slotMoving(let t, let slot): "slot \(slot) of table '\(t)' is being migrated to another shard: retry shortly (clients retry UNAVAILABLE)"
        case .migrationInProgress(let t): "slots are moving to or from this shard; eviction of '\(t.isEmpty ? "*" : t)' waits for the reshard to finish: retry after it (UNAVAILABLE)"
        case .notDnis(let t): "table '\(t)' is not a DNIS table: create it with a DnisConfig"
        case .dnisPruned(let t): "DNIS table '\(t)' is already pruned (alpha folded into the rows): the search is over"
        case .notAlphaPrimary(let t, let s): "alpha updates of table '\(t)' go to shard 0 (the alpha primary), not shard \(s)"
        case .sparsityStepTooLarge(let t, let m): "prune-and-regrow step on table '\(t)' refused, nothing changed: \(m); take a fresh SparsityReport and retry"
        case .wrongState(let m): m
        case .logTruncated(let t, let a, let start): "the update log of '\(t)' no longer holds the records after \(a) (checkpoints trimmed it to \(start)): copy the rows first (Flush, then ReadStoredRows) and read on from there"
        case .notPrimary(let p): "this server is a read-only follower of \(p): send writes to the primary"
        case .closed: "the shard's data is being closed or replaced: retry shortly"

        }
    }
}
