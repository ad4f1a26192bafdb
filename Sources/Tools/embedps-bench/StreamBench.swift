import Foundation
import Client
import Vocabulary
import EmbedPSWire
import CLI

/// An unbounded id stream through one shard (`--stream`): Zipf(s) ranks over `distinct` ids (rank r is id
/// mix(r), a fixed bijection), batches of `batch` distinct ids pushed with 4 in flight, into a table with a
/// row budget (eviction) and admission, then the same stream into a table without policies. Prints rows,
/// RSS and disk as it goes and the throughput ratio (policies on / off).
struct StreamSettings {
    var ids = 200_000_000
    var distinct = 50_000_000
    var zipfS = 1.1
    var dim = 16
    var batch = 4096
    var maxRows: UInt64 = 2_000_000
    var admitMinCount = 2
    var cacheRows = 1_000_000
    var withoutPolicies = true
}

struct StreamFigures: Codable {
    var policies: Bool
    var ids: Int
    var seconds: Double
    var idsPerSecond: Double
    var rowsAtEnd: UInt64
    var rowsMax: UInt64
    var rowsMinAfterFirstPass: UInt64
    var peakRSSMB: Double
    /// The largest anonymous RSS sampled (the shard's own memory, without the SST pages it maps).
    var peakAnonRSSMB: Double
    var diskBytesAtEnd: UInt64
    var diskBytesMax: UInt64
    var rowsEvicted: UInt64
    var pushesRefused: UInt64
}

/// Zipf(s) ranks in [0, n) by inverting the continuous power law on [1, n + 1) (close to the discrete law for
/// s > 1 and large n; cheap and memory-free).
struct ZipfRanks {
    let n: Double, s: Double, top: Double
    init(n: Int, s: Double) { self.n = Double(n); self.s = s; top = pow(Double(n) + 1, 1 - s) - 1 }
    func rank(_ u: Double) -> Int { min(Int(n) - 1, max(0, Int(pow(1 + u * top, 1 / (1 - s))) - 1)) }
}

/// A bijection of 64-bit values (SplitMix64's finalizer): rank -> id.
@inline(__always) func mixID(_ r: UInt64) -> UInt64 {
    var z = r &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

func runStreamBenchmark(_ s: StreamSettings, work: URL, json: Bool) async throws {
    var figures: [StreamFigures] = []
    for policies in s.withoutPolicies ? [true, false] : [true] {
        let dir = work.appendingPathComponent(policies ? "with-policies" : "without")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let (shard, specPath) = try await startBenchShard(work: dir, cacheRows: s.cacheRows)
        defer { shard.stop(graceSeconds: 60) }
        let admin = try EmbedPSAdmin(specPath: specPath)
        let client = admin.client
        try await client.waitUntilHealthy(timeoutSeconds: 30)
        var spec = TableSpec(name: "stream", dim: s.dim, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.01))
        if policies {
            var e = EvictionConfig(); e.maxRows = s.maxRows; e.intervalSeconds = 3600
            spec.eviction = e
            if s.admitMinCount > 1 { spec.admission = AdmissionConfig(minCount: s.admitMinCount) }
        }
        try await admin.createTable(spec)
        printError("  stream (\(policies ? "max_rows \(s.maxRows), admission \(s.admitMinCount)" : "no policies")): \(s.ids) Zipf(\(s.zipfS)) ids over \(s.distinct) distinct, batches of \(s.batch)")
        let zipf = ZipfRanks(n: s.distinct, s: s.zipfS)
        let gradient = FloatBuffer([Float](repeating: 0.01, count: s.batch * s.dim))
        var rng = SplitMix64(seed: 42)
        func nextBatch() -> [UInt64] {
            var set = Set<UInt64>(minimumCapacity: s.batch)
            while set.count < s.batch { set.insert(mixID(UInt64(zipf.rank(rng.unit())))) }
            return Array(set)
        }
        var f = StreamFigures(policies: policies, ids: 0, seconds: 0, idsPerSecond: 0, rowsAtEnd: 0, rowsMax: 0, rowsMinAfterFirstPass: .max,
                              peakRSSMB: 0, peakAnonRSSMB: 0, diskBytesAtEnd: 0, diskBytesMax: 0, rowsEvicted: 0, pushesRefused: 0)
        let start = monotonicSeconds()
        var sent = 0, nextReport = s.ids / 20
        while sent < s.ids {
            let batches = (0..<4).map { _ in nextBatch() }
            try await withThrowingTaskGroup(of: Void.self) { g in
                for b in batches { g.addTask { _ = try await client.push(table: "stream", ids: b, gradients: gradient) } }
                try await g.waitForAll()
            }
            sent += 4 * s.batch
            if sent >= nextReport || sent >= s.ids {
                nextReport += s.ids / 20
                let st = try await admin.describeTable("stream").first ?? Wire.TableStats()
                let mem = processMemory(shard.pid)
                f.rowsMax = max(f.rowsMax, st.rows)
                if policies && st.rows >= s.maxRows / 2 { f.rowsMinAfterFirstPass = min(f.rowsMinAfterFirstPass, st.rows) }
                f.peakRSSMB = max(f.peakRSSMB, mem.peak); f.peakAnonRSSMB = max(f.peakAnonRSSMB, mem.anon); f.diskBytesMax = max(f.diskBytesMax, st.bytesOnDisk)
                f.rowsAtEnd = st.rows; f.diskBytesAtEnd = st.bytesOnDisk; f.rowsEvicted = st.rowsEvicted; f.pushesRefused = st.pushesRefused
                let elapsed = monotonicSeconds() - start
                printError(String(format: "    %5.1f%%  %.0f ids/s  rows %llu  RSS %.0f MB  disk %.0f MB  evicted %llu  refused %llu",
                                  100 * Double(sent) / Double(s.ids), Double(sent) / elapsed, st.rows, mem.rss, Double(st.bytesOnDisk) / 1e6,
                                  st.rowsEvicted, st.pushesRefused))
            }
        }
        f.ids = sent
        f.seconds = monotonicSeconds() - start
        f.idsPerSecond = Double(sent) / f.seconds
        if f.rowsMinAfterFirstPass == .max { f.rowsMinAfterFirstPass = 0 }
        figures.append(f)
    }
    if json { print(jsonText(figures)); return }
    func g(_ x: Double, _ d: Int = 0) -> String { String(format: "%.\(d)f", x) }
    print(renderTable(["policies", "ids", "ids/s", "rows at end", "rows max", "peak RSS MB", "peak anon RSS MB", "disk MB at end", "disk MB max", "evicted", "refused"],
                      figures.map { [$0.policies ? "max_rows + admission" : "none", "\($0.ids)", g($0.idsPerSecond), "\($0.rowsAtEnd)", "\($0.rowsMax)",
                                     g($0.peakRSSMB), g($0.peakAnonRSSMB), g(Double($0.diskBytesAtEnd) / 1e6), g(Double($0.diskBytesMax) / 1e6), "\($0.rowsEvicted)", "\($0.pushesRefused)"] }))
    if figures.count == 2 { print(String(format: "\nthroughput with policies / without: %.2fx", figures[0].idsPerSecond / figures[1].idsPerSecond)) }
}

/// Starts one shard for a benchmark in `work`; returns it and a client spec path.
func startBenchShard(work: URL, cacheRows: Int, durability: String = "async") async throws -> (ChildProcess, String) {
    let serverBin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("embedps-server").path
    let serverSpec = work.appendingPathComponent("server-spec.json").path
    try ClusterSpec(shards: [.init(address: "127.0.0.1:0")]).encoded().write(to: URL(fileURLWithPath: serverSpec))
    let portFile = work.appendingPathComponent("port").path
    let shard = try ChildProcess(serverBin, ["--cluster", serverSpec, "--shard-index", "0", "--listen", "127.0.0.1:0",
                                             "--data-dir", work.appendingPathComponent("shard").path, "--durability", durability,
                                             "--cache-rows", "\(cacheRows)", "--port-file", portFile], log: work.appendingPathComponent("shard.log").path)
    try waitForFile(portFile, seconds: 30)
    try await Task.sleep(nanoseconds: 50_000_000)
    let port = try String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    let specPath = work.appendingPathComponent("client-spec.json").path
    try ClusterSpec(shards: [.init(address: "127.0.0.1:\(port)")]).encoded().write(to: URL(fileURLWithPath: specPath))
    return (shard, specPath)
}
