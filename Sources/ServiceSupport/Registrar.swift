import Foundation
import RPC
import EmbedPSWire

/// What a service refuses updates through while it is frozen (a shard's checkpoint freeze).
public protocol UpdateGate: Sendable {
    /// Admits an update or throws the status that refuses it; a successful enter is paired with `leave`.
    func enter() throws
    func leave()
}

/// Who may call what on a shard. Invariant: without a token every call is allowed; with a token, methods
/// whose contract says ACCESS_ADMIN require `authorization: Bearer <token>` request metadata, and with
/// scope `.all` every method but ACCESS_PUBLIC ones (the health check) does. A refused call gets
/// UNAUTHENTICATED / AUTH_REQUIRED and changes nothing.
public struct AccessPolicy: Sendable {
    public enum Scope: String, Sendable { case admin, all }
    public var token: String?
    public var scope: Scope
    public init(token: String? = nil, scope: Scope = .admin) { self.token = token; self.scope = scope }

    public func check(_ method: any RPCMethodDescription, _ context: ServerCallContext) throws {
        guard let token, method.access != .public else { return }
        guard scope == .all || method.access == .admin else { return }
        let sent = context.metadata.first { $0.key.lowercased() == "authorization" }?.value
        guard let sent else {
            throw RPCStatus(.unauthenticated, .authRequired, "\(context.method) needs a token: send 'authorization: Bearer <token>' (tools: --auth-token-file PATH)")
        }
        let expected = Array("Bearer \(token)".utf8), got = Array(sent.utf8)
        // Constant time in the token's length.
        var diff = UInt8(expected.count == got.count ? 0 : 1)
        for i in 0..<expected.count { diff |= expected[i] ^ (i < got.count ? got[i] : 0) }
        guard diff == 0 else { throw RPCStatus(.unauthenticated, .authRequired, "\(context.method): wrong token") }
    }
}

/// Registers handlers by their generated method descriptions: the access policy from `access`, the freeze
/// gate from `whileFrozen`, strict decoding of the request type, encoding of the response type. Every
/// method of a service must be registered exactly once (`finish` checks it).
public struct Registrar {
    let server: Server
    let policy: AccessPolicy
    let gate: (any UpdateGate)?
    private let registered = RegisteredPaths()

    public init(server: Server, policy: AccessPolicy, gate: (any UpdateGate)?) { self.server = server; self.policy = policy; self.gate = gate }

    /// A handler that works on the raw request bytes (the hot row paths decode in place).
    public func handleRaw<Q, A>(_ method: RPCMethod<Q, A>, _ body: @escaping @Sendable (ServerCallContext, ReceivedMessage) throws -> OutgoingMessage) {
        registered.add(method.path)
        let policy = self.policy, gate = self.gate
        let refusesWhileFrozen = method.whileFrozen == .refuses
        server.register(method.path) { context, message in
            try policy.check(method, context)
            guard refusesWhileFrozen, let gate else { return try body(context, message) }
            try gate.enter()
            defer { gate.leave() }
            return try body(context, message)
        }
    }

    /// A handler that may answer after it returned (through `reply`, exactly once): the access policy and
    /// the freeze gate apply to its synchronous part; what it throws there is answered as its status.
    public func handleRawDeferred<Q, A>(_ method: RPCMethod<Q, A>, _ body: @escaping @Sendable (ServerCallContext, ReceivedMessage, ServerReply) throws -> Void) {
        registered.add(method.path)
        let policy = self.policy, gate = self.gate
        let refusesWhileFrozen = method.whileFrozen == .refuses
        server.registerDeferred(method.path) { context, message, reply in
            do {
                try policy.check(method, context)
                guard refusesWhileFrozen, let gate else { return try body(context, message, reply) }
                try gate.enter()
                defer { gate.leave() }
                try body(context, message, reply)
            } catch {
                reply.answer { throw error }
            }
        }
    }

    /// A handler of decoded requests.
    public func handle<Q, A>(_ method: RPCMethod<Q, A>, _ body: @escaping @Sendable (ServerCallContext, Q) throws -> A) {
        handleRaw(method) { context, message in
            let request = try message.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WireError) in try Q(decoding: b) }
            return OutgoingMessage(bytes: try body(context, request).encoded())
        }
    }

    /// Fails (at start-up) when a method of `methods` has no handler: each RPC is described once, in the .proto.
    public func finish(_ methods: [any RPCMethodDescription]) {
        let missing = methods.map(\.path).filter { !registered.contains($0) }
        precondition(missing.isEmpty, "no handler registered for \(missing)")
    }
}

private final class RegisteredPaths: @unchecked Sendable {
    private let lock = NSLock()
    private var paths = Set<String>()
    func add(_ p: String) { lock.withLock { precondition(paths.insert(p).inserted, "\(p) registered twice") } }
    func contains(_ p: String) -> Bool { lock.withLock { paths.contains(p) } }
}

