import Foundation
import Engine
import Vocabulary
import CLI

/// The shard engine alone, in process: pulls and pushes of workload-W batches straight into `ShardEngine`
/// (no gRPC, no client), to see what the storage tier costs per row apart from the transport
/// (`--transport`) and the client.
func runEngineBenchmark(_ w: WorkloadW, optimizer: OptimizerKind, durability: Durability, cacheRows: Int, readThreads: Int?, splitThreads: Int?, logBeforePin: Bool, logSegmentMB: Int?, checkpointLogMB: Int?, seconds: Double, ops: [String], dists: [WorkloadW.Distribution], json: Bool) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-engine-bench-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var config = ShardEngineConfiguration(dataDirectory: dir, shardIndex: 0, slotMap: try SlotMap.evenSplit(shards: 1))
    config.durability = durability
    config.cacheRowsPerTable = cacheRows
    if let readThreads { config.readThreads = readThreads }
    if let splitThreads { config.splitThreads = splitThreads }
    config.logBeforePin = logBeforePin
    if let logSegmentMB { config.logSegmentBytes = logSegmentMB << 20 }
    if let checkpointLogMB { config.checkpointLogBytes = checkpointLogMB << 20 }
    let engine = try ShardEngine(config)
    engine.startCheckpointer()
    defer { engine.close(checkpoint: false) }
    var opt = OptimizerConfig(kind: optimizer, learningRate: 0.01); opt.initialAccumulator = 0.1
    _ = try engine.createTable(TableSpec(name: "bench_w", dim: w.dim, optimizer: opt, initializer: .uniform(-0.05, 0.05, seed: 1)))
    // Load every row once, then checkpoint and compact (the same steady state as the gRPC benchmark).
    let zero = [Float](repeating: 0, count: w.batchSize * w.dim)
    var start = 0
    while start < w.rows {
        let ids = (start..<min(w.rows, start + w.batchSize)).map { UInt64($0) }
        _ = try ids.withUnsafeBufferPointer { i in try zero.withUnsafeBytes { g in
            try engine.push(table: "bench_w", ids: i, gradientBytes: UnsafeRawBufferPointer(rebasing: g[0..<(ids.count * w.dim * 4)])) } }
        start += w.batchSize
    }
    _ = try engine.compact(table: "bench_w")
    printError("  engine loaded \(w.rows) rows")
    var results: [Measurement] = []
    let out = UnsafeMutablePointer<Float>.allocate(capacity: w.batchSize * w.dim)
    defer { out.deallocate() }
    for d in dists {
        let batches = w.batches[d]!
        for op in ops {
            var r = LoopResult()
            let t0 = monotonicSeconds(), deadline = t0 + seconds
            var k = 0
            while monotonicSeconds() < deadline {
                let ids = batches[k % batches.count]
                let s = monotonicSeconds()
                try ids.withUnsafeBufferPointer { i in
                    if op == "pull" { try engine.pull(table: "bench_w", ids: i, into: out) }
                    else { _ = try w.gradients[k % w.gradients.count].withUnsafeBytes { g in try engine.push(table: "bench_w", ids: i, gradientBytes: g) } }
                }
                r.latencies.append(monotonicSeconds() - s); r.batches += 1; k += 1
            }
            r.elapsed = monotonicSeconds() - t0
            results.append(r.measurement(system: "engine", op: op == "push" ? "push-\(optimizer)" : op, distribution: d.rawValue, clients: 1, inflight: 1,
                                         rowsPerBatch: w.batchSize, bytesPerRow: w.dim * 4))
        }
    }
    report(results, json: json)
}
