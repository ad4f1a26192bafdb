import Testing
import Foundation
import Engine
import Vocabulary
import Client

/// A minimal HTTP/1.0 GET over a socket: (status line, body).
func httpGet(port: Int, path: String) throws -> (String, String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET); addr.sin_port = in_port_t(UInt16(port).bigEndian); addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else { throw ClusterSpecError("cannot connect to 127.0.0.1:\(port)") }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return (text, "") }
    return (String(text[..<split.lowerBound].split(separator: "\r\n").first ?? ""), String(text[split.upperBound...]))
}

@Suite struct MetricsEndpointTests {
    @Test func shardServesPrometheusMetricsAndHealth() async throws {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)").path
        let cluster = try LocalCluster(shards: 1, extraArgs: ["--metrics-port", "0", "--metrics-port-file", portFile])
        defer { cluster.stop(); try? FileManager.default.removeItem(atPath: portFile) }
        let port = try #require(Int(try String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "m", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await client.push(table: "m", ids: [1, 2, 3], gradients: [Float](repeating: 1, count: 12))
        _ = try await client.pull(table: "m", ids: [1, 2, 3, 4])
        // The first push created its three rows (loaded); after eight pushes that found their rows cached,
        // the next two hand their record to the log before pinning.
        for _ in 0..<10 { try await client.push(table: "m", ids: [1, 2, 3], gradients: [Float](repeating: 1, count: 12)) }

        let (status, body) = try httpGet(port: port, path: "/metrics")
        #expect(status.contains("200"))
        #expect(body.contains("# TYPE embedps_table_pulls_total counter"))
        #expect(body.contains("embedps_table_rows{shard=\"0\",table=\"m\"} 3"))
        #expect(body.contains("embedps_table_rows_pulled_total{shard=\"0\",table=\"m\"} 4"))
        #expect(body.contains("embedps_request_latency_p99_seconds{shard=\"0\"}"))
        #expect(body.contains("embedps_table_pushes_total{shard=\"0\",table=\"m\"} 11"))
        #expect(body.contains("embedps_table_rows_loaded_total{shard=\"0\",table=\"m\"} 3"))
        #expect(body.contains("embedps_table_pushes_logged_first_total{shard=\"0\",table=\"m\"} 2"))
        #expect(body.contains("embedps_table_backpressure_flushes_total{shard=\"0\",table=\"m\"} 0"))
        #expect(body.contains("# TYPE embedps_table_snapshot_bytes gauge"))
        #expect(body.contains("embedps_table_snapshots_superseded_total{shard=\"0\",table=\"m\"} 0"))
        // Every non-comment line is `name{labels} value` in the text exposition format.
        let sample = try Regex(#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+0-9.eEaInNf]+$"#)
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: sample) != nil, "not a valid sample line: \(line)")
        }
        #expect(try httpGet(port: port, path: "/healthz").1 == "ok\n")
        #expect(try httpGet(port: port, path: "/nope").0.contains("404"))
    }
}
