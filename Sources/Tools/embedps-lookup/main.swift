import Foundation
import CLI
import Client
import HTTP
import Lookup
import CheckpointReader
import RPC
import Vocabulary

let usage = """
usage: embedps-lookup --cluster SPEC.json [options]

The online embedding lookup service: read-only rows and pooled semantic-ID items for inference, from the live
shards of the cluster (--cluster) or from a cluster checkpoint opened read-only (--checkpoint), through a bounded cache (rows are served at most --cache-ttl-ms after they were
fetched) with concurrent requests batched into one shard fan-out.

  gRPC  embedps.v1.Lookup/Lookup and /LookupPooled (PullRequest -> PullResponse, Protos/embedps.proto),
        grpc.health.v1.Health
  HTTP  GET /v1/lookup?table=T&ids=1,2,3        -> {"table": T, "dim": D, "rows": [[...], ...]}
        GET /v1/lookup_pooled?table=T&items=...  (semantic-ID tables: the sum of each item's piece rows)
        GET /metrics (Prometheus), GET /healthz

options:
  --cluster PATH          cluster spec of the shards
  --checkpoint DIRS       instead: serve a cluster checkpoint, given as its parts (comma-separated
                          checkpoints/NAME directories, one per shard; the files are not modified)
  --listen HOST:PORT      gRPC address (default 0.0.0.0:7500; port 0 picks one)
  --http-port N           HTTP port (default 7501; 0 picks one)
  --cache-rows N          rows kept in the cache (default 1048576; 0 = no cache)
  --cache-ttl-ms N        how long a cached row is served (default 1000)
  --batch-window-us N     wait N microseconds before a pull when none is in flight, to batch more requests
                          (default 0: requests that arrive while a pull is in flight are batched anyway)
  --read-from WHICH       followers (default): shards that list followers in the spec are read from their
                          first follower (training primaries take no serving load); primaries: never
  --threads N             gRPC and HTTP handler threads each (default 4)
  --port-file PATH        write "GRPC_PORT HTTP_PORT" once serving
  --auth-token-file PATH  token for shards started with one
  --tls-ca PEM            connect to TLS shards trusting this CA
  --tls-cert PEM --tls-key PEM   serve gRPC with TLS
"""
let o = Options(Array(CommandLine.arguments.dropFirst()), usage: usage,
                known: ["cluster", "checkpoint", "listen", "http-port", "cache-rows", "cache-ttl-ms", "batch-window-us", "threads", "port-file",
                        "auth-token-file", "tls-ca", "tls-cert", "tls-key", "read-from"])
var config = LookupConfiguration()
config.cacheRows = o.int("cache-rows", default: 1 << 20)
config.cacheTTLSeconds = Double(o.int("cache-ttl-ms", default: 1000)) / 1000
config.batchWindowSeconds = Double(o.int("batch-window-us", default: 0)) / 1e6
let threads = max(1, o.int("threads", default: 4))
do {
    let source: any RowSource
    let origin: String
    if let parts = o.string("checkpoint") {
        let c = try CheckpointRowSource(parts: parts.split(separator: ",").map(String.init))
        source = c; origin = "checkpoint \(c.name) (\(c.partCount) parts, read-only)"
    } else {
        let readFrom = o.string("read-from", default: "followers")
        guard readFrom == "followers" || readFrom == "primaries" else { o.fail("--read-from takes followers or primaries") }
        let spec = try ClusterSpec.load(path: o.required("cluster"))
        let read = readFrom == "followers" ? spec.readingFromFollowers : spec
        let client = try EmbedPSClient(spec: read, options: try ClientOptions.from(tokenFile: o.string("auth-token-file"), tlsCAFile: o.string("tls-ca")))
        let viaFollowers = zip(spec.shards, read.shards).filter { $0.address != $1.address }.count
        source = client; origin = "\(client.shardCount) shards" + (viaFollowers > 0 ? " (\(viaFollowers) read from followers)" : "")
    }
    let service = LookupService(source: source, configuration: config)
    var serverConfig = ServerConfiguration(address: o.string("listen", default: "0.0.0.0:7500"))
    LookupService.configure(&serverConfig)
    serverConfig.threads = threads
    if let cert = o.string("tls-cert") { serverConfig.tls = try TLSIdentity(certificatePath: cert, keyPath: o.required("tls-key")) }
    let server = Server(serverConfig)
    service.register(on: server)
    try server.start()
    let http = try HTTPServer(port: o.int("http-port", default: 7501), threads: threads) { service.handle($0) }
    printFlush("embedps-lookup: gRPC on port \(server.port), HTTP on port \(http.port) (/v1/lookup, /metrics, /healthz); " +
               "\(origin), cache \(config.cacheRows) rows / \(Int(config.cacheTTLSeconds * 1000)) ms")
    if let f = o.string("port-file") { try "\(server.port) \(http.port)\n".write(toFile: f, atomically: true, encoding: .utf8) }
    let stop = DispatchSemaphore(value: 0)
    signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN)
    let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
        let s = DispatchSource.makeSignalSource(signal: sig, queue: DispatchQueue(label: "signals"))
        s.setEventHandler { stop.signal() }
        s.resume()
        return s
    }
    stop.wait()
    // Shutdown is bounded: calls still waiting on a dead shard must not keep the process alive.
    DispatchQueue.global().asyncAfter(deadline: .now() + 15) {
        printError("embedps-lookup: shutdown did not finish within 15 s (calls still waiting on shards); exiting")
        exitNow(1)
    }
    server.shutdown(graceSeconds: 5)
    http.stop()
    withExtendedLifetime(sources) {}
    printFlush("embedps-lookup: stopped")
} catch {
    printError("error: embedps-lookup: \(error)")
    exitNow(1)
}
exitNow(0)
