import Foundation
import CLI

/// Peer systems measured in the same pass as EmbedPS, in turns with it (each repetition runs EmbedPS, then
/// each peer, on the same batch files), so ratios compare like with like on a noisy machine:
///
/// - ps-lite (`--peer pslite DIR`, DIR made by `shared/bench/pslite/setup.sh`, holding `bench_pslite` and
///   `data/`): scheduler, server and worker processes over TCP on 127.0.0.1, 1 and 4 batches in flight.
/// - the in-process RocksDB MultiGet ceiling (`--peer rocks BIN`, BIN built from `shared/bench/rocks_bench.cc`
///   by `Cluster/build-peers.sh`): 4096-key sorted MultiGets from one thread, block cache holding every row,
///   loaded once into the benchmark's work directory.
///
/// Both read the shared batch-file format (`shared/bench/common.h`): u32 ids, 4096 per batch.
enum PeerKind: String { case pslite, rocks }

struct Peer {
    let kind: PeerKind
    let path: String

    /// Parses `--peer KIND PATH` values ("pslite=/dir" or "pslite:/dir" also accepted).
    static func parse(_ values: [String], _ o: Options) -> [Peer] {
        values.map { v in
            let parts = v.split(maxSplits: 1, whereSeparator: { $0 == "=" || $0 == ":" }).map(String.init)
            guard parts.count == 2, let kind = PeerKind(rawValue: parts[0]) else {
                o.fail("--peer takes pslite=DIR or rocks=BIN (got '\(v)')")
            }
            return Peer(kind: kind, path: parts[1])
        }
    }

    /// The embedps op a peer op compares with.
    static func embedpsOp(forPeerOp op: String) -> String {
        switch op {
        case "push": "push-sgd"
        case "push_adagrad": "push-adagrad"
        default: op
        }
    }
}

/// Reads workload-W batch files (`batches_<dist>.bin`: u32 ids, `batchSize` per batch).
func readBatchFile(_ path: String, batchSize: Int) throws -> [[UInt64]] {
    guard let data = FileManager.default.contents(atPath: path) else { throw BenchError("cannot read batch file \(path)") }
    let per = batchSize * 4
    guard data.count >= per, data.count % per == 0 else { throw BenchError("\(path): \(data.count) bytes is not a whole number of \(batchSize)-id batches") }
    return data.withUnsafeBytes { raw in
        (0..<(data.count / per)).map { b in (0..<batchSize).map { UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b * per + $0 * 4, as: UInt32.self))) } }
    }
}

/// Writes batches in the same format (for a peer that reads them).
func writeBatchFile(_ batches: [[UInt64]], to path: String) throws {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(batches.count * (batches.first?.count ?? 0) * 4)
    for b in batches { for id in b { withUnsafeBytes(of: UInt32(truncatingIfNeeded: id).littleEndian) { bytes += $0 } } }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Parses `RESULT sys=... op=... rows_per_s=...` lines of `shared/bench/common.h`.
func parseResultLines(_ text: String, system: String) -> [Measurement] {
    text.split(separator: "\n").compactMap { line in
        guard line.hasPrefix("RESULT ") else { return nil }
        var f: [String: String] = [:]
        for kv in line.dropFirst(7).split(separator: " ") {
            let p = kv.split(separator: "=", maxSplits: 1)
            if p.count == 2 { f[String(p[0])] = String(p[1]) }
        }
        guard let op = f["op"], let dist = f["dist"], let rps = Double(f["rows_per_s"] ?? ""), let mbs = Double(f["MB_per_s"] ?? ""),
              let p50 = Double(f["p50_ms"] ?? ""), let p99 = Double(f["p99_ms"] ?? "") else { return nil }
        let variant = f["variant"] ?? ""
        let inflight = variant.hasSuffix("inflight4") ? 4 : 1
        return Measurement(system: system, op: Peer.embedpsOp(forPeerOp: op), distribution: dist, clients: Int(f["clients"] ?? "1") ?? 1,
                           inflight: inflight, rowsPerSecond: rps, megabytesPerSecond: mbs, p50Ms: p50, p99Ms: p99)
    }
}

/// Runs a child to completion with extra environment; returns its stdout. Stderr goes to `log`.
@discardableResult
func runToCompletion(_ path: String, _ args: [String], environment: [String: String] = [:], log: String, timeout: Double) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let outPath = log + ".out"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    p.standardOutput = FileHandle(forWritingAtPath: outPath)
    p.standardError = FileHandle(forWritingAtPath: log)
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(50_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL); throw BenchError("\(path) \(args.joined(separator: " ")) timed out after \(Int(timeout)) s (log: \(log))") }
    guard p.terminationStatus == 0 else { throw BenchError("\(path) exited with \(p.terminationStatus) (log: \(log))") }
    return (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
}

/// ps-lite: one scheduler + server + worker run per call (both depths), results parsed from the worker.
struct PSLiteRunner {
    let dir: String
    let work: URL
    var binary: String { dir + "/bench_pslite" }
    var dataDir: String { dir + "/data" }

    func check() throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("\(binary) missing: build ps-lite with Cluster/build-peers.sh (or shared/bench/pslite/setup.sh)")
        }
        if !FileManager.default.fileExists(atPath: dataDir + "/batches_uniform.bin") {
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
            try runToCompletion(dir + "/gen_batches", ["1024", dataDir], log: work.appendingPathComponent("gen_batches.log").path, timeout: 300)
        }
    }

    /// `op`: pull, push or push_adagrad.
    func run(op: String, dist: String, seconds: Double, depths: [Int]) throws -> [Measurement] {
        let port = freePort()
        var env = ["DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": "1", "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": "\(port)",
                   "DMLC_NODE_HOST": "127.0.0.1", "W_DATA": dataDir]
        let args = ["--ops", op, "--dists", dist, "--depths", depths.map(String.init).joined(separator: ","), "--reps", "1",
                    "--secs", String(seconds), "--warmup", "64"]
        var helpers: [Process] = []
        defer { for h in helpers where h.isRunning { kill(h.processIdentifier, SIGKILL) } }
        for role in ["scheduler", "server"] {
            let h = Process()
            h.executableURL = URL(fileURLWithPath: binary)
            h.arguments = args
            env["DMLC_ROLE"] = role
            h.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
            let log = work.appendingPathComponent("pslite-\(role).log").path
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            h.standardOutput = FileHandle(forWritingAtPath: log); h.standardError = FileHandle(forWritingAtPath: log)
            try h.run()
            helpers.append(h)
        }
        env["DMLC_ROLE"] = "worker"
        let out = try runToCompletion(binary, args, environment: env, log: work.appendingPathComponent("pslite-worker.log").path, timeout: 120 + 4 * seconds)
        if out.contains("FAILED") { throw BenchError("ps-lite verification failed: \(out)") }
        // Scheduler and server leave after ps-lite's finalize barrier.
        let deadline = Date().addingTimeInterval(30)
        while helpers.contains(where: { $0.isRunning }) && Date() < deadline { usleep(50_000) }
        return parseResultLines(out, system: "pslite")
    }
}

/// The RocksDB MultiGet ceiling (shared/bench/rocks_bench.cc), loaded once.
struct RocksCeilingRunner {
    let binary: String
    let work: URL
    var dbDir: String { work.appendingPathComponent("rocks-ceiling").path }
    var dataDir: String { work.appendingPathComponent("rocks-data").path }

    func prepare(_ w: WorkloadW) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("\(binary) missing: build it with Cluster/build-peers.sh")
        }
        guard w.rows == 1_000_000, w.dim == 64, w.batchSize == 4096 else {
            throw BenchError("the rocks peer is built for workload W's shape (1000000 rows x 64 floats, batches of 4096): drop --rows/--dim/--batch")
        }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        for d in WorkloadW.Distribution.allCases { try writeBatchFile(w.batches[d]!, to: dataDir + "/batches_\(d.rawValue).bin") }
        printError("  loading the RocksDB ceiling database (\(w.rows) rows)")
        try runToCompletion(binary, ["load", dbDir], log: work.appendingPathComponent("rocks-load.log").path, timeout: 900)
    }

    func run(dist: String, seconds: Double) throws -> [Measurement] {
        let out = try runToCompletion(binary, [dbDir, "1024", "pull", dist, "1", "1", String(seconds), "inproc"], environment: ["W_DATA": dataDir],
                                      log: work.appendingPathComponent("rocks-run.log").path, timeout: 300 + seconds)
        return parseResultLines(out, system: "rocksdb-ceiling")
    }
}
