import Foundation
import CLI
import Client
import Vocabulary
import RPC
import EmbedPSWire

/// Latency of the lookup service (embedps-lookup beside this binary) for 1, 64 and 512-id requests, one
/// request at a time, against direct client pulls from the shards in the same run. "hot" draws ids from
/// 1,000 rows (served from the lookup cache), "uniform" from the whole table (mostly cache misses).
struct LookupLatency: Codable {
    var path: String, ids: Int, distribution: String, requests: Int, p50Ms: Double, p99Ms: Double, ratioP50VsDirect: Double?
}

func runLookupBenchmark(specPath: String, table: String, rows: Int, dim: Int, seconds: Double, work: URL, children: inout [ChildProcess], json: Bool) async throws {
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("embedps-lookup").path
    let portFile = work.appendingPathComponent("lookup-ports").path
    children.append(try ChildProcess(bin, ["--cluster", specPath, "--listen", "127.0.0.1:0", "--http-port", "0", "--port-file", portFile],
                                     log: work.appendingPathComponent("lookup.log").path))
    try waitForFile(portFile, seconds: 30)
    try await Task.sleep(nanoseconds: 100_000_000)
    let ports = try String(contentsOfFile: portFile, encoding: .utf8).split(whereSeparator: { $0 == " " || $0 == "\n" })
    guard let grpcPort = ports.first else { throw BenchError("lookup port file is empty") }
    let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(grpcPort)"))
    defer { channel.close() }
    let client = try EmbedPSClient(specPath: specPath)
    var results: [LookupLatency] = []
    var rng = SplitMix64(seed: 42)
    for n in [1, 64, 512] {
        for dist in ["hot", "uniform"] {
            let span = UInt64(dist == "hot" ? min(1000, rows) : rows)
            func ids(_ rng: inout SplitMix64) -> [UInt64] { Array(Set((0..<n).map { _ in rng.next() % span })).sorted() }
            func measure(_ body: ([UInt64]) async throws -> Void) async throws -> (Int, Double, Double) {
                for _ in 0..<20 { try await body(ids(&rng)) }   // warm-up: connections, cache
                var latencies: [Double] = []
                let deadline = monotonicSeconds() + seconds
                while monotonicSeconds() < deadline {
                    let batch = ids(&rng)
                    let t = monotonicSeconds()
                    try await body(batch)
                    latencies.append(monotonicSeconds() - t)
                }
                latencies.sort()
                return (latencies.count, latencies[latencies.count / 2] * 1000, latencies[min(latencies.count - 1, latencies.count * 99 / 100)] * 1000)
            }
            let direct = try await measure { _ = try await client.pull(table: table, ids: $0) }
            let viaLookup = try await measure { batch in
                let size = RowMessageEncoder.pullRequestSize(table: table, count: batch.count)
                let request = OutgoingMessage(length: size) { RowMessageEncoder.writePullRequest(into: $0, table: table, count: batch.count) { batch[$0] } }
                let answer = try await channel.unary(LookupRPC.lookup.path, request, timeoutMs: 10_000)
                let (d, values) = try answer.withUnsafeBytes { try RowMessageDecoder.pullResponse($0) }
                guard d == dim, values.count == batch.count * dim * 4 else { throw BenchError("lookup answered \(values.count) bytes of dim \(d)") }
            }
            results.append(LookupLatency(path: "direct pull", ids: n, distribution: dist, requests: direct.0, p50Ms: direct.1, p99Ms: direct.2, ratioP50VsDirect: nil))
            results.append(LookupLatency(path: "embedps-lookup", ids: n, distribution: dist, requests: viaLookup.0, p50Ms: viaLookup.1, p99Ms: viaLookup.2,
                                         ratioP50VsDirect: viaLookup.1 / max(1e-9, direct.1)))
            printError("  done: \(n) ids \(dist): lookup p50 \(String(format: "%.3f", viaLookup.1)) ms, direct \(String(format: "%.3f", direct.1)) ms")
        }
    }
    if json { print(jsonText(results)); return }
    print(renderTable(["path", "ids", "ids from", "requests", "p50 ms", "p99 ms", "p50 vs direct"],
                      results.map { [$0.path, "\($0.ids)", $0.distribution == "hot" ? "1,000 hot rows" : "all rows", "\($0.requests)",
                                     String(format: "%.3f", $0.p50Ms), String(format: "%.3f", $0.p99Ms), $0.ratioP50VsDirect.map { String(format: "%.2fx", $0) } ?? "-"] }))
}
