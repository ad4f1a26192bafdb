import Foundation
import COpenBLAS
import Vocabulary

/// k-means with k-means++ seeding (Arthur & Vassilvitskii 2007) and Lloyd iterations. Squared distances are
/// computed as |x|^2 - 2 x.c + |c|^2 with one OpenBLAS sgemm per block of points, and the (sequential)
/// k-means++ seeding runs on a random subsample of at most 64 * k points, so large catalogues stay
/// practical. Deterministic for a given seed. An emptied cluster is re-seeded with the point farthest from
/// its centroid.
public struct KMeans: Sendable {
    public let k: Int
    public let iterations: Int
    public let seed: UInt64
    public init(k: Int, iterations: Int = 20, seed: UInt64 = 1) { self.k = k; self.iterations = iterations; self.seed = seed }

    /// Result: `centroids` (k x dim) and each point's cluster.
    public struct Result: Sendable {
        public var centroids: [Float]
        public var assignment: [Int]
        public var inertia: Double
    }

    public func fit(_ points: [Float], count n: Int, dim d: Int) throws(SemanticIDError) -> Result {
        guard k >= 1, n >= k else { throw SemanticIDError("k-means needs at least k=\(k) points, got \(n)") }
        var rng = SplitMix64(seed: seed)
        var centroids = [Float](repeating: 0, count: k * d)
        // Seeding sample: every point, or 64 * k of them drawn without replacement (partial Fisher-Yates).
        let m = min(n, 64 * k)
        var order = Array(0..<n)
        if m < n { for i in 0..<m { order.swapAt(i, i + Int(rng.next() % UInt64(n - i))) } }
        let sample = m < n ? order.prefix(m).flatMap { points[($0 * d)..<($0 * d + d)] } : points
        // k-means++ on the sample: first centre uniform, then proportional to squared distance to the nearest centre.
        var nearest = [Float](repeating: .greatestFiniteMagnitude, count: m)
        var chosen = Int(rng.next() % UInt64(m))
        sample.withUnsafeBufferPointer { p in
            for c in 0..<k {
                for j in 0..<d { centroids[c * d + j] = p[chosen * d + j] }
                var total = 0.0
                for i in 0..<m {
                    var s: Float = 0
                    for j in 0..<d { let t = p[i * d + j] - centroids[c * d + j]; s += t * t }
                    if s < nearest[i] { nearest[i] = s }
                    total += Double(nearest[i])
                }
                guard c + 1 < k else { break }
                if total <= 0 { chosen = Int(rng.next() % UInt64(m)); continue }
                var target = rng.unit() * total
                chosen = m - 1
                for i in 0..<m { target -= Double(nearest[i]); if target <= 0 { chosen = i; break } }
            }
        }
        var assignment = [Int](repeating: 0, count: n)
        var inertia = 0.0
        for iteration in 0...iterations {
            let (a, dist) = assign(points, n: n, d: d, centroids: centroids)
            let changed = iteration == 0 ? n : zip(a, assignment).filter { $0 != $1 }.count
            assignment = a
            inertia = dist.reduce(0) { $0 + Double($1) }
            if iteration == iterations || changed == 0 { break }
            // Update step.
            var sums = [Double](repeating: 0, count: k * d)
            var counts = [Int](repeating: 0, count: k)
            for i in 0..<n {
                counts[a[i]] += 1
                for j in 0..<d { sums[a[i] * d + j] += Double(points[i * d + j]) }
            }
            var far = (0..<n).sorted { dist[$0] > dist[$1] }.makeIterator()
            for c in 0..<k {
                if counts[c] == 0, let i = far.next() {
                    for j in 0..<d { centroids[c * d + j] = points[i * d + j] }
                } else if counts[c] > 0 {
                    for j in 0..<d { centroids[c * d + j] = Float(sums[c * d + j] / Double(counts[c])) }
                }
            }
        }
        return Result(centroids: centroids, assignment: assignment, inertia: inertia)
    }

    /// Nearest centroid of every point and its squared distance (blocks of 1024 points, one sgemm each).
    public func assign(_ points: [Float], n: Int, d: Int, centroids: [Float]) -> ([Int], [Float]) {
        let block = 1024
        var assignment = [Int](repeating: 0, count: n)
        var distance = [Float](repeating: 0, count: n)
        let cNorm = (0..<k).map { c in (0..<d).reduce(Float(0)) { $0 + centroids[c * d + $1] * centroids[c * d + $1] } }
        var dots = [Float](repeating: 0, count: block * k)
        points.withUnsafeBufferPointer { p in
            centroids.withUnsafeBufferPointer { cp in
                var start = 0
                while start < n {
                    let m = min(block, n - start)
                    dots.withUnsafeMutableBufferPointer { dp in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(k), Int32(d), 1,
                                    p.baseAddress! + start * d, Int32(d), cp.baseAddress!, Int32(d), 0, dp.baseAddress!, Int32(k))
                    }
                    for r in 0..<m {
                        let i = start + r
                        var xNorm: Float = 0
                        for j in 0..<d { xNorm += p[i * d + j] * p[i * d + j] }
                        var best = 0, bestD = Float.greatestFiniteMagnitude
                        for c in 0..<k {
                            let dd = xNorm - 2 * dots[r * k + c] + cNorm[c]
                            if dd < bestD { bestD = dd; best = c }
                        }
                        assignment[i] = best; distance[i] = max(0, bestD)
                    }
                    start += m
                }
            }
        }
        return (assignment, distance)
    }
}
