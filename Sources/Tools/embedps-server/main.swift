import Foundation
import CLI
import Engine
import RPC
import Server

let usage = """
usage: embedps-server --cluster SPEC.json --shard-index N [options]

Serves one shard of an EmbedPS cluster over gRPC (service embedps.v1.Shard and grpc.health.v1.Health).

options:
  --cluster PATH         cluster spec (JSON): shard addresses and slot map (required)
  --shard-index N        this shard's index in the spec (required)
  --listen HOST:PORT     listen address (default: the shard's address in the spec; port 0 picks one)
  --data-dir DIR         RocksDB directory (default: the shard's dataDir in the spec, else ./data/shard-N)
  --durability MODE      sync: a push is acknowledged after its update-log record is fdatasync'ed
                         async (default): once the record is in the log's ring in /dev/shm, which outlives
                         the process and is written to the log file behind it (survives a process crash or
                         kill -9, not a crash of the machine); without /dev/shm, once it is written
  --cache-rows N         hot-row cache bound per table, in rows (default 1048576); updated rows stay
                         in it (write-back) until a checkpoint writes them to RocksDB
  --read-threads N       threads one request's cache misses are read from RocksDB with, each reading a
                         part in storage order (default: the number of CPUs; 1: the request's thread)
  --split-threads N      threads a pull of at least 2048 rows copies its cached rows with while it is the
                         only request in its table (default: the number of CPUs; 1: the request's thread)
  --log-before-pin on|off  on (default): while a table's pushes find their rows cached, a push hands its
                         update-log record to the log writer before it pins its rows, so the write overlaps
                         the pin as well as the apply; off: after the pin (to compare)
  --log-ring-mb N        MiB of /dev/shm each table's update log reserves for records on their way to disk
                         (default 16; a larger push record grows it); with async durability a push is
                         acknowledged once its record is there
  --log-segment-mb N     MiB after which a table's update log closes its segment file and opens the next
                         (default 512); each switch waits for the disk to write what the ring holds of the old one
  --checkpoint-log-mb N  checkpoint a table when its update log grew by N MiB (1-1048576, default 4096)
  --checkpoint-seconds S checkpoint a table with dirty rows at least every S seconds (default 60)
  --checkpoint-snapshots on|off  on (default): the periodic checkpoint of a table without an eviction
                         policy, DNIS or dynamic sparsity writes its dirty rows, sequentially, to a snapshot
                         file beside its update log instead of through RocksDB (they stay dirty in the cache
                         and reach RocksDB when rows need room, at a graceful stop, or before an export,
                         migration, follower copy or table operation); off: through RocksDB (to compare)
  --snapshot-write-mbps N  MiB/s a snapshot checkpoint writes its file at, written back as it goes, so the
                         update log's writes to the same disk never wait behind it (default 128; 0: unpaced)
  --log-recycle-mb N     MiB of update-log segments each table keeps after checkpoints to write its next
                         segments into (overwriting written blocks is cheaper than appending: no allocation,
                         no new file size to commit on each fdatasync, and no discards of deleted files in
                         the log's way); default: twice --checkpoint-log-mb, about what a checkpoint
                         retires (the log keeps growing while one is written); 0 deletes old segments, and
                         each checkpoint snapshot's file once the next one replaces it (otherwise the last
                         one is kept as the next one's spare). A table with no push or operation for 5
                         minutes deletes its spares
  --threads N            completion-queue threads (default 2)
  --max-message-mb N     largest request/response in MiB (default 64)
  --port-file PATH       write the bound port to PATH once serving
  --metrics-port N       serve Prometheus /metrics and /healthz over HTTP on port N (0 = any free port)
  --metrics-port-file P  write the metrics port to P
  --auth-token-file PATH require the shared-secret token on its first line (>= 16 characters) as
                         'authorization: Bearer <token>' on admin calls (table create/drop, flush, register,
                         compact, sparsity step, dnis assign/prune); unauthenticated calls get UNAUTHENTICATED
  --auth-scope admin|all with all, every call except the health check needs the token (default admin)
  --tls-cert PEM --tls-key PEM   serve TLS (gRPC core SSL credentials) with this certificate chain and key
  --restore-checkpoint DIR   start from this shard's part of a cluster checkpoint (a checkpoints/NAME
                         directory of this shard index, e.g. copied from another cluster); --data-dir must be empty
  --follow HOST:PORT     run as a read-only follower of the primary shard at HOST:PORT (same --cluster and
                         --shard-index, its own --listen and --data-dir): copies its tables' stored rows, then
                         applies its update log as it grows; serves pulls, refuses writes (NOT_PRIMARY); lag
                         in `embedps-admin status` / table describe. Dense tables without eviction only
  --ack-replicas 0|1     1: acknowledge a push only once a follower confirmed it is in its log (a lost
                         primary host loses no acknowledged push); default 0 (the primary's own log)
  --ack-timeout-ms N     with --ack-replicas 1, answer UNAVAILABLE / NOT_REPLICATED when no follower confirmed
                         a push within N ms (default 5000); the push is applied, resend it with its request id
  --etcd http://HOST:PORT  automatic failover through etcd (v3 JSON gateway): a primary holds its shard's
                         lease and refuses writes while it cannot renew it; a follower promotes itself when
                         the lease expires (next epoch) and sends the new map to the cluster
  --etcd-prefix P        key prefix in etcd (default /embedps; one per cluster)
  --lease-ttl-seconds N  the primary lease's TTL (default 3): failover takes about this long after a crash
  --advertise HOST:PORT  this server's address as clients reach it (default the listen address and bound port)
"""

let known: Set<String> = ["cluster", "shard-index", "listen", "data-dir", "durability", "cache-rows", "read-threads", "split-threads", "log-before-pin", "log-ring-mb", "log-segment-mb", "threads", "max-message-mb", "port-file", "checkpoint-log-mb", "checkpoint-seconds", "checkpoint-snapshots", "snapshot-write-mbps", "log-recycle-mb", "metrics-port", "metrics-port-file", "auth-token-file", "auth-scope", "tls-cert", "tls-key", "restore-checkpoint", "follow", "ack-replicas", "ack-timeout-ms", "etcd", "etcd-prefix", "lease-ttl-seconds", "advertise"]
let options = Options(Array(CommandLine.arguments.dropFirst()), usage: usage, known: known)
runShardServer(options)
