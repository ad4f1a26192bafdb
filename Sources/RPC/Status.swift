import CGRPC

/// gRPC status codes (the numbering is fixed by the gRPC protocol).
public enum StatusCode: Int32, Sendable, CustomStringConvertible {
    case ok = 0, cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5
    case alreadyExists = 6, permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10
    case outOfRange = 11, unimplemented = 12, internalError = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16

    public var description: String {
        switch self {
        case .ok: "OK"; case .cancelled: "CANCELLED"; case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"; case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"; case .alreadyExists: "ALREADY_EXISTS"; case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"; case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"; case .outOfRange: "OUT_OF_RANGE"; case .unimplemented: "UNIMPLEMENTED"
        case .internalError: "INTERNAL"; case .unavailable: "UNAVAILABLE"; case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }
    var c: grpc_status_code { grpc_status_code(rawValue: rawValue) }
}

/// A failed RPC: a status code, a human message naming what failed and what to do, and trailing metadata
/// (machine-readable details, e.g. a binary `-bin` entry a service defines).
public struct RPCStatus: Error, Sendable, CustomStringConvertible {
    public let code: StatusCode
    public let message: String
    /// Trailing metadata sent with (server) or received with (client) the status; values are raw bytes.
    public let trailers: [(key: String, value: [UInt8])]
    public init(_ code: StatusCode, _ message: String, trailers: [(key: String, value: [UInt8])] = []) {
        self.code = code; self.message = message; self.trailers = trailers
    }
    public var description: String { "\(code): \(message)" }
    /// The value of trailing metadata entry `key`, if sent.
    public func trailer(_ key: String) -> [UInt8]? { trailers.first { $0.key == key }?.value }
}

/// An error type that knows its gRPC status. Server handlers may throw these; anything else becomes INTERNAL.
public protocol RPCStatusConvertible: Error {
    var rpcStatus: RPCStatus { get }
}

extension RPCStatus: RPCStatusConvertible {
    public var rpcStatus: RPCStatus { self }
}
