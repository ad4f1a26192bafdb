import Foundation
import CMicroHTTPD

/// A response of the HTTP endpoint.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: String
    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status; self.contentType = contentType; self.body = body
    }
}

/// A GET request: method, path (without the query) and the decoded query arguments.
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
}

/// A small HTTP server (libmicrohttpd) for operational endpoints such as Prometheus `/metrics` and
/// `/healthz`, and the lookup service's JSON API. The handler runs on a daemon thread (one, or a pool of
/// `threads` so handlers may block) and must be thread-safe. Stops on `stop()` or deinit.
public final class HTTPServer: @unchecked Sendable {
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private var daemon: OpaquePointer?
    /// The bound port.
    public private(set) var port: Int = 0

    /// Listens on `port` (0 = any free port) on all interfaces.
    public init(port: Int, threads: Int = 1, handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        self.handler = handler
        let cls = Unmanaged.passUnretained(self).toOpaque()
        let started = threads <= 1 ? embedps_mhd_start(UInt16(clamping: port), httpAccessHandler, cls)
            : embedps_mhd_start_pool(UInt16(clamping: port), httpAccessHandler, cls, UInt32(threads))
        guard let d = started else {
            throw HTTPServerError("cannot listen for HTTP on port \(port): port in use or not permitted (pick another port)")
        }
        daemon = d
        self.port = Int(embedps_mhd_port(d))
    }

    /// Path-only handler (operational endpoints).
    public convenience init(port: Int, handler: @escaping @Sendable (String, String) -> HTTPResponse) throws {
        try self.init(port: port, threads: 1) { handler($0.method, $0.path) }
    }

    public func stop() {
        if let d = daemon { MHD_stop_daemon(d); daemon = nil }
    }
    deinit { stop() }
}

public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// libmicrohttpd access callback: dispatches to the `HTTPServer` in `cls`.
private func httpAccessHandler(_ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?, _ url: UnsafePointer<CChar>?,
                               _ method: UnsafePointer<CChar>?, _ version: UnsafePointer<CChar>?, _ uploadData: UnsafePointer<CChar>?,
                               _ uploadSize: UnsafeMutablePointer<Int>?, _ state: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> MHD_Result {
    guard let cls, let connection else { return .NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
    let m = method.map { String(cString: $0) } ?? "GET"
    let path = url.map { String(cString: $0) } ?? "/"
    let response = m == "GET" || m == "HEAD" ? server.handler(HTTPRequest(method: m, path: path, query: queryArguments(connection)))
        : HTTPResponse(status: 405, body: "only GET is served here\n")
    return response.body.withCString { body in
        embedps_mhd_respond(connection, UInt32(response.status), response.contentType, body, strlen(body))
    }
}

/// Collects the decoded GET arguments of a connection.
private func queryArguments(_ connection: OpaquePointer) -> [String: String] {
    final class Box { var values: [String: String] = [:] }
    let box = Box()
    _ = withExtendedLifetime(box) {
        MHD_get_connection_values(connection, MHD_ValueKind.GET_ARGUMENT_KIND, { cls, _, key, value in
            guard let cls, let key else { return .YES }
            let box = Unmanaged<Box>.fromOpaque(cls).takeUnretainedValue()
            box.values[String(cString: key)] = value.map { String(cString: $0) } ?? ""
            return .YES
        }, Unmanaged.passUnretained(box).toOpaque())
    }
    return box.values
}
