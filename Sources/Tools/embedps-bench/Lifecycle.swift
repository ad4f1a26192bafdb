import Foundation
import Client
import EmbedPSWire
import Vocabulary
import CLI

/// Shard lifecycle figures for the scale table (`--lifecycle`, one started shard): memory after the load and
/// after the runs, a checkpoint after a burst of uniform pushes, recovery after kill -9 with an update log
/// written for `logSeconds` of pushes, and a graceful restart.
struct LifecycleFigures: Codable {
    var rssAfterLoadMB: Double
    var rssAfterRunsMB: Double
    /// Anonymous memory after the runs: the shard's own (rows, indexes, filters, buffers), without the SST
    /// pages it maps, which the kernel may drop at any time.
    var anonRSSAfterRunsMB: Double
    var peakRSSMB: Double
    var checkpointSeconds: Double
    var checkpointDirtyRows: UInt64
    var logBytesReplayed: UInt64
    var recoverySeconds: Double
    var restartSeconds: Double
}

/// VmRSS, VmHWM and RssAnon of a process, in MiB. VmRSS and VmHWM count the SST pages a shard maps (clean
/// page cache the kernel reclaims under pressure); RssAnon is the shard's own memory.
func processMemory(_ pid: Int32) -> (rss: Double, peak: Double, anon: Double) {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0, 0) }
    func field(_ name: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Double(line.split(separator: " ").dropFirst().first ?? "0").map { $0 / 1024 } ?? 0
        }
        return 0
    }
    return (field("VmRSS"), field("VmHWM"), field("RssAnon"))
}

func measureLifecycle(shard: ChildProcess, port: String, specPath: String, table: String, w: WorkloadW, rssAfterLoad: Double, rssAfterRuns: (rss: Double, peak: Double, anon: Double), logSeconds: Double) async throws -> LifecycleFigures {
    var f = LifecycleFigures(rssAfterLoadMB: rssAfterLoad, rssAfterRunsMB: rssAfterRuns.rss, anonRSSAfterRunsMB: rssAfterRuns.anon, peakRSSMB: rssAfterRuns.peak,
                             checkpointSeconds: 0, checkpointDirtyRows: 0, logBytesReplayed: 0, recoverySeconds: 0, restartSeconds: 0)
    let client = try EmbedPSClient(specPath: specPath)
    let batches = w.batches[.uniform]!
    let grads = w.gradients.map { FloatBuffer($0) }
    func pushFor(_ seconds: Double) async throws {
        let deadline = monotonicSeconds() + seconds
        var k = 0
        while monotonicSeconds() < deadline {
            try await withThrowingTaskGroup(of: Void.self) { g in
                for j in 0..<4 { let b = batches[(k + j) % batches.count], gr = grads[(k + j) % grads.count]; g.addTask { try await client.push(table: table, ids: b, gradients: gr) } }
                try await g.waitForAll()
            }
            k += 4
        }
    }
    func tableStats() async throws -> Wire.TableStats? { try await client.admin.shardStatus().first?.tables.first { $0.spec?.name == table } }

    // Checkpoint after a burst.
    printError("  lifecycle: 5 s of uniform pushes, then a checkpoint")
    try await pushFor(5)
    f.checkpointDirtyRows = try await tableStats()?.dirtyRows ?? 0
    var t0 = monotonicSeconds()
    try await client.admin.flush(table: table)
    f.checkpointSeconds = monotonicSeconds() - t0

    // Recovery after kill -9 with the log of `logSeconds` of pushes.
    printError("  lifecycle: \(Int(logSeconds)) s of uniform pushes, then kill -9 and restart")
    try await pushFor(logSeconds)
    f.logBytesReplayed = try await tableStats()?.logBytes ?? 0
    let listen = shard.args.enumerated().map { $0.offset > 0 && shard.args[$0.offset - 1] == "--listen" ? "127.0.0.1:\(port)" : $0.element }
    t0 = monotonicSeconds()
    try shard.restart(signal: SIGKILL, arguments: listen)
    try await client.waitUntilHealthy(timeoutSeconds: 1800)
    f.recoverySeconds = monotonicSeconds() - t0

    // Graceful stop (final checkpoint) and start.
    printError("  lifecycle: graceful stop and start")
    try shard.restart(signal: SIGTERM, arguments: listen)
    t0 = monotonicSeconds()
    try await client.waitUntilHealthy(timeoutSeconds: 600)
    f.restartSeconds = monotonicSeconds() - t0
    return f
}

func reportLifecycle(_ f: LifecycleFigures, loadRate: Double, rows: Int, json: Bool) {
    if json { print(jsonText(f)); return }
    func g(_ x: Double, _ d: Int = 1) -> String { String(format: "%.\(d)f", x) }
    print("")
    print(renderTable(["rows", "bulk load rows/s", "RSS after load MB", "RSS after runs MB", "anon RSS after runs MB", "peak RSS MB", "checkpoint s (dirty rows)",
                       "log replayed MB", "recovery after kill -9 s", "graceful restart s"],
                      [["\(rows)", g(loadRate, 0), g(f.rssAfterLoadMB, 0), g(f.rssAfterRunsMB, 0), g(f.anonRSSAfterRunsMB, 0), g(f.peakRSSMB, 0),
                        "\(g(f.checkpointSeconds, 2)) (\(f.checkpointDirtyRows))", g(Double(f.logBytesReplayed) / 1e6, 0), g(f.recoverySeconds, 2), g(f.restartSeconds, 2)]]))
}
