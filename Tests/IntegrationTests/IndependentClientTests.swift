import Testing
import Foundation

/// The .proto is the public contract: a client generated from it by another gRPC implementation
/// (Python grpcio + grpc_tools) must be able to use a shard.
@Suite struct IndependentClientTests {
    @Test func pythonClientGeneratedFromTheProtosTalksToAShard() async throws {
        let cluster = try LocalCluster(shards: 1)
        defer { cluster.stop() }
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let repo = here.deletingLastPathComponent().deletingLastPathComponent()
        let p = Process()
        // Debian's interpreter: python3-grpcio and python3-grpc-tools are installed for it.
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [here.appendingPathComponent("python/independent_client.py").path,
                       repo.appendingPathComponent("Protos").path, "127.0.0.1:\(cluster.ports[0])"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "python client: \(text) \(errText) (needs python3-grpcio and python3-grpc-tools)")
    }
}
