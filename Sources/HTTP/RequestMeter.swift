import Foundation

/// Recent request rate, row rate and handler latency of a server: a ring of the last 4096 requests.
/// Thread-safe (one lock; recording costs one short critical section per request).
public final class RequestMeter: @unchecked Sendable {
    private struct Sample { var time: Double; var rows: Int; var latency: Double }
    private let lock = NSLock()
    private var ring = [Sample](repeating: Sample(time: -1e18, rows: 0, latency: 0), count: 4096)
    private var next = 0
    public let started = Date()

    public init() {}

    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    public func record(rows: Int, seconds: Double) {
        let t = Self.now()
        lock.withLock { ring[next] = Sample(time: t, rows: rows, latency: seconds); next = (next + 1) % ring.count }
    }

    /// (requests/s, rows/s) over the last `window` seconds, and (p50, p99) latency in ms of the retained samples.
    public func summary(window: Double = 10) -> (requestsPerSecond: Double, rowsPerSecond: Double, p50Ms: Double, p99Ms: Double) {
        let now = Self.now()
        let samples = lock.withLock { ring.filter { $0.time > -1e17 } }
        let recent = samples.filter { now - $0.time <= window }
        let span = min(window, max(0.001, now - (recent.map(\.time).min() ?? now)))
        let lat = samples.map(\.latency).sorted()
        func q(_ p: Double) -> Double { lat.isEmpty ? 0 : lat[min(lat.count - 1, Int(Double(lat.count) * p))] * 1000 }
        return (recent.isEmpty ? 0 : Double(recent.count) / span, recent.isEmpty ? 0 : Double(recent.reduce(0) { $0 + $1.rows }) / span, q(0.5), q(0.99))
    }
}
