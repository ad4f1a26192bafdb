#!/usr/bin/env bash
# Local launcher: starts N shard servers and M trainer workers on this machine, waits for the shards to
# report SERVING, streams every process's output with a prefix, and stops everything cleanly at the end
# (or on Ctrl-C / SIGTERM).
#
#   Cluster/local-cluster.sh [--shards N] [--workers M] [--data RATINGS.csv.gz] [--run-dir DIR]
#                            [--durability sync|async] [--bin DIR] [--hold-seconds S] [-- extra embedps-train options]
#
# The cluster spec it writes (RUN_DIR/cluster.json) is the one every process uses; the shards bind port 0
# and the launcher records the ports they got. With --workers 0 it only serves the shards, for other
# clients (e.g. python/examples/train_mf_bpr.py --cluster RUN_DIR/cluster.json), until Ctrl-C or S seconds
# (default 3600).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shards=2; workers=2; durability=async; hold=3600
data="$root/Cluster/data/goodbooks-10k-sample/ratings.csv.gz"
run_dir="$root/runs/local-$(date +%Y%m%d-%H%M%S)"
bin="$root/.build/release"
extra=()
while (($#)); do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --run-dir) run_dir="$2"; shift 2 ;;
    --durability) durability="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --hold-seconds) hold="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for b in embedps-server embedps-train embedps-admin; do
  [[ -x "$bin/$b" ]] || { echo "missing $bin/$b: run 'swift build -c release' first (or pass --bin DIR)" >&2; exit 1; }
done
[[ -f "$data" ]] || { echo "no data file $data (pass --data PATH)" >&2; exit 1; }
mkdir -p "$run_dir"
pids=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  echo "[launcher] stopped all processes; logs and data in $run_dir"
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Shards learn the slot map (shard count) from a spec with port-0 addresses, then report their ports.
server_spec="$run_dir/server-spec.json"
{ echo '{"version": 1, "shards": ['
  for ((i = 0; i < shards; i++)); do sep=$([[ $i -lt $((shards - 1)) ]] && echo , || true); echo "  {\"address\": \"127.0.0.1:0\", \"dataDir\": \"$run_dir/shard-$i\"}$sep"; done
  echo ']}'; } > "$server_spec"
for ((i = 0; i < shards; i++)); do
  rm -f "$run_dir/port-$i"
  "$bin/embedps-server" --cluster "$server_spec" --shard-index "$i" --listen 127.0.0.1:0 --durability "$durability" \
    --port-file "$run_dir/port-$i" > >(sed -u "s/^/[shard $i] /") 2>&1 &
  pids+=($!)
done
for ((i = 0; i < shards; i++)); do
  for _ in $(seq 1 300); do [[ -s "$run_dir/port-$i" ]] && break; sleep 0.1; done
  [[ -s "$run_dir/port-$i" ]] || { echo "[launcher] shard $i did not start" >&2; exit 1; }
done
spec="$run_dir/cluster.json"
{ echo '{"version": 1, "shards": ['
  for ((i = 0; i < shards; i++)); do sep=$([[ $i -lt $((shards - 1)) ]] && echo , || true); echo "  {\"address\": \"127.0.0.1:$(cat "$run_dir/port-$i")\", \"dataDir\": \"$run_dir/shard-$i\"}$sep"; done
  echo ']}'; } > "$spec"
"$bin/embedps-admin" health --cluster "$spec" | sed "s/^/[launcher] /"
if ((workers == 0)); then
  echo "[launcher] $shards shard(s) serving; no workers: the cluster spec is $spec (Ctrl-C stops the shards; at most ${hold} s)"
  sleep "$hold" & pids+=($!)
  wait $! || true
  exit 0
fi
echo "[launcher] $shards shard(s) serving; starting $workers worker(s) on $data"

wpids=()
run_name="run$(date +%s)"   # one name for all workers: their tables are RUN.user / RUN.item / RUN.progress
for ((r = 0; r < workers; r++)); do
  "$bin/embedps-train" --cluster "$spec" --data "$data" --rank "$r" --world-size "$workers" --run "$run_name" "${extra[@]}" \
    > >(sed -u "s/^/[worker $r] /" | tee "$run_dir/worker-$r.log") 2>&1 &
  wpids+=($!); pids+=($!)
done
status=0
for p in "${wpids[@]}"; do wait "$p" || status=$?; done
"$bin/embedps-admin" status --cluster "$spec" | sed "s/^/[launcher] /" || true
exit $status
