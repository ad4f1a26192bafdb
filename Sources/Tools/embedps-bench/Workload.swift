import Foundation
import Vocabulary

/// Workload W (shared/docs/benchmark-workload.md): pre-generated batches of distinct, ascending row ids
/// drawn uniformly or Zipf(s) over ranks, ranks mapped through a fixed random permutation; and gradients.
struct WorkloadW {
    enum Distribution: String, CaseIterable { case uniform, zipf }
    let rows: Int
    let dim: Int
    let batchSize: Int
    var batches: [Distribution: [[UInt64]]]
    let gradients: [[Float]]

    init(rows: Int, dim: Int, batchSize: Int, batchCount: Int, zipfS: Double = 1.1, seed: UInt64 = 20261128) {
        self.rows = rows; self.dim = dim; self.batchSize = batchSize
        var rng = SplitMix64(seed: seed)
        var permutation = Array(0..<UInt64(rows))
        for i in stride(from: rows - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            permutation.swapAt(i, j)
        }
        var cdf = [Double](repeating: 0, count: rows)
        var acc = 0.0
        for r in 0..<rows { acc += pow(Double(r + 1), -zipfS); cdf[r] = acc }
        for r in 0..<rows { cdf[r] /= acc }
        func draw(_ d: Distribution) -> [UInt64] {
            var set = Set<UInt64>()
            set.reserveCapacity(batchSize)
            while set.count < batchSize {
                switch d {
                case .uniform: set.insert(permutation[Int(rng.next() % UInt64(rows))])
                case .zipf:
                    let u = rng.unit()
                    var lo = 0, hi = rows - 1
                    while lo < hi { let mid = (lo + hi) / 2; if cdf[mid] < u { lo = mid + 1 } else { hi = mid } }
                    set.insert(permutation[lo])
                }
            }
            return set.sorted()
        }
        var b: [Distribution: [[UInt64]]] = [:]
        for d in Distribution.allCases { b[d] = (0..<batchCount).map { _ in draw(d) } }
        batches = b
        gradients = (0..<8).map { _ in (0..<(batchSize * dim)).map { _ in Float(rng.unit() * 2 - 1) * 0.1 } }
    }
}

/// One measured case: throughput and latency over a timed loop.
struct Measurement: Codable {
    var system: String
    var op: String
    var distribution: String
    var clients: Int
    var inflight: Int
    var rowsPerSecond: Double
    var megabytesPerSecond: Double
    var p50Ms: Double
    var p99Ms: Double
    /// The slowest batch of the loop (a stall the percentiles hide: with 4 in flight a 2 s pause delays 4
    /// batches of thousands); nil for peers that do not report it.
    var maxMs: Double? = nil
}

/// Latencies of one timed loop (seconds), merged over its workers.
struct LoopResult {
    var batches = 0
    var latencies: [Double] = []
    var elapsed = 0.0
    func measurement(system: String, op: String, distribution: String, clients: Int, inflight: Int, rowsPerBatch: Int, bytesPerRow: Int) -> Measurement {
        let lat = latencies.sorted()
        func q(_ p: Double) -> Double { lat.isEmpty ? 0 : lat[min(lat.count - 1, Int(Double(lat.count) * p))] * 1000 }
        let rows = Double(batches * rowsPerBatch) / max(elapsed, 1e-9)
        return Measurement(system: system, op: op, distribution: distribution, clients: clients, inflight: inflight,
                           rowsPerSecond: rows, megabytesPerSecond: rows * Double(bytesPerRow) / 1e6, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: lat.last.map { $0 * 1000 })
    }
}

func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Median of repetitions by rows/s.
func median(_ ms: [Measurement]) -> Measurement {
    ms.sorted { $0.rowsPerSecond < $1.rowsPerSecond }[ms.count / 2]
}
