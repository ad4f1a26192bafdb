import Foundation
import RPC

/// The gRPC transport alone, in one process: a server whose handler answers at once, and a client sending
/// pull-shaped calls (a 32 KiB request of 4096 ids, a 1 MiB answer) and push-shaped calls (1 MiB request, a
/// tiny answer), 1 and 4 in flight. No storage, no encoding work: the floor every EmbedPS call sits on,
/// to compare gRPC settings (`--grpc-arg KEY=VALUE`, repeatable) before blaming the shard. With
/// `handlerMicroseconds` > 0 each handler reads its request contiguous (the copy a shard makes of a message
/// that arrived in several slices) and then holds the call until that long after it began: a stand-in for a
/// shard's own time per call, to see how it adds to the transport's.
func runTransportBenchmark(seconds: Double, rowBytes: Int, rows: Int, arguments: [(String, Int32)], handlerMicroseconds: Int = 0, json: Bool) async throws {
    var serverConfig = ServerConfiguration(address: "127.0.0.1:0")
    serverConfig.extraArguments = arguments
    let server = Server(serverConfig)
    let payload = rows * rowBytes
    let holdNanoseconds = UInt64(handlerMicroseconds) * 1000
    /// The stand-in for a shard's work: the request read contiguous, then the call held until `holdNanoseconds`.
    @Sendable func work(_ message: ReceivedMessage) -> UInt8 {
        guard holdNanoseconds > 0 else { return UInt8(message.count & 0xff) }
        let start = DispatchTime.now().uptimeNanoseconds
        let first = message.withUnsafeBytes { $0.first ?? 0 }
        while DispatchTime.now().uptimeNanoseconds - start < holdNanoseconds {}
        return first
    }
    server.register("/bench.Transport/Pull") { _, message in
        let fill = work(message)
        return OutgoingMessage(length: payload) { buf in buf.initializeMemory(as: UInt8.self, repeating: fill) }
    }
    server.register("/bench.Transport/Push") { _, message in OutgoingMessage(bytes: [work(message)]) }
    try server.start()
    defer { server.shutdown(graceSeconds: 1) }
    var channelConfig = ChannelConfiguration(target: "127.0.0.1:\(server.port)")
    channelConfig.extraArguments = arguments
    let channel = Channel(channelConfig)
    defer { channel.close() }
    let pullRequest = OutgoingMessage(bytes: [UInt8](repeating: 7, count: rows * 8))
    let pushRequest = OutgoingMessage(bytes: [UInt8](repeating: 7, count: payload + rows * 8))
    var results: [Measurement] = []
    for (op, method, request) in [("pull", "/bench.Transport/Pull", pullRequest), ("push", "/bench.Transport/Push", pushRequest)] {
        for inflight in [1, 4] {
            for _ in 0..<5 { _ = try await channel.unary(method, request) }
            let start = monotonicSeconds(), deadline = start + seconds
            let parts = try await withThrowingTaskGroup(of: LoopResult.self) { g in
                for _ in 0..<inflight {
                    g.addTask {
                        var r = LoopResult()
                        while monotonicSeconds() < deadline {
                            let t0 = monotonicSeconds()
                            _ = try await channel.unary(method, request)
                            r.latencies.append(monotonicSeconds() - t0); r.batches += 1
                        }
                        return r
                    }
                }
                var all: [LoopResult] = []
                for try await r in g { all.append(r) }
                return all
            }
            var total = LoopResult()
            for p in parts { total.batches += p.batches; total.latencies += p.latencies }
            total.elapsed = monotonicSeconds() - start
            results.append(total.measurement(system: "grpc-transport", op: op, distribution: "-", clients: 1, inflight: inflight, rowsPerBatch: rows, bytesPerRow: rowBytes))
        }
    }
    report(results, json: json)
}
