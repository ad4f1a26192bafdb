import Foundation
import Synchronization
import HTTP

/// Live progress of a trainer worker for Prometheus: epoch, batches, examples, rows moved, mean loss of the
/// current epoch, last validation Recall@20. Lock-free; updated by the worker, read by the HTTP endpoint.
public final class TrainerMetrics: Sendable {
    let epoch = Atomic<Int>(0), totalEpochs = Atomic<Int>(0)
    let batches = Atomic<UInt64>(0), examples = Atomic<UInt64>(0), rowsMoved = Atomic<UInt64>(0)
    let lossBits = Atomic<UInt64>(0), recallBits = Atomic<UInt64>(0)
    let started = Date()
    public let rank: Int
    public init(rank: Int) { self.rank = rank }

    func batchDone(examples n: Int, rows: Int, meanLoss: Double) {
        batches.add(1, ordering: .relaxed); examples.add(UInt64(n), ordering: .relaxed); rowsMoved.add(UInt64(rows), ordering: .relaxed)
        lossBits.store(meanLoss.bitPattern, ordering: .relaxed)
    }

    public var text: String {
        var m = MetricsText()
        let l = [("rank", String(rank))]
        m.add("embedps_trainer_epoch", "Epochs started (1-based)", .gauge, labels: l, Double(epoch.load(ordering: .relaxed)))
        m.add("embedps_trainer_epochs", "Epochs of the run", .gauge, labels: l, Double(totalEpochs.load(ordering: .relaxed)))
        m.add("embedps_trainer_batches_total", "Training batches done", .counter, labels: l, Double(batches.load(ordering: .relaxed)))
        m.add("embedps_trainer_examples_total", "Training examples done", .counter, labels: l, Double(examples.load(ordering: .relaxed)))
        m.add("embedps_trainer_rows_moved_total", "Rows pulled and pushed", .counter, labels: l, Double(rowsMoved.load(ordering: .relaxed)))
        m.add("embedps_trainer_epoch_mean_loss", "Mean BPR loss of the current epoch so far", .gauge, labels: l, Double(bitPattern: lossBits.load(ordering: .relaxed)))
        m.add("embedps_trainer_validation_recall_at_20", "Validation Recall@20 after the last evaluated epoch (rank 0)", .gauge, labels: l,
              Double(bitPattern: recallBits.load(ordering: .relaxed)))
        m.add("embedps_trainer_uptime_seconds", "Seconds since the worker started", .gauge, labels: l, Date().timeIntervalSince(started))
        return m.text
    }

    /// Serves `/metrics` and `/healthz` on `port` (0 = any).
    public func serve(port: Int) throws -> HTTPServer {
        try HTTPServer(port: port) { [self] _, path in
            switch path {
            case "/metrics": HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: text)
            case "/healthz": HTTPResponse(body: "ok\n")
            default: HTTPResponse(status: 404, body: "not found: \(path) (try /metrics or /healthz)\n")
            }
        }
    }
}
