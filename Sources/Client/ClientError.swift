import RPC
import EmbedPSWire

/// A failed client operation. Names the shard (index and address) and carries the server's status.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    case shard(index: Int, address: String, status: RPCStatus)
    case invalidArgument(String)
    case inconsistentCluster(String)

    public var description: String {
        switch self {
        case .shard(let i, let a, let s): "shard \(i) (\(a)): \(s)"
        case .invalidArgument(let m): "invalid argument: \(m)"
        case .inconsistentCluster(let m): "inconsistent cluster: \(m)"
        }
    }
    /// The gRPC status of a shard failure, nil for local errors.
    /// Local argument errors report INVALID_ARGUMENT, as a shard would.
    public var status: RPCStatus? {
        switch self {
        case .shard(_, _, let s): s
        case .invalidArgument(let m): RPCStatus(.invalidArgument, m)
        case .inconsistentCluster: nil
        }
    }
    /// The machine-readable reason the shard sent (`embedps-error-bin`), nil for local errors and for
    /// transport failures that never reached a shard's handler.
    public var detail: Wire.ErrorDetail? {
        guard case .shard(_, _, let s) = self else { return nil }
        return s.errorDetail
    }
    /// A shard refused ids of slots it no longer owns (the map changed): refresh the map and resend.
    public var isWrongOwner: Bool { detail?.reason == .wrongShard }
}

extension RPCStatus {
    /// The ErrorDetail a shard or lookup service attached, if any.
    public var errorDetail: Wire.ErrorDetail? {
        guard let bytes = trailer(ShardMetadata.errorDetail) else { return nil }
        return try? Wire.ErrorDetail(decoding: bytes)
    }
}
