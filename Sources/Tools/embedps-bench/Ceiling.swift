import Foundation
import Storage
import Vocabulary

/// The RocksDB ceiling on the shard's own data (`--ceiling`): after the runs the shard is stopped and its
/// database opened in this process with the shard's tuning; one thread then MultiGets the same batches
/// (keys in storage order, values copied to a dense buffer, as `shared/bench/rocks_bench.cc` does) for
/// `seconds` after as long a warm-up. Unlike the rocks peer it works at any table size and reads exactly
/// the files the shard served from.
func measureStorageCeiling(dataDirectory: String, w: WorkloadW, dists: [WorkloadW.Distribution], seconds: Double, reps: Int) throws -> [Measurement] {
    let db = try RocksDatabase(path: dataDirectory)
    defer { db.close() }
    guard let name = db.columnFamilyNames.first(where: { $0.hasPrefix("table.") }), let family = db.columnFamily(name) else {
        throw BenchError("no table column family in \(dataDirectory)")
    }
    let addressing = RowAddressing(spec: TableSpec(name: "bench_w", dim: w.dim, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.01)))
    let out = UnsafeMutableRawPointer.allocate(byteCount: w.batchSize * (w.dim * 4 + 64), alignment: 64)
    defer { out.deallocate() }
    var results: [Measurement] = []
    for d in dists {
        // Keys of every batch, in storage order (slot, key).
        let batches: [[UInt8]] = w.batches[d]!.map { ids in
            let keyed = ids.map { (addressing.slot(ofRowKey: $0), $0) }.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            var bytes = [UInt8](repeating: 0, count: keyed.count * RowKey.length)
            bytes.withUnsafeMutableBytes { b in for (i, k) in keyed.enumerated() { RowKey.write(slot: k.0, key: k.1, to: b.baseAddress! + i * RowKey.length) } }
            return bytes
        }
        func loop(_ duration: Double, _ r: inout LoopResult) throws {
            let start = monotonicSeconds(), deadline = start + duration
            var k = 0
            while monotonicSeconds() < deadline {
                let t0 = monotonicSeconds()
                let keys = batches[k % batches.count]
                var found = 0
                try keys.withUnsafeBytes { kb in
                    try db.sortedMultiGet(family, keys: kb, keyLength: RowKey.length, count: kb.count / RowKey.length) { i, value in
                        (out + (i % w.batchSize) * w.dim * 4).copyMemory(from: value.baseAddress!, byteCount: min(value.count, w.dim * 4))
                        found += 1
                    }
                }
                guard found == keys.count / RowKey.length else { throw BenchError("ceiling: \(keys.count / RowKey.length - found) rows of a batch are missing from \(dataDirectory)") }
                r.latencies.append(monotonicSeconds() - t0); r.batches += 1; k += 1
            }
            r.elapsed = monotonicSeconds() - start
        }
        var warm = LoopResult()
        try loop(seconds, &warm)
        var ms: [Measurement] = []
        for _ in 0..<reps {
            var r = LoopResult()
            try loop(seconds, &r)
            ms.append(r.measurement(system: "rocksdb-same-data", op: "pull", distribution: d.rawValue, clients: 1, inflight: 1, rowsPerBatch: w.batchSize, bytesPerRow: w.dim * 4))
        }
        results.append(median(ms))
    }
    return results
}
