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

/// A small HTTP server (libmicrohttpd, its own polling thread) for operational endpoints such as
/// Prometheus `/metrics` and `/healthz`. `handler(method, path)` runs on the daemon's thread and must be
/// thread-safe. Stops on `stop()` or deinit.
public final class HTTPServer: @unchecked Sendable {
    let handler: @Sendable (String, String) -> HTTPResponse
    private var daemon: OpaquePointer?
    /// The bound port.
    public private(set) var port: Int = 0

    /// Listens on `port` (0 = any free port) on all interfaces.
    public init(port: Int, handler: @escaping @Sendable (String, String) -> HTTPResponse) throws {
        self.handler = handler
        let cls = Unmanaged.passUnretained(self).toOpaque()
        guard let d = embedps_mhd_start(UInt16(clamping: port), httpAccessHandler, cls) else {
            throw HTTPServerError("cannot listen for HTTP on port \(port): port in use or not permitted (pick another --metrics-port)")
        }
        daemon = d
        self.port = Int(embedps_mhd_port(d))
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
    let response = m == "GET" || m == "HEAD" ? server.handler(m, path)
        : HTTPResponse(status: 405, body: "only GET is served here\n")
    return response.body.withCString { body in
        embedps_mhd_respond(connection, UInt32(response.status), response.contentType, body, strlen(body))
    }
}
