import Foundation
import CLI
import Engine
import Vocabulary

let usage = """
usage: embedps-bench [options]

Runs benchmark workload W (shared/docs/benchmark-workload.md) against EmbedPS and, in the same run, a local
Redis baseline and any --peer; prints rows/s, MB/s, p50/p99 batch latency and EmbedPS/peer ratios.
By default it starts one shard (the embedps-server beside this binary) and one redis-server itself.

options:
  --rows N              table rows (default 1000000)
  --dim N               floats per row (default 64)
  --batch N             distinct ids per batch (default 4096)
  --seconds S           timed loop per case (default 3)
  --reps N              repetitions per case; the median is reported (default 3)
  --warmup N            warm-up batches per client (default 3)
  --clients LIST        client counts (default 1,4)
  --pipeline N          batches in flight for the pipelined case (1 client; default 4; 0 = skip)
  --dists LIST          uniform,zipf (default both)
  --ops LIST            pull,push (default both)
  --optimizer NAME      adagrad | sgd (default adagrad)
  --durability MODE     async | sync (default async)
  --cache-fraction F    hot-row cache size as a fraction of rows (default 1.0)
  --shards N            shards to start (default 1)
  --cluster PATH        benchmark this running cluster instead of starting shards
  --client-connections N  connections per shard of each timed client (default 2; ClientOptions)
  --no-redis            skip the Redis baseline
  --server-arg FLAG=V   pass --FLAG V to every shard the benchmark starts (repeatable; e.g. read-threads=1 to
                        compare a server setting in one pass; --engine takes read-threads, split-threads, log-before-pin,
                        log-segment-mb and checkpoint-log-mb from it)
  --peer KIND=PATH      also measure a peer in the same pass, in turns with EmbedPS, and print ratios
                        (repeatable): pslite=DIR (ps-lite built by Cluster/build-peers.sh; both systems then
                        read DIR/data's batch files), rocks=BIN (the in-process RocksDB MultiGet ceiling,
                        shared/bench/rocks_bench.cc, block cache holding every row; pull only)
  --lookup              instead: latency (p50/p99) of embedps-lookup for 1, 64 and 512-id requests against
                        direct shard pulls in the same run (use e.g. --rows 100000)
  --transport           instead: the gRPC transport alone in one process (pull- and push-shaped calls of
                        --batch rows of --dim floats), the floor under every call; --grpc-arg KEY=VALUE adds
                        an integer gRPC core channel argument to both sides (repeatable, to compare settings);
                        --handler-us N makes each call's handler read the request contiguous (as a shard does)
                        and hold the call until N microseconds have passed since it began (default 0): how a
                        shard's own time per call adds to the transport's
  --engine              instead: the shard engine alone in this process (no gRPC, no client): pull and push
                        rows/s of workload W straight into the engine, to separate storage from transport
  --ceiling             after the runs (one started shard): stop the shard, open its RocksDB in this process
                        and MultiGet the same batches from one thread (the storage ceiling at this table size)
  --lifecycle           after the runs (one started shard): RSS, a checkpoint after 5 s of uniform pushes,
                        recovery time after kill -9 with --log-seconds S (default 10) of pushes in the update
                        log, and a graceful restart; printed as the scale-table row
  --replication         instead: one primary shard and a follower (--rows, default 1M, --dim 64, --batch 4096,
                        --seconds 10 per phase): push rows/s without and with the follower, the follower's lag
                        under that load, catch-up time, and freshness (push acknowledged -> follower pull)
  --stream              instead: an unbounded id stream through one shard (row lifecycle): --stream-ids N
                        (default 200M) Zipf(1.1) ids over --stream-distinct N (default 50M) distinct ids, --dim
                        (default 16), pushed with 4 in flight into a table with eviction at --stream-max-rows N
                        per shard (default 2M) and admission --stream-admit K (default 2; 0 = off), then the
                        same stream without policies (--stream-policies-only skips it); prints rows, RSS and
                        disk as it goes and the throughput ratio
  --quick               1 second, 1 repetition (smoke run)
  --json                print the results as JSON
"""
let options = Options(Array(CommandLine.arguments.dropFirst()), usage: usage, flagNames: ["no-redis", "quick", "json", "lookup", "transport", "engine", "lifecycle", "ceiling", "stream", "stream-policies-only", "replication"],
                      known: ["rows", "dim", "batch", "seconds", "reps", "warmup", "clients", "pipeline", "client-connections", "dists", "ops",
                              "optimizer", "durability", "cache-fraction", "shards", "cluster", "grpc-arg", "handler-us", "server-arg", "peer", "log-seconds", "stream-ids", "stream-distinct", "stream-max-rows", "stream-admit", "stream-cache-rows"])
do {
    if options.flag("transport") {
        var arguments: [(String, Int32)] = []
        for a in options.all("grpc-arg") {
            let kv = a.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let v = Int32(kv[1]) else { options.fail("--grpc-arg takes KEY=INTEGER, got '\(a)'") }
            arguments.append((String(kv[0]), v))
        }
        let handlerMicroseconds = options.int("handler-us", default: 0)
        guard (0...10_000_000).contains(handlerMicroseconds) else { options.fail("--handler-us takes 0 to 10000000 microseconds, got \(handlerMicroseconds)") }
        try await runTransportBenchmark(seconds: options.double("seconds", default: 3), rowBytes: 4 * options.int("dim", default: 64),
                                        rows: options.int("batch", default: 4096), arguments: arguments, handlerMicroseconds: handlerMicroseconds,
                                        json: options.flag("json"))
        exitNow(0)
    }
    if options.flag("stream") {
        var s = StreamSettings()
        s.ids = options.int("stream-ids", default: s.ids); s.distinct = options.int("stream-distinct", default: s.distinct)
        s.dim = options.int("dim", default: s.dim); s.batch = options.int("batch", default: s.batch)
        s.maxRows = UInt64(options.int("stream-max-rows", default: Int(s.maxRows))); s.admitMinCount = options.int("stream-admit", default: s.admitMinCount)
        s.cacheRows = options.int("stream-cache-rows", default: s.cacheRows)
        s.withoutPolicies = !options.flag("stream-policies-only")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-stream-\(getpid())")
        defer { try? FileManager.default.removeItem(at: work) }
        try await runStreamBenchmark(s, work: work, json: options.flag("json"))
        exitNow(0)
    }
    if options.flag("replication") {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-replication-\(getpid())")
        defer { try? FileManager.default.removeItem(at: work) }
        try await runReplicationBenchmark(rows: options.int("rows", default: 1_000_000), dim: options.int("dim", default: 64),
                                          batch: options.int("batch", default: 4096), seconds: options.double("seconds", default: 10), work: work,
                                          json: options.flag("json"))
        exitNow(0)
    }
    if options.flag("engine") {
        guard let optimizer = OptimizerKind(name: options.string("optimizer", default: "adagrad")),
              let durability = Durability(rawValue: options.string("durability", default: "async")) else { options.fail("bad --optimizer or --durability") }
        let rows = options.int("rows", default: 1_000_000)
        let w = WorkloadW(rows: rows, dim: options.int("dim", default: 64), batchSize: options.int("batch", default: 4096), batchCount: 1024)
        try runEngineBenchmark(w, optimizer: optimizer, durability: durability, cacheRows: Int(Double(rows) * options.double("cache-fraction", default: 1.0)) + 1,
                               readThreads: engineInt(options, "read-threads", 1...Int.max),
                               splitThreads: engineInt(options, "split-threads", 1...Int.max),
                               logBeforePin: engineSwitch(options, "log-before-pin"),
                               logSegmentMB: engineInt(options, "log-segment-mb", 1...4096),
                               checkpointLogMB: engineInt(options, "checkpoint-log-mb", 1...1_048_576),
                               seconds: options.double("seconds", default: 3),
                               ops: options.string("ops", default: "pull,push").split(separator: ",").map(String.init),
                               dists: options.string("dists", default: "uniform,zipf").split(separator: ",").compactMap { WorkloadW.Distribution(rawValue: String($0)) },
                               json: options.flag("json"))
        exitNow(0)
    }
    try await runBenchmark(options)
} catch {
    printError("error: \(error)")
    exitNow(1)
}
exitNow(0)
