import Foundation
import Client
import Vocabulary
import CLI

/// EmbedPS side of the benchmark: timed pull/push loops against a cluster.
struct EmbedPSTarget {
    let specPath: String
    let table: String
    let dim: Int
    /// The timed loops' clients' connections per shard (`ClientOptions.connectionsPerShard`).
    var connections = ClientOptions().connectionsPerShard

    /// Bulk-loads every row with ImportRows (the operator's bulk load: rows written straight to RocksDB as
    /// SST files, chunks of 65536 rows in storage-key order, 2 in flight), printing the rate; then checkpoints
    /// and compacts; then pulls every row once, so measurements start warm as on a long-running shard (the
    /// RocksDB ceiling peer warms its block cache with a full scan the same way). Returns the load rate.
    @discardableResult
    func load(_ w: WorkloadW, spec: TableSpec) async throws -> Double {
        let client = try EmbedPSClient(specPath: specPath)
        try await client.waitUntilHealthy(timeoutSeconds: 30)
        _ = try await client.admin.dropTable(table)
        try await client.admin.createTable(spec)
        let initializer = RowInitializer(config: spec.initializer, dim: w.dim)
        // Ids in storage-key order (slot, then id), so each imported chunk is a key range of its own and its
        // SST file goes to the bottom level without compaction.
        let addressing = RowAddressing(spec: spec)
        var bySlot = [[UInt32]](repeating: [], count: RowAddressing.slotCount)
        for id in 0..<w.rows { bySlot[Int(addressing.slot(ofRowKey: UInt64(id)))].append(UInt32(id)) }
        let ordered = bySlot.flatMap { $0 }
        bySlot = []
        let chunk = 65536
        let chunks = (w.rows + chunk - 1) / chunk
        let started = monotonicSeconds()
        var next = 0
        while next < chunks {
            try await withThrowingTaskGroup(of: Void.self) { g in
                for c in next..<min(chunks, next + 2) {
                    let ids = ordered[(c * chunk)..<min(w.rows, (c + 1) * chunk)].map { UInt64($0) }
                    var values = [Float](repeating: 0, count: ids.count * w.dim)
                    values.withUnsafeMutableBufferPointer { v in for (j, id) in ids.enumerated() { initializer.fill(v.baseAddress! + j * w.dim, rowKey: id) } }
                    g.addTask { [values] in try await client.admin.importRows(table, keys: ids, values: values, chunkRows: chunk) }
                }
                try await g.waitForAll()
            }
            next += 2
            let done = min(w.rows, next * chunk)
            FileHandle.standardError.write(Data("\r  bulk-loading EmbedPS (ImportRows): \(done)/\(w.rows) rows (\(Int(Double(done) / (monotonicSeconds() - started))) rows/s)   ".utf8))
        }
        let rate = Double(w.rows) / (monotonicSeconds() - started)
        FileHandle.standardError.write(Data("\n".utf8))
        // Start measuring from a steady state: the column family compacted, so no compaction left over from
        // the load runs during the measurements.
        _ = try await client.admin.compact(table: table)
        if w.rows > 2_000_000 {
            printError("  not warming: \(w.rows) rows (tables over 2 M rows start with what the bulk load left in the page cache)")
        } else {
            let warmStart = monotonicSeconds()
            let out = FloatBuffer(count: w.batchSize * w.dim)
            var start = 0
            while start < w.rows {
                let ids = (start..<min(w.rows, start + w.batchSize)).map { UInt64($0) }
                try await client.pull(table: table, ids: ids, into: ids.count == w.batchSize ? out : FloatBuffer(count: ids.count * w.dim))
                start += w.batchSize
            }
            printError("  warmed: \(w.rows) rows pulled once in \(String(format: "%.1f", monotonicSeconds() - warmStart)) s")
        }
        return rate
    }

    func run(op: String, batches: [[UInt64]], gradients: [[Float]], clients: Int, inflight: Int, seconds: Double, warmup: Int) async throws -> LoopResult {
        var options = ClientOptions()
        options.connectionsPerShard = connections
        let cs = try (0..<clients).map { _ in try EmbedPSClient(specPath: specPath, options: options) }
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
