import Testing
import Foundation
import Engine
import Vocabulary
import Client
import RPC

/// Shared-secret tokens and TLS on real shard processes.
@Suite(.serialized) struct SecurityTests {
    static let token = "s3cret-token-of-32-characters-xx"

    func writeToken(_ dir: URL, _ value: String = SecurityTests.token) throws -> String {
        let path = dir.appendingPathComponent("token-\(UUID().uuidString)").path
        try "\(value)\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func status(of error: any Error) -> StatusCode? {
        if case ClientError.shard(_, _, let s) = error { return s.code }
        return nil
    }

    @Test func adminCallsNeedTheTokenAndRefusedCallsChangeNothing() async throws {
        let dir = FileManager.default.temporaryDirectory
        let tokenFile = try writeToken(dir)
        let cluster = try LocalCluster(shards: 2, extraArgs: ["--auth-token-file", tokenFile])
        defer { cluster.stop() }
        let spec = TableSpec(name: "guarded", dim: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1))
        for options in [ClientOptions(), try ClientOptions.from(tokenFile: try writeToken(dir, "wrong-token-of-enough-length"), tlsCAFile: nil)] {
            do {
                try await cluster.client(options).admin.createTable(spec)
                Issue.record("create without the right token succeeded")
            } catch { #expect(status(of: error) == .unauthenticated, "\(error)") }
        }
        let anonymous = try cluster.client()
        #expect(try await anonymous.admin.listTables().isEmpty, "the refused create changed nothing")
        let admin = try cluster.client(try ClientOptions.from(tokenFile: tokenFile, tlsCAFile: nil)).admin
        try await admin.createTable(spec)
        // Scope admin: data-plane calls need no token; dropping does.
        try await anonymous.push(table: "guarded", ids: [1, 2, 3], gradients: [Float](repeating: 1, count: 12))
        #expect(try await anonymous.pull(table: "guarded", ids: [1]) == [-1, -1, -1, -1])
        do { _ = try await anonymous.admin.dropTable("guarded"); Issue.record("drop without token succeeded") } catch {
            #expect(status(of: error) == .unauthenticated)
        }
        #expect(try await admin.listTables() == ["guarded"])
        let (code, text) = try cluster.admin(["table", "drop", "guarded"])
        #expect(code != 0 && text.contains("UNAUTHENTICATED"), "\(text)")
        #expect(try cluster.admin(["table", "drop", "guarded", "--auth-token-file", tokenFile]).0 == 0)
    }

    @Test func scopeAllGuardsEveryCallButHealth() async throws {
        let tokenFile = try writeToken(FileManager.default.temporaryDirectory)
        let cluster = try LocalCluster(shards: 1, extraArgs: ["--auth-token-file", tokenFile, "--auth-scope", "all"])
        defer { cluster.stop() }
        let anonymous = try cluster.client()
        #expect(await anonymous.health() == [true])
        do { _ = try await anonymous.admin.listTables(); Issue.record("list without token succeeded") } catch {
            #expect(status(of: error) == .unauthenticated)
        }
        let client = try cluster.client(try ClientOptions.from(tokenFile: tokenFile, tlsCAFile: nil))
        try await client.admin.createTable(TableSpec(name: "t", dim: 2, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        #expect(try await client.pull(table: "t", ids: [5]) == [0, 0])
    }

    @Test func tlsShardsServeTLSClientsOnly() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("cert.pem").path, key = dir.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        openssl.standardError = FileHandle.nullDevice; openssl.standardOutput = FileHandle.nullDevice
        try openssl.run(); openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0)
        let tokenFile = try writeToken(dir)
        let cluster = try LocalCluster(shards: 2, extraArgs: ["--tls-cert", cert, "--tls-key", key, "--auth-token-file", tokenFile])
        defer { cluster.stop() }
        let secure = try cluster.client(try ClientOptions.from(tokenFile: tokenFile, tlsCAFile: cert))
        try await secure.waitUntilHealthy(timeoutSeconds: 20)
        try await secure.admin.createTable(TableSpec(name: "tls", dim: 3, optimizer: OptimizerConfig(kind: .sgd, learningRate: 1)))
        try await secure.push(table: "tls", ids: [7], gradients: [1, 2, 3])
        #expect(try await secure.pull(table: "tls", ids: [7]) == [-1, -2, -3])
        var plainOptions = ClientOptions(); plainOptions.attempts = 2; plainOptions.timeoutMs = 2000
        let plain = try cluster.client(plainOptions)
        await #expect(throws: (any Error).self) { _ = try await plain.admin.listTables() }
        #expect(try cluster.admin(["table", "list", "--tls-ca", cert]).1.contains("tls"))
    }
}
