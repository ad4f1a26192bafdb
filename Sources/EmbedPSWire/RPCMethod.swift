/// Who may call a method on a shard that runs with a token (the proto option `access`).
public enum RPCAccess: Sendable {
    /// Pulls, pushes and reads: a token is needed only with `--auth-scope all`.
    case data
    /// Anything that changes tables, their definitions or rows other than by a push: always needs the token.
    case admin
    /// The health check: never needs a token.
    case `public`
}

/// What a method does while the shard is frozen for a checkpoint (the proto option `while_frozen`).
public enum RPCWhileFrozen: Sendable {
    case serves
    /// UNAVAILABLE with reason FROZEN; nothing changes.
    case refuses
}

/// Whether a call whose outcome is unknown may be resent (the proto option `retry`).
public enum RPCRetry: Sendable {
    case safe
    /// Only with the same `x-embedps-request-id` on every attempt.
    case withRequestID
    case never
}

/// What a server and a client need to know about one RPC, without its message types.
public protocol RPCMethodDescription: Sendable {
    /// Full path, e.g. "/embedps.v1.Shard/Pull".
    var path: String { get }
    var access: RPCAccess { get }
    var whileFrozen: RPCWhileFrozen { get }
    var retry: RPCRetry { get }
}

/// One RPC of the contract: its path, request and response messages and behaviour classes. Generated from
/// the service definitions of Protos/*.proto (see `ShardRPC`, `LookupRPC`, `HealthRPC`); servers register
/// handlers by it and clients call through it, so each RPC is described once.
public struct RPCMethod<Request: WireMessage, Response: WireMessage>: RPCMethodDescription {
    public let path: String
    public let access: RPCAccess
    public let whileFrozen: RPCWhileFrozen
    public let retry: RPCRetry
    public init(path: String, access: RPCAccess, whileFrozen: RPCWhileFrozen, retry: RPCRetry) {
        self.path = path; self.access = access; self.whileFrozen = whileFrozen; self.retry = retry
    }
    /// The method name, e.g. "Pull".
    public var name: String { String(path[path.index(after: path.lastIndex(of: "/")!)...]) }
}

/// Request metadata keys of the shard service.
public enum ShardMetadata {
    /// Idempotency key of a Push / PushPooled (32 hex digits): a shard that already applied a push with this
    /// id answers a retry with the same result and applies nothing.
    public static let requestID = "x-embedps-request-id"
    /// Binary trailing metadata of every non-OK status: a serialized `Wire.ErrorDetail`.
    public static let errorDetail = "embedps-error-bin"
}
