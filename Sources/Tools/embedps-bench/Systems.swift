import Foundation
import Client
import Vocabulary
import CLI

/// EmbedPS side of the benchmark: timed pull/push loops against a cluster.
struct EmbedPSTarget {
    let specPath: String
    let table: String
    let dim: Int

    func load(_ w: WorkloadW, spec: TableSpec) async throws {
        let client = try EmbedPSClient(specPath: specPath)
        try await client.waitUntilHealthy(timeoutSeconds: 30)
        _ = try await client.dropTable(table)
        try await client.createTable(spec)
        // Store every row once (zero gradient: values unchanged, rows written), 4 batches in flight.
        let zero = FloatBuffer(count: w.batchSize * w.dim)
        let total = (w.rows + w.batchSize - 1) / w.batchSize
        var next = 0
        let started = monotonicSeconds()
        while next < total {
            try await withThrowingTaskGroup(of: Void.self) { g in
                for b in next..<min(total, next + 4) {
                    let ids = (b * w.batchSize..<min(w.rows, (b + 1) * w.batchSize)).map { UInt64($0) }
                    let grads = ids.count == w.batchSize ? zero : FloatBuffer(count: ids.count * w.dim)
                    g.addTask { try await client.push(table: table, ids: ids, gradients: grads) }
                }
                try await g.waitForAll()
            }
            next += 4
            if next % 40 == 0 || next >= total {
                let done = min(w.rows, next * w.batchSize)
                FileHandle.standardError.write(Data("\r  loading EmbedPS: \(done)/\(w.rows) rows (\(Int(Double(done) / (monotonicSeconds() - started))) rows/s)   ".utf8))
            }
        }
        FileHandle.standardError.write(Data("\n".utf8))
        // Start measuring from a steady state: loaded rows written to RocksDB, update log trimmed, and the
        // column family compacted, so no compaction left over from the load runs during the measurements.
        _ = try await client.compact(table: table)
    }

    func run(op: String, batches: [[UInt64]], gradients: [[Float]], clients: Int, inflight: Int, seconds: Double, warmup: Int) async throws -> LoopResult {
        let cs = try (0..<clients).map { _ in try EmbedPSClient(specPath: specPath) }
        let grads = gradients.map { FloatBuffer($0) }
        let dim = self.dim, table = self.table
        func one(_ c: EmbedPSClient, _ out: FloatBuffer, _ k: Int) async throws {
            let ids = batches[k % batches.count]
            if op == "pull" { try await c.pull(table: table, ids: ids, into: out) }
            else { try await c.push(table: table, ids: ids, gradients: grads[k % grads.count]) }
        }
        // Warm-up (not counted).
        for c in cs { let out = FloatBuffer(count: batches[0].count * dim); for k in 0..<warmup { try await one(c, out, k) } }
        let start = monotonicSeconds(), deadline = start + seconds
        let parts = try await withThrowingTaskGroup(of: LoopResult.self) { g in
            for ci in 0..<clients {
                for f in 0..<inflight {
                    g.addTask {
                        var r = LoopResult()
                        let out = FloatBuffer(count: batches[0].count * dim)
                        var k = (ci * inflight + f) * 7
                        while monotonicSeconds() < deadline {
                            let t0 = monotonicSeconds()
                            try await one(cs[ci], out, k)
                            r.latencies.append(monotonicSeconds() - t0); r.batches += 1; k += 1
                        }
                        return r
                    }
                }
            }
            var all: [LoopResult] = []
            for try await r in g { all.append(r) }
            return all
        }
        var total = LoopResult()
        for p in parts { total.batches += p.batches; total.latencies += p.latencies }
        total.elapsed = monotonicSeconds() - start
        return total
    }
}

/// Redis side of the benchmark: rows are 256-byte strings under keys "r<id>". Pull = MGET; push "rmw" =
/// MGET then MSET of w - lr*g computed by the client (two round trips, not atomic); push "atomic" = one
/// EVALSHA of a Lua script applying the SGD update per row inside Redis.
struct RedisTarget {
    let port: Int
    static let script = """
    local lr = tonumber(ARGV[1])
    for i = 1, #KEYS do
      local row = redis.call('GET', KEYS[i])
      local g = ARGV[i + 1]
      local out = {}
      for j = 0, (#g / 4) - 1 do
        local w = struct.unpack('<f', row, j * 4 + 1)
        local gj = struct.unpack('<f', g, j * 4 + 1)
        out[j + 1] = struct.pack('<f', w - lr * gj)
      end
      redis.call('SET', KEYS[i], table.concat(out))
    end
    return #KEYS
    """

    static func keys(_ ids: [UInt64]) -> [[UInt8]] { ids.map { Array("r\($0)".utf8) } }

    func load(_ w: WorkloadW, initializer: RowInitializer) throws {
        let c = try RedisConnection(port: port)
        c.append(["FLUSHALL"]); try c.flush(); try c.readReply()
        var row = [Float](repeating: 0, count: w.dim)
        var b = 0
        while b * 1024 < w.rows {
            var args: [[UInt8]] = [Array("MSET".utf8)]
            for id in (b * 1024)..<min(w.rows, (b + 1) * 1024) {
                row.withUnsafeMutableBufferPointer { initializer.fill($0.baseAddress!, rowKey: UInt64(id)) }
                args.append(Array("r\(id)".utf8)); args.append(row.withUnsafeBytes { Array($0) })
            }
            args.withUnsafeBufferPointers { c.append($0) }
            try c.flush(); try c.readReply()
            b += 1
        }
    }

    func scriptSHA() throws -> String {
        let c = try RedisConnection(port: port)
        c.append(["SCRIPT", "LOAD", Self.script]); try c.flush()
        var sha = [UInt8](repeating: 0, count: 40)
        try sha.withUnsafeMutableBytes { p in _ = try c.readReply(bulk: { _ in p.baseAddress! }) }
        return String(decoding: sha, as: UTF8.self)
    }

    /// Runs `clients` threads, each with its own connection and `inflight` batches pipelined per round.
    func run(op: String, batches: [[UInt64]], gradients: [[Float]], dim: Int, clients: Int, inflight: Int, seconds: Double, warmup: Int) throws -> LoopResult {
        let keyBatches = batches.map(Self.keys)
        let sha = op == "push-atomic" ? try scriptSHA() : ""
        let shared = SharedLoopResult()
        let group = DispatchGroup()
        let start = monotonicSeconds()
        let deadline = start + seconds
        for ci in 0..<clients {
            group.enter()
            let t = Thread {
                defer { group.leave() }
                do {
                    let c = try RedisConnection(port: port)
                    var r = LoopResult()
                    let out = UnsafeMutableRawPointer.allocate(byteCount: 4096 * dim * 4 + 64, alignment: 16)
                    defer { out.deallocate() }
                    var k = ci * 7
                    var round = 0
                    var measuredFrom = monotonicSeconds()
                    let warmupRounds = (warmup + inflight - 1) / inflight
                    // Each thread times its own `seconds` after its warm-up rounds.
                    var threadDeadline = warmupRounds == 0 ? deadline : Double.infinity
                    while round < warmupRounds || monotonicSeconds() < threadDeadline {
                        let t0 = monotonicSeconds()
                        let ks = (0..<inflight).map { keyBatches[(k + $0) % keyBatches.count] }
                        switch op {
                        case "pull":
                            for keys in ks { ([Array("MGET".utf8)] + keys).withUnsafeBufferPointers { c.append($0) } }
                            try c.flush()
                            for _ in ks { try c.readReply(bulk: { out + $0 * dim * 4 }) }
                        case "push-rmw":
                            for keys in ks { ([Array("MGET".utf8)] + keys).withUnsafeBufferPointers { c.append($0) } }
                            try c.flush()
                            for (n, keys) in ks.enumerated() {
                                try c.readReply(bulk: { out + $0 * dim * 4 })
                                let g = gradients[(k + n) % gradients.count]
                                let w = out.assumingMemoryBound(to: Float.self)
                                for i in 0..<(keys.count * dim) { w[i] -= 0.01 * g[i] }
                                var args: [[UInt8]] = [Array("MSET".utf8)]
                                for (i, key) in keys.enumerated() {
                                    args.append(key); args.append(Array(UnsafeRawBufferPointer(start: out + i * dim * 4, count: dim * 4)))
                                }
                                args.withUnsafeBufferPointers { c.append($0) }
                            }
                            try c.flush()
                            for _ in ks { try c.readReply() }
                        default:  // push-atomic
                            for (n, keys) in ks.enumerated() {
                                let g = gradients[(k + n) % gradients.count]
                                var args: [[UInt8]] = [Array("EVALSHA".utf8), Array(sha.utf8), Array("\(keys.count)".utf8)] + keys + [Array("0.01".utf8)]
                                for i in 0..<keys.count { args.append(g[(i * dim)..<((i + 1) * dim)].withUnsafeBytes { Array($0) }) }
                                args.withUnsafeBufferPointers { c.append($0) }
                            }
                            try c.flush()
                            for _ in ks { try c.readReply() }
                        }
                        if round >= warmupRounds {
                            let dt = monotonicSeconds() - t0
                            for _ in ks { r.latencies.append(dt) }
                            r.batches += ks.count
                        }
                        round += 1; k += inflight
                        if round == warmupRounds { measuredFrom = monotonicSeconds(); threadDeadline = measuredFrom + seconds }
                    }
                    r.elapsed = monotonicSeconds() - measuredFrom
                    shared.merge(r)
                } catch {
                    shared.fail(error)
                }
            }
            t.start()
        }
        group.wait()
        _ = start
        return try shared.result()
    }
}

/// Results of benchmark threads, merged under a lock.
final class SharedLoopResult: @unchecked Sendable {
    private let lock = NSLock()
    private var total = LoopResult()
    private var failure: Error?
    func merge(_ r: LoopResult) {
        lock.withLock { total.batches += r.batches; total.latencies += r.latencies; total.elapsed = max(total.elapsed, r.elapsed) }
    }
    func fail(_ e: Error) { lock.withLock { failure = e } }
    func result() throws -> LoopResult {
        try lock.withLock { if let failure { throw failure }; return total }
    }
}
