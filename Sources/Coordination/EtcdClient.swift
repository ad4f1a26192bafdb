import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed etcd call: what was asked, of which endpoint, and why (unreachable, HTTP status, bad answer).
public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// A client of etcd's v3 JSON gateway (`POST /v3/...` on the client URL, etcd 3.4+), with what a shard needs
/// for its primary lease: leases (grant, keep alive, revoke), reading one key, and compare-and-put
/// transactions. One short HTTP/1.0 exchange per call over a fresh TCP connection, each bounded by
/// `timeoutSeconds`. Plain http only. Immutable; thread-safe.
public struct EtcdClient: Sendable {
    public let endpoint: String
    let host: String
    let port: UInt16
    public var timeoutSeconds: Double = 2

    /// `endpoint` is http://HOST:PORT with an IPv4 host (or localhost).
    public init(endpoint: String) throws {
        var rest = endpoint
        guard rest.hasPrefix("http://") else { throw EtcdError("etcd endpoint '\(endpoint)' must be http://HOST:PORT") }
        rest.removeFirst("http://".count)
        if rest.hasSuffix("/") { rest.removeLast() }
        let parts = rest.split(separator: ":")
        guard parts.count == 2, let p = UInt16(parts[1]) else { throw EtcdError("etcd endpoint '\(endpoint)' must be http://HOST:PORT") }
        self.endpoint = endpoint
        host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        port = p
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else { throw EtcdError("etcd endpoint '\(endpoint)': the host must be an IPv4 address or localhost") }
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    public func grantLease(ttl: Int) throws -> Int64 {
        let r = try call("/v3/lease/grant", ["TTL": ttl])
        guard let id = Self.int64(r["ID"]) else { throw EtcdError("lease grant: no ID in \(r)") }
        return id
    }

    /// Renews lease `id`; returns the seconds it has left (0: it expired or never existed).
    public func keepAlive(_ id: Int64) throws -> Int {
        let r = try call("/v3/lease/keepalive", ["ID": String(id)])
        return Self.int64((r["result"] as? [String: Any])?["TTL"]).map { Int($0) } ?? 0
    }

    public func revoke(_ id: Int64) throws { _ = try call("/v3/lease/revoke", ["ID": String(id)]) }

    /// The value of `key` and the lease it is attached to, nil when absent.
    public func get(_ key: String) throws -> (value: String, lease: Int64)? {
        let r = try call("/v3/kv/range", ["key": Self.b64(key)])
        guard let kv = (r["kvs"] as? [[String: Any]])?.first else { return nil }
        guard let v = (kv["value"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return ("", Self.int64(kv["lease"]) ?? 0) }
        return (String(decoding: v, as: UTF8.self), Self.int64(kv["lease"]) ?? 0)
    }

    /// Puts `value` under `lease` if `key` does not exist, or (with `expected`) if it holds exactly that
    /// value. Returns whether it was put (one etcd transaction: atomic against every other client).
    public func put(_ key: String, _ value: String, lease: Int64, ifAbsent: Bool, orIfValue expected: String? = nil) throws -> Bool {
        let put: [String: Any] = ["request_put": ["key": Self.b64(key), "value": Self.b64(value), "lease": String(lease)]]
        var compare: [String: Any] = ["key": Self.b64(key), "result": "EQUAL"]
        if let expected, !ifAbsent {
            compare["target"] = "VALUE"; compare["value"] = Self.b64(expected)
        } else {
            compare["target"] = "CREATE"; compare["create_revision"] = "0"
        }
        let r = try call("/v3/kv/txn", ["compare": [compare], "success": [put]])
        return (r["succeeded"] as? Bool) ?? false
    }

    // MARK: transport

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    static func int64(_ v: Any?) -> Int64? {
        if let s = v as? String { return Int64(s) }
        if let n = v as? NSNumber { return n.int64Value }
        return nil
    }

    func call(_ path: String, _ body: [String: Any]) throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body)
        let reply = try exchange(path, payload)
        guard let obj = try? JSONSerialization.jsonObject(with: reply) as? [String: Any] else {
            throw EtcdError("etcd \(endpoint)\(path) answered something that is not a JSON object: \(String(decoding: reply.prefix(200), as: UTF8.self))")
        }
        if let e = obj["error"] { throw EtcdError("etcd \(endpoint)\(path): \(e)") }
        return obj
    }

    /// One HTTP/1.0 POST (the server closes the connection after the answer: no chunking, no keep-alive).
    func exchange(_ path: String, _ payload: Data) throws -> Data {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw EtcdError("socket: errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - Double(Int(timeoutSeconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &addr.sin_addr)
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw EtcdError("cannot reach etcd at \(endpoint) (errno \(errno)): is it running? (--etcd http://HOST:PORT)") }
        var request = Data("POST \(path) HTTP/1.0\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\nContent-Length: \(payload.count)\r\n\r\n".utf8)
        request.append(payload)
        try request.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
            var sent = 0
            while sent < b.count {
                let n = send(fd, b.baseAddress! + sent, b.count - sent, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw EtcdError("etcd \(endpoint)\(path): send failed (errno \(errno))") }
                sent += n
            }
        }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { break }
            guard n > 0 else { throw EtcdError("etcd \(endpoint)\(path): no answer within \(timeoutSeconds) s (errno \(errno))") }
            response.append(contentsOf: buffer[0..<n])
            guard response.count < 16 << 20 else { throw EtcdError("etcd \(endpoint)\(path): answer over 16 MiB") }
        }
        guard let split = response.range(of: Data("\r\n\r\n".utf8)) else { throw EtcdError("etcd \(endpoint)\(path): malformed HTTP answer") }
        let head = String(decoding: response[..<split.lowerBound], as: UTF8.self)
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        let body = response[split.upperBound...]
        guard status == 200 else { throw EtcdError("etcd \(endpoint)\(path): HTTP \(status): \(String(decoding: body.prefix(300), as: UTF8.self))") }
        return Data(body)
    }
}
