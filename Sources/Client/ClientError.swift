import RPC
import EmbedPSWire

/// A failed client operation. Names the shard (index and address) and carries the server's status.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    case shard(index: Int, address: String, status: RPCStatus)
    case invalidArgument(String)
    case inconsistentCluster(String)
    /// Some shard parts of a gradient push were applied and others failed: see `PartialPush`.
    indirect case partialPush(PartialPush)

    public var description: String {
        switch self {
        case .shard(let i, let a, let s): "shard \(i) (\(a)): \(s)"
        case .invalidArgument(let m): "invalid argument: \(m)"
        case .inconsistentCluster(let m): "inconsistent cluster: \(m)"
        case .partialPush(let p): p.description
        }
    }
    /// The gRPC status of a shard failure, nil for local errors.
    /// Local argument errors report INVALID_ARGUMENT, as a shard would. A partial push reports its first
    /// failed part's.
    public var status: RPCStatus? {
        switch self {
        case .shard(_, _, let s): s
        case .invalidArgument(let m): RPCStatus(.invalidArgument, m)
        case .inconsistentCluster: nil
        case .partialPush(let p): p.failed.first?.error.status
        }
    }
    /// The machine-readable reason the shard sent (`embedps-error-bin`), nil for local errors and for
    /// transport failures that never reached a shard's handler. A partial push reports its first failed part's.
    public var detail: Wire.ErrorDetail? {
        switch self {
        case .shard(_, _, let s): s.errorDetail
        case .partialPush(let p): p.failed.first?.error.detail
        default: nil
        }
    }
    /// A shard refused ids of slots it no longer owns (the map changed): refresh the map and resend.
    public var isWrongOwner: Bool { detail?.reason == .wrongShard }

    /// `error` as a ClientError of `shard` (a shard status, or what it already was).
    static func wrap(_ error: any Error, shard: Int, address: String) -> ClientError {
        if let ce = error as? ClientError { return ce }
        if let s = error as? RPCStatus { return .shard(index: shard, address: address, status: s) }
        return .inconsistentCluster("shard \(shard) (\(address)): \(error)")
    }
}

extension RPCStatus {
    /// The ErrorDetail a shard or lookup service attached, if any.
    public var errorDetail: Wire.ErrorDetail? {
        guard let bytes = trailer(ShardMetadata.errorDetail) else { return nil }
        return try? Wire.ErrorDetail(decoding: bytes)
    }
}

/// A gradient push split over several shards of which some parts were applied (acknowledged) and others
/// failed after the client's retries. Each shard applies its part whole or not at all; parts on different
/// shards are independent, so the push as a whole is neither applied nor refused. Invariant: `failed` holds
/// every id of the push that was not acknowledged, each with its gradient row and the request id its part
/// was sent with; acknowledged ids are in no part. `EmbedPSClient.resend(_:)` sends the failed parts again
/// under the same request ids, so a part a shard applied while its answer was lost is applied at most once.
public struct PartialPush: Sendable, CustomStringConvertible {
    /// One shard's part that was not acknowledged.
    public struct Part: Sendable {
        public var shard: Int
        public var ids: [UInt64]
        /// `ids.count` rows of the table's dimension (duplicates already summed).
        public var gradients: [Float]
        /// The request id the part was sent with (nil for methods without one).
        public var requestID: String?
        public var error: ClientError
        /// true: the shard answered with a status that says nothing was applied (see the STATUS CODES of the
        /// proto). false: the outcome is unknown (deadline passed, connection lost): the shard may have
        /// applied it; resending with the same request id is then still safe.
        public var knownNotApplied: Bool
    }
    public var table: String
    /// The RPC the parts were sent to.
    public var method: any RPCMethodDescription
    /// Ids whose parts were acknowledged.
    public var idsAcknowledged: Int
    public var failed: [Part]

    public var description: String {
        let ids = failed.reduce(0) { $0 + $1.ids.count }
        let first = failed.first.map { "; first failure: \($0.error)" } ?? ""
        let unknown = failed.filter { !$0.knownNotApplied }.map(\.shard)
        return "push to '\(table)' partly applied: \(idsAcknowledged) ids acknowledged, \(ids) ids on shards \(failed.map(\.shard)) not" +
            (unknown.isEmpty ? " (not applied there)" : " (outcome unknown on shards \(unknown))") +
            "; EmbedPSClient.resend(_:) sends those parts again under their request ids\(first)"
    }

    /// Whether an answer proves the shard applied nothing: a status with the shard's ErrorDetail, other than
    /// UNAVAILABLE / NOT_REPLICATED (applied on the primary, not yet replicated) and INTERNAL.
    static func provesNothingApplied(_ e: any Error) -> Bool {
        guard let ce = e as? ClientError, let s = ce.status, let d = ce.detail else { return false }
        if d.reason == .notReplicated { return false }
        switch s.code {
        case .invalidArgument, .notFound, .alreadyExists, .resourceExhausted, .failedPrecondition, .unavailable,
             .aborted, .unauthenticated, .permissionDenied, .outOfRange, .unimplemented: return true
        default: return false
        }
    }
}
