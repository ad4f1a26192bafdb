import Foundation
import CLI
import Client
import Vocabulary

/// A child process started by the benchmark (a shard or redis-server); terminated on `stop()`.
final class ChildProcess {
    private(set) var process = Process()
    let path: String
    let args: [String]
    let log: String
    init(_ path: String, _ args: [String], log: String) throws {
        self.path = path; self.args = args; self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        try start(args)
    }
    private func start(_ arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let h = FileHandle(forWritingAtPath: log)
        h?.seekToEndOfFile()
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }
    /// Kills the process with `signal` (SIGKILL: a crash; SIGTERM: a graceful stop, waited for) and starts it
    /// again with `arguments` (default: the original ones).
    func restart(signal: Int32, arguments: [String]? = nil) throws {
        if process.isRunning {
            kill(process.processIdentifier, signal)
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning && Date() < deadline { usleep(10_000) }
        }
        try start(arguments ?? args)
    }
    /// SIGKILL (a crash), returns once the process is gone.
    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(10_000) }
    }
    var pid: Int32 { process.processIdentifier }
    /// SIGTERM, then SIGKILL after `graceSeconds`; returns once the process is gone. Polls instead of
    /// `waitUntilExit` (which can stall in async code on Linux).
    func stop(graceSeconds: Double = 10) {
        guard process.isRunning else { return }
        process.terminate()
        var deadline = Date().addingTimeInterval(graceSeconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(20_000) }
    }
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET); addr.sin_port = 0; addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func waitForFile(_ path: String, seconds: Double) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !FileManager.default.fileExists(atPath: path) {
        guard Date() < deadline else { throw BenchError("timed out waiting for \(path)") }
        Thread.sleep(forTimeInterval: 0.05)
    }
}

func runBenchmark(_ o: Options) async throws {
    let quick = o.flag("quick")
    let rows = o.int("rows", default: 1_000_000), dim = o.int("dim", default: 64), batch = o.int("batch", default: 4096)
    let seconds = quick ? 1 : o.double("seconds", default: 3), reps = quick ? 1 : o.int("reps", default: 3)
    let warmup = o.int("warmup", default: 3)
    let clientCounts = o.string("clients", default: "1,4").split(separator: ",").compactMap { Int($0) }
    let pipeline = o.int("pipeline", default: 4)
    let dists = o.string("dists", default: "uniform,zipf").split(separator: ",").compactMap { WorkloadW.Distribution(rawValue: String($0)) }
    let ops = o.string("ops", default: "pull,push").split(separator: ",").map(String.init)
    guard let optimizer = OptimizerKind(name: o.string("optimizer", default: "adagrad")) else { o.fail("--optimizer must be adagrad or sgd") }
    let durability = o.string("durability", default: "async")
    let cacheFraction = o.double("cache-fraction", default: 1.0)
    let withRedis = !o.flag("no-redis")
    guard batch <= rows else { o.fail("--batch must not exceed --rows") }

    let work = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-bench-\(getpid())")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    var children: [ChildProcess] = []
    defer { children.forEach { $0.stop() } }

    printError("workload W: \(rows) rows x \(dim) floats, batches of \(batch) distinct sorted ids, optimizer \(optimizer), durability \(durability), cache \(Int(cacheFraction * 100))% of rows")
    // 1024 batches per distribution, as the shared batch files have: the ids a run cycles through must not
    // fit a cache that the table does not.
    var w = WorkloadW(rows: rows, dim: dim, batchSize: batch, batchCount: 1024)
    let peers = Peer.parse(o.all("peer"), o)
    var pslite: PSLiteRunner? = nil
    var rocks: RocksCeilingRunner? = nil
    for peer in peers {
        switch peer.kind {
        case .pslite:
            guard rows == 1_000_000, dim == 64, batch == 4096 else { o.fail("--peer pslite runs workload W's shape (1000000 rows x 64 floats, batches of 4096): drop --rows/--dim/--batch") }
            let r = PSLiteRunner(dir: peer.path, work: work)
            try r.check()
            // Both systems read the same ids: ps-lite's batch files.
            for d in dists { w.batches[d] = try readBatchFile(r.dataDir + "/batches_\(d.rawValue).bin", batchSize: batch) }
            printError("  peer ps-lite: \(r.binary), batches from \(r.dataDir)")
            pslite = r
        case .rocks:
            rocks = RocksCeilingRunner(binary: peer.path, work: work)
        }
    }
    if let rocks { try rocks.prepare(w) }

    // EmbedPS: start shards unless a cluster was given.
    var specPath = o.string("cluster") ?? ""
    var shardPorts: [String] = []
    if specPath.isEmpty {
        let shards = o.int("shards", default: 1)
        let serverBin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("embedps-server").path
        let serverSpec = work.appendingPathComponent("server-spec.json").path
        try ClusterSpec(shards: (0..<shards).map { _ in .init(address: "127.0.0.1:0") }).encoded().write(to: URL(fileURLWithPath: serverSpec))
        let extra = serverArguments(o).flatMap { ["--" + $0.flag, $0.value] }
        var addresses: [String] = []
        for i in 0..<shards {
            let portFile = work.appendingPathComponent("port-\(i)").path
            children.append(try ChildProcess(serverBin, ["--cluster", serverSpec, "--shard-index", "\(i)", "--listen", "127.0.0.1:0",
                                                         "--data-dir", work.appendingPathComponent("shard-\(i)").path, "--durability", durability,
                                                         "--cache-rows", "\(Int(Double(rows) * cacheFraction / Double(shards)) + 1)",
                                                         "--port-file", portFile] + extra, log: work.appendingPathComponent("shard-\(i).log").path))
            try waitForFile(portFile, seconds: 30)
            try await Task.sleep(nanoseconds: 50_000_000)
            let port = try String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            addresses.append("127.0.0.1:\(port)")
            shardPorts.append(port)
        }
        specPath = work.appendingPathComponent("client-spec.json").path
        try ClusterSpec(shards: addresses.map { .init(address: $0) }).encoded().write(to: URL(fileURLWithPath: specPath))
    }
    var opt = OptimizerConfig(kind: optimizer, learningRate: 0.01); opt.initialAccumulator = 0.1
    let spec = TableSpec(name: "bench_w", dim: dim, optimizer: opt, initializer: .uniform(-0.05, 0.05, seed: 1))
    var embedps = EmbedPSTarget(specPath: specPath, table: spec.name, dim: dim)
    embedps.connections = o.int("client-connections", default: embedps.connections)
    guard embedps.connections >= 1 && embedps.connections <= 64 else { o.fail("--client-connections must be 1 to 64") }
    let loadRate = try await embedps.load(w, spec: spec)
    printError("  bulk load: \(Int(loadRate)) rows/s")
    if rows > 2_000_000 && !shardPorts.isEmpty {
        // Large tables are not warmed by pulls (see load); read the shards' SST files once instead, so the
        // runs and the --ceiling measurement after them find the same page cache (as a long-running shard
        // with enough memory has).
        let t0 = monotonicSeconds()
        var bytes = 0
        for i in 0..<shardPorts.count {
            let dir = work.appendingPathComponent("shard-\(i)").path
            for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where f.hasSuffix(".sst") {
                if let h = FileHandle(forReadingAtPath: dir + "/" + f) {
                    while let d = try? h.read(upToCount: 4 << 20), !d.isEmpty { bytes += d.count }
                    try? h.close()
                }
            }
        }
        printError("  page cache: read \(bytes >> 20) MiB of SST files in \(String(format: "%.1f", monotonicSeconds() - t0)) s")
    }
    let rssAfterLoad = children.first.map { processMemory($0.pid).rss } ?? 0
    let lifecycle = o.flag("lifecycle")
    if lifecycle && (shardPorts.count != 1) { o.fail("--lifecycle measures one shard started by the benchmark (no --cluster, --shards 1)") }
    if o.flag("lookup") {
        try await runLookupBenchmark(specPath: specPath, table: spec.name, rows: rows, dim: dim, seconds: seconds, work: work, children: &children, json: o.flag("json"))
        return
    }

    var redis: RedisTarget? = nil
    if withRedis {
        let port = freePort()
        children.append(try ChildProcess("/usr/bin/redis-server", ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                                                     "--dir", work.path], log: work.appendingPathComponent("redis.log").path))
        let r = RedisTarget(port: port)
        let deadline = Date().addingTimeInterval(10)
        while (try? RedisConnection(port: port)) == nil {
            guard Date() < deadline else { throw BenchError("redis-server did not start (is redis-server installed? run Cluster/install-deps.sh)") }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        printError("  loading Redis: \(rows) rows")
        try r.load(w, initializer: RowInitializer(config: spec.initializer, dim: dim))
        redis = r
    }

    var cases: [(clients: Int, inflight: Int)] = clientCounts.map { ($0, 1) }
    if pipeline > 1 { cases.append((1, pipeline)) }
    var results: [Measurement] = []
    let benchStarted = monotonicSeconds()
    for d in dists {
        let batches = w.batches[d]!
        for op in ops {
            let opName = op == "push" ? "push-\(optimizer)" : op
            var mine: [Int: [Measurement]] = [:], theirs: [String: [Measurement]] = [:]
            // Repetition-major: every system runs once per repetition, so drift touches all alike.
            for rep in 0..<reps {
                for (ci, c) in cases.enumerated() {
                    printError("  measuring: \(op) \(d.rawValue) clients=\(c.clients) inflight=\(c.inflight) (repetition \(rep + 1)/\(reps))")
                    let r = try await embedps.run(op: op, batches: batches, gradients: w.gradients, clients: c.clients, inflight: c.inflight, seconds: seconds, warmup: warmup)
                    let m = r.measurement(system: "embedps", op: opName, distribution: d.rawValue, clients: c.clients, inflight: c.inflight, rowsPerBatch: batch, bytesPerRow: dim * 4)
                    mine[ci, default: []].append(m)
                    // One line per repetition, with the time since the start: a throughput series (e.g. across a resharding).
                    printError(String(format: "  measured: %@ %@ clients=%d inflight=%d at +%.1f s: %.0f rows/s", opName, d.rawValue, c.clients, c.inflight,
                                      monotonicSeconds() - benchStarted, m.rowsPerSecond))
                    if let redis {
                        for rop in op == "pull" ? ["pull"] : ["push-rmw", "push-atomic"] {
                            let rr = try redis.run(op: rop, batches: batches, gradients: w.gradients, dim: dim, clients: c.clients, inflight: c.inflight, seconds: seconds, warmup: warmup)
                            theirs["redis \(rop) \(ci)", default: []].append(rr.measurement(system: "redis", op: rop, distribution: d.rawValue, clients: c.clients, inflight: c.inflight, rowsPerBatch: batch, bytesPerRow: dim * 4))
                        }
                    }
                }
                if let pslite {
                    let depths = cases.filter { $0.clients == 1 }.map(\.inflight)
                    let peerOp = op == "pull" ? "pull" : (optimizer == .sgd ? "push" : "push_adagrad")
                    printError("  measuring: ps-lite \(peerOp) \(d.rawValue) in flight \(depths.map(String.init).joined(separator: ",")) (repetition \(rep + 1)/\(reps))")
                    for m in try pslite.run(op: peerOp, dist: d.rawValue, seconds: seconds, depths: depths) { theirs["pslite \(m.inflight)", default: []].append(m) }
                }
                if let rocks, op == "pull" {
                    printError("  measuring: RocksDB MultiGet ceiling \(d.rawValue) (repetition \(rep + 1)/\(reps))")
                    for m in try rocks.run(dist: d.rawValue, seconds: seconds) { theirs["rocks", default: []].append(m) }
                }
            }
            for ci in cases.indices { if let m = mine[ci] { results.append(median(m)) } }
            for (_, v) in theirs.sorted(by: { $0.key < $1.key }) { results.append(median(v)) }
        }
    }
    let rssAfterRuns = children.first.map { processMemory($0.pid) } ?? (0, 0, 0)
    if o.flag("ceiling") {
        guard shardPorts.count == 1, let shard = children.first else { o.fail("--ceiling reads the data of one shard started by the benchmark") }
        if lifecycle { printError("  (--ceiling runs before --lifecycle)") }
        printError("  measuring: RocksDB MultiGet ceiling on the shard's data (shard stopped meanwhile)")
        shard.stop(graceSeconds: 900)
        results += try measureStorageCeiling(dataDirectory: work.appendingPathComponent("shard-0").path, w: w, dists: dists, seconds: seconds, reps: reps)
        try shard.restart(signal: SIGTERM, arguments: shard.args.enumerated().map { $0.offset > 0 && shard.args[$0.offset - 1] == "--listen" ? "127.0.0.1:\(shardPorts[0])" : $0.element })
        let c = try EmbedPSClient(specPath: specPath)
        try await c.waitUntilHealthy(timeoutSeconds: 600)
    }
    report(results, json: o.flag("json"))
    if lifecycle, let shard = children.first {
        let f = try await measureLifecycle(shard: shard, port: shardPorts[0], specPath: specPath, table: spec.name, w: w, rssAfterLoad: rssAfterLoad, rssAfterRuns: rssAfterRuns,
                                           logSeconds: o.double("log-seconds", default: 10))
        reportLifecycle(f, loadRate: loadRate, rows: rows, json: o.flag("json"))
    }
}

struct Ratio: Codable {
    var op: String, distribution: String, clients: Int, inflight: Int, versus: String, ratio: Double
}

func report(_ results: [Measurement], json: Bool) {
    var ratios: [Ratio] = []
    for m in results where m.system == "embedps" {
        let redis = results.filter { $0.system == "redis" && $0.distribution == m.distribution && $0.clients == m.clients && $0.inflight == m.inflight && $0.op.hasPrefix(m.op.hasPrefix("push") ? "push" : "pull") }
        let pslite = results.filter { $0.system == "pslite" && $0.distribution == m.distribution && $0.clients == m.clients && $0.inflight == m.inflight && $0.op == m.op }
        let rocks = results.filter { $0.system.hasPrefix("rocksdb-") && $0.distribution == m.distribution && m.op == "pull" && m.clients == 1 && m.inflight == 1 }
        for p in redis + pslite + rocks where p.rowsPerSecond > 0 {
            ratios.append(Ratio(op: m.op, distribution: m.distribution, clients: m.clients, inflight: m.inflight, versus: "\(p.system) \(p.op)", ratio: m.rowsPerSecond / p.rowsPerSecond))
        }
    }
    if json {
        struct Report: Codable { var results: [Measurement]; var ratios: [Ratio] }
        print(jsonText(Report(results: results, ratios: ratios)))
        return
    }
    func f(_ x: Double, _ d: Int = 0) -> String { String(format: "%.\(d)f", x) }
    print(renderTable(["system", "op", "dist", "clients", "inflight", "rows/s", "MB/s", "p50 ms", "p99 ms", "max ms"],
                      results.map { [$0.system, $0.op, $0.distribution, "\($0.clients)", "\($0.inflight)", f($0.rowsPerSecond), f($0.megabytesPerSecond, 1), f($0.p50Ms, 2), f($0.p99Ms, 2),
                                     $0.maxMs.map { f($0, 1) } ?? "-"] }))
    if !ratios.isEmpty {
        print("")
        print(renderTable(["embedps op", "dist", "clients", "inflight", "versus", "ratio"],
                          ratios.map { [$0.op, $0.distribution, "\($0.clients)", "\($0.inflight)", $0.versus, f($0.ratio, 2) + "x"] }))
    }
}

/// An on|off server setting the engine-only run takes from `--server-arg FLAG=on|off` (on when not given,
/// as the server's default); any other value fails with the accepted ones named.
func engineSwitch(_ o: Options, _ flag: String) -> Bool {
    guard let value = serverArguments(o).last(where: { $0.flag == flag })?.value else { return true }
    guard let on = Options.onOff(value) else { o.fail("--server-arg \(flag) takes on or off, got '\(value)'") }
    return on
}

/// An integer server setting the engine-only run takes from `--server-arg FLAG=N` (nil when not given), held
/// to the range the server accepts for it; any other value fails, naming the flag and the range (as the
/// server would refuse it in the gRPC runs).
func engineInt(_ o: Options, _ flag: String, _ range: ClosedRange<Int>) -> Int? {
    guard let value = serverArguments(o).last(where: { $0.flag == flag })?.value else { return nil }
    guard let n = Int(value), range.contains(n) else {
        let bounds = range.upperBound == Int.max ? "of at least \(range.lowerBound)" : "from \(range.lowerBound) to \(range.upperBound)"
        o.fail("--server-arg \(flag) takes an integer \(bounds), got '\(value)'")
    }
    return n
}

/// The `--server-arg FLAG=VALUE` options, in order (fails on one without a flag name or '=').
func serverArguments(_ o: Options) -> [(flag: String, value: String)] {
    o.all("server-arg").map { a in
        guard let eq = a.firstIndex(of: "="), eq != a.startIndex else { o.fail("--server-arg takes FLAG=VALUE (e.g. read-threads=1), got '\(a)'") }
        return (String(a[..<eq]), String(a[a.index(after: eq)...]))
    }
}
