import Testing
import Foundation
import Engine
import Vocabulary
import Client
import CLI

/// Export to NumPy files and import back, across three real shards, checked with NumPy itself.
@Suite(.serialized) struct TransferTests {
    @Test func exportImportRoundTripsThroughNumPyFiles() async throws {
        let cluster = try LocalCluster(shards: 3)
        defer { cluster.stop() }
        let client = try cluster.client()
        var opt = OptimizerConfig(kind: .adagrad, learningRate: 0.1); opt.initialAccumulator = 0.1
        try await client.admin.createTable(TableSpec(name: "src", dim: 6, optimizer: opt, initializer: .uniform(-1, 1, seed: 9)))
        let ids = (0..<10_000).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 >> 8 }
        try await client.push(table: "src", ids: ids, gradients: (0..<(ids.count * 6)).map { Float($0 % 11) / 11 })
        let expected = try await client.pull(table: "src", ids: ids)

        // The admin tool writes two .npy files; NumPy reads them back as (n,) uint64 and (n, 6) float32.
        let prefix = cluster.root.appendingPathComponent("src").path
        let (code, text) = try cluster.admin(["export", "src", "--out", prefix, "--json"])
        #expect(code == 0, "\(text)")
        let py = Process()
        py.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        py.arguments = ["-c", "import numpy as np; i = np.load('\(prefix).ids.npy'); v = np.load('\(prefix).values.npy'); " +
                        "print(i.dtype, i.shape, v.dtype, v.shape, float(v.sum()))"]
        let out = Pipe(); py.standardOutput = out; py.standardError = out
        try py.run(); py.waitUntilExit()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.hasPrefix("uint64 (10000,) float32 (10000, 6)"), "\(printed)")
        let (_, keys) = try NumPyFile.read(prefix + ".ids.npy", descr: "<u8", as: UInt64.self)
        let (_, values) = try NumPyFile.read(prefix + ".values.npy", descr: "<f4", as: Float.self)
        let byKey = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        #expect(Set(keys) == Set(ids))
        for (n, id) in ids.enumerated() {
            let k = try #require(byKey[id])
            #expect(Array(values[(k * 6)..<((k + 1) * 6)]) == Array(expected[(n * 6)..<((n + 1) * 6)]))
        }
        if let sum = printed.split(separator: " ").last.flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            #expect(abs(sum - values.reduce(0) { $0 + Double($1) }) < 1e-2 * max(1, abs(sum)))
        }

        // Import into a fresh table: same rows, fresh optimizer state (a push now moves by lr * g / sqrt(0.1 + g^2)).
        try await client.admin.createTable(TableSpec(name: "dst", dim: 6, optimizer: opt, initializer: InitializerConfig()))
        #expect(try cluster.admin(["import", "dst", "--in", prefix]).0 == 0)
        #expect(try await client.pull(table: "dst", ids: ids) == expected)
        try await client.push(table: "dst", ids: [ids[0]], gradients: [1, 1, 1, 1, 1, 1])
        let moved = try await client.pull(table: "dst", ids: [ids[0]])
        let step = Float(0.1) * 1 / ((Float(0.1) + 1).squareRoot() + 1e-10)
        for c in 0..<6 { #expect(abs(moved[c] - (expected[c] - step)) < 1e-6) }
        // Imports survive a kill -9 (written synchronously).
        cluster.kill9(0); cluster.kill9(1); cluster.kill9(2)
        for i in 0..<3 { try cluster.restart(i) }
        try await client.waitUntilHealthy(timeoutSeconds: 20)
        #expect(Array(try await client.pull(table: "dst", ids: Array(ids.dropFirst()))) == Array(expected.dropFirst(6)))
        // Refused whole: a NaN in one row.
        var bad = Array(expected.prefix(12)); bad[7] = .nan
        await #expect(throws: (any Error).self) { try await client.admin.importRows("dst", keys: [ids[1], ids[2]], values: bad) }
        #expect(try await client.pull(table: "dst", ids: [ids[1]]) == Array(expected[6..<12]))
    }
}
