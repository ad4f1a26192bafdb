import RPC
import EmbedPSWire
import Vocabulary

// Every error a shard or the lookup service answers with becomes one gRPC status plus a `Wire.ErrorDetail`
// in the `embedps-error-bin` trailer (the table of codes and reasons is at the top of Protos/embedps.proto).

extension RPCStatus {
    /// A status carrying `detail` as the `embedps-error-bin` trailer.
    public init(_ code: StatusCode, _ message: String, detail: Wire.ErrorDetail) {
        self.init(code, message, trailers: [(key: ShardMetadata.errorDetail, value: detail.encoded())])
    }
    /// A status with just a reason.
    public init(_ code: StatusCode, _ reason: Wire.ErrorReason, _ message: String) {
        self.init(code, message, detail: Wire.ErrorDetail(reason: reason))
    }

    /// This status with an ErrorDetail derived from its code when it has none yet (statuses made by the gRPC
    /// bridge itself: unknown method, shutting down, a request without a message).
    public var withDefaultDetail: RPCStatus {
        guard trailer(ShardMetadata.errorDetail) == nil else { return self }
        let reason: Wire.ErrorReason = switch code {
        case .invalidArgument: .malformed
        case .unimplemented: .notServed
        case .unavailable: .shuttingDown
        case .unauthenticated: .authRequired
        case .resourceExhausted: .tooLarge
        case .notFound: .unknownService
        case .aborted: .busy
        case .failedPrecondition: .wrongState
        default: .storage
        }
        return RPCStatus(code, message, detail: Wire.ErrorDetail(reason: reason))
    }
}

extension WireError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus { RPCStatus(.invalidArgument, .malformed, description) }
}

extension NameError: RPCStatusConvertible {
    public var rpcStatus: RPCStatus { RPCStatus(.invalidArgument, .invalidName, description) }
}
