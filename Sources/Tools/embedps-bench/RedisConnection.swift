import Foundation
import Glibc

/// A blocking RESP2 connection to a Redis server, just enough for the baseline: pipelined commands,
/// bulk-string arrays read straight into float buffers. One connection per benchmark client; not thread-safe.
final class RedisConnection {
    private let fd: Int32
    private var inbuf = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0, end = 0
    private var out: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); throw BenchError("cannot connect to redis on 127.0.0.1:\(port): errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
    }
    deinit { close(fd) }

    /// Appends one command to the pipeline. Arguments are raw byte strings.
    func append(_ args: [UnsafeRawBufferPointer]) {
        out += Array("*\(args.count)\r\n".utf8)
        for a in args {
            out += Array("$\(a.count)\r\n".utf8)
            out += a
            out += [13, 10]
        }
    }
    func append(_ args: [String]) {
        let bytes = args.map { Array($0.utf8) }
        bytes.withUnsafeBufferPointers { append($0) }
    }

    func flush() throws {
        var off = 0
        while off < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + off, out.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw BenchError("redis send failed: errno \(errno)") }
            off += n
        }
        out.removeAll(keepingCapacity: true)
    }

    private func fill() throws {
        if start == end { start = 0; end = 0 }
        if end == inbuf.count {
            if start > 0 { inbuf.withUnsafeMutableBytes { b in _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start) }; end -= start; start = 0 }
            else { inbuf += [UInt8](repeating: 0, count: inbuf.count) }
        }
        let n = inbuf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + end, $0.count - end, 0) }
        guard n > 0 else { throw BenchError("redis connection closed (errno \(errno))") }
        end += n
    }
    private func line() throws -> [UInt8] {
        while true {
            if let i = inbuf[start..<end].firstIndex(of: 10), i > start, inbuf[i - 1] == 13 {
                let l = Array(inbuf[start..<(i - 1)]); start = i + 1; return l
            }
            try fill()
        }
    }
    private func bytes(_ n: Int, into dst: UnsafeMutableRawPointer?) throws {
        while end - start < n + 2 { try fill() }
        if let dst { inbuf.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + start, byteCount: n) } }
        start += n + 2
    }

    /// Reads one reply. Bulk strings of an array are copied to `bulk(i)` (nil to discard).
    /// Returns the integer/array count; throws on an error reply.
    @discardableResult
    func readReply(bulk: (Int) -> UnsafeMutableRawPointer? = { _ in nil }) throws -> Int {
        let l = try line()
        guard let kind = l.first else { throw BenchError("empty redis reply") }
        let rest = String(decoding: l.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return 0
        case UInt8(ascii: ":"): return Int(rest) ?? 0
        case UInt8(ascii: "-"): throw BenchError("redis error: \(rest)")
        case UInt8(ascii: "$"):
            let n = Int(rest) ?? -1
            if n >= 0 { try bytes(n, into: bulk(0)) }
            return n
        case UInt8(ascii: "*"):
            let n = Int(rest) ?? 0
            for i in 0..<max(0, n) {
                let h = try line()
                let len = Int(String(decoding: h.dropFirst(), as: UTF8.self)) ?? -1
                if len >= 0 { try bytes(len, into: bulk(i)) }
            }
            return n
        default: throw BenchError("unexpected redis reply \(String(decoding: l, as: UTF8.self))")
        }
    }
}

extension Array where Element == [UInt8] {
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        var ptrs: [UnsafeRawBufferPointer] = []
        func go(_ i: Int) throws -> R {
            if i == count { return try body(ptrs) }
            return try self[i].withUnsafeBytes { p in ptrs.append(p); return try go(i + 1) }
        }
        return try go(0)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
