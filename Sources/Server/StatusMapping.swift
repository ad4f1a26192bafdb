import RPC
import Engine
import EmbedPSWire
import Vocabulary
import ServiceSupport

extension EngineError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus {
        var d = Wire.ErrorDetail()
        let code: StatusCode
        switch self {
        case .unknownTable(let t): code = .notFound; d.reason = .unknownTable; d.table = t
        case .tableExists(let t): code = .alreadyExists; d.reason = .tableExists; d.table = t
        case .invalidName: code = .invalidArgument; d.reason = .invalidName
        case .invalidSpec(let t, _): code = .invalidArgument; d.reason = .invalidSpec; d.table = t
        case .wrongDimension(let t, _, _): code = .invalidArgument; d.reason = .wrongDimension; d.table = t
        case .nonFiniteGradient(let t, let id, _): code = .invalidArgument; d.reason = .nonFinite; d.table = t; d.id = id
        case .malformed: code = .invalidArgument; d.reason = .malformed
        case .wrongShard(let t, let id, let slot, let owner, _, let v):
            code = .failedPrecondition; d.reason = .wrongShard; d.table = t; d.id = id
            d.slot = UInt32(slot); d.ownerShard = UInt32(owner); d.shardMapVersion = v
        case .tooLarge: code = .resourceExhausted; d.reason = .tooLarge
        case .storage: code = .internalError; d.reason = .storage
        case .unknownItem(let t, let item): code = .notFound; d.reason = .unknownItem; d.table = t; d.id = item
        case .unknownCheckpoint: code = .notFound; d.reason = .unknownCheckpoint
        case .checkpointExists: code = .alreadyExists; d.reason = .checkpointExists
        case .notSemantic(let t), .notSparse(let t), .notDnis(let t): code = .failedPrecondition; d.reason = .wrongTableKind; d.table = t
        case .slotMoving(let t, let slot): code = .unavailable; d.reason = .slotMoving; d.table = t; d.slot = UInt32(slot)
        case .migrationInProgress(let t): code = .unavailable; d.reason = .slotMoving; d.table = t
        case .dnisPruned(let t), .notAlphaPrimary(let t, _), .sparsityStepTooLarge(let t, _): code = .failedPrecondition; d.reason = .wrongState; d.table = t
        case .wrongState: code = .failedPrecondition; d.reason = .wrongState
        case .logTruncated(let t, _, _): code = .failedPrecondition; d.reason = .logTruncated; d.table = t
        case .notPrimary(let p): code = .failedPrecondition; d.reason = .notPrimary; d.primary = p
        case .closed: code = .unavailable; d.reason = .shuttingDown

        }
        return RPCStatus(code, description, detail: d)
    }
}

extension SpecError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus { EngineError(self).rpcStatus }
}
