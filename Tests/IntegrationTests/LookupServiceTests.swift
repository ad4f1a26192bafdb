import Testing
import Foundation
import Engine
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// embedps-lookup against two real shards: gRPC and HTTP/JSON answers equal direct pulls, the cache serves
/// repeats within its TTL and refreshes after it, errors are named, and /metrics counts it all.
@Suite(.serialized) struct LookupServiceTests {
    static func grpcLookup(_ channel: Channel, _ table: String, _ ids: [UInt64], method: String = LookupRPC.lookup.path) async throws -> (Int, [Float]) {
        let request = OutgoingMessage(length: RowMessageEncoder.pullRequestSize(table: table, count: ids.count)) {
            RowMessageEncoder.writePullRequest(into: $0, table: table, count: ids.count) { ids[$0] }
        }
        let answer = try await channel.unary(method, request, timeoutMs: 10_000)
        return try answer.withUnsafeBytes { bytes in
            let (dim, values) = try RowMessageDecoder.pullResponse(bytes)
            return (dim, Array(values.bindMemory(to: Float.self)))
        }
    }

    @Test func lookupsMatchPullsThroughCacheAndBothProtocols() async throws {
        let cluster = try LocalCluster(shards: 2)
        defer { cluster.stop() }
        let client = try cluster.client()
        try await client.admin.createTable(TableSpec(name: "emb", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1), initializer: .uniform(-1, 1, seed: 3)))
        let ids = (0..<300).map { UInt64($0) * 7919 }
        try await client.push(table: "emb", ids: ids, gradients: (0..<1200).map { Float($0 % 5) })
        let (process, grpcPort, httpPort) = try cluster.startLookup(extraArgs: ["--cache-ttl-ms", "600000"])
        defer { process.terminate(); process.waitUntilExit() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(grpcPort)"))
        defer { channel.close() }

        // gRPC: equal to direct pulls, duplicates and unseen ids included.
        let query = ids.prefix(100) + [ids[0], 123_456_789]
        let expected = try await client.pull(table: "emb", ids: Array(query))
        let (dim, got) = try await Self.grpcLookup(channel, "emb", Array(query))
        #expect(dim == 4 && got == expected)
        // Cached: a push is not visible through the long-TTL service...
        try await client.push(table: "emb", ids: [ids[0]], gradients: [1, 1, 1, 1])
        #expect(try await Self.grpcLookup(channel, "emb", [ids[0]]).1 == Array(expected.prefix(4)))
        // ...and shows up once the TTL passed, on a service with a short one.
        let fresh = try await client.pull(table: "emb", ids: [ids[0]])
        let (shortLived, shortPort, _) = try cluster.startLookup(extraArgs: ["--cache-ttl-ms", "100"])
        defer { shortLived.terminate(); shortLived.waitUntilExit() }
        let shortChannel = Channel(ChannelConfiguration(target: "127.0.0.1:\(shortPort)"))
        defer { shortChannel.close() }
        #expect(try await Self.grpcLookup(shortChannel, "emb", [ids[1]]).1 == Array(expected[4..<8]))
        try await client.push(table: "emb", ids: [ids[1]], gradients: [1, 1, 1, 1])
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(try await Self.grpcLookup(shortChannel, "emb", [ids[1]]).1 == (try await client.pull(table: "emb", ids: [ids[1]])))
        #expect(try await Self.grpcLookup(shortChannel, "emb", [ids[0]]).1 == fresh)
        // Unknown table: NOT_FOUND passed through.
        do { _ = try await Self.grpcLookup(channel, "nope", [1]); Issue.record("lookup of an unknown table succeeded") } catch let s as RPCStatus {
            #expect(s.code == .notFound)
        }

        // HTTP/JSON.
        let (status, body) = try httpGet(port: httpPort, path: "/v1/lookup?table=emb&ids=\(ids[200]),\(ids[201])")
        #expect(status.contains("200"), "\(status) \(body)")
        struct Answer: Decodable { var table: String; var dim: Int; var rows: [[Float]] }
        let answer = try JSONDecoder().decode(Answer.self, from: Data(body.utf8))
        let direct = try await client.pull(table: "emb", ids: [ids[200], ids[201]])
        #expect(answer.dim == 4 && answer.rows.flatMap { $0 } == direct)
        #expect(try httpGet(port: httpPort, path: "/v1/lookup?table=emb&ids=abc").0.contains("400"))
        #expect(try httpGet(port: httpPort, path: "/v1/lookup?table=nope&ids=1").0.contains("404"))

        // Concurrent requests are batched into fewer shard fan-outs.
        try await withThrowingTaskGroup(of: Void.self) { g in
            for k in 0..<32 { g.addTask { _ = try await Self.grpcLookup(channel, "emb", [ids[100 + k]]) } }
            try await g.waitForAll()
        }
        let metrics = try httpGet(port: httpPort, path: "/metrics").1
        func value(_ name: String) -> Double {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
        }
        #expect(value("embedps_lookup_cache_hits_total") >= 1 && value("embedps_lookup_cache_misses_total") >= 100)
        #expect(value("embedps_lookup_batched_requests_total") > value("embedps_lookup_backend_pulls_total"))
        #expect(value("embedps_lookup_errors_total") >= 2)
        #expect(metrics.contains("embedps_lookup_latency_p99_seconds{protocol=\"grpc\"}"))
    }
}
