#!/usr/bin/env bash
# Many hosts on one machine: every shard, trainer worker and benchmark client runs in its own network
# namespace with its own address, all joined by one bridge; each shard's link can be capped with tbf.
# Everything it creates (namespaces, veth pairs, the bridge, processes by pid) is removed on exit or
# Ctrl-C. Only addresses inside the namespaces it created (and its bridge's) are used. Needs root.
#
#   Cluster/netns-cluster.sh [--shards N] [--workers M] [--rate 1gbit|100mbit|none] [--client-rate RATE]
#                            [--data RATINGS.csv.gz] [--run-dir DIR] [--bin DIR] [--durability sync|async]
#                            [--idle-shards K] [--bench "EMBEDPS-BENCH ARGS"] [--reshard-even-after S]
#                            [-- extra embedps-train options]
#
# Default: M trainer workers (one namespace each) train on the data against N shards (one namespace each).
# --bench "ARGS": instead of workers, runs `embedps-bench --cluster SPEC ARGS` from one client namespace
#   (its link capped with --client-rate, default none: it stands for many client hosts).
# --idle-shards K: K more shards start owning no slots (for resharding experiments); with
#   --reshard-even-after S the script runs `embedps-admin reshard even` S seconds after the bench's first
#   measurement (or S seconds into training).
# --rate caps both directions of each shard's link (tbf; this kernel has no netem, so no added latency).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shards=2; workers=2; rate=1gbit; client_rate=none; durability=async; idle=0; bench=""; reshard_after=""
data="$root/Cluster/data/goodbooks-10k-sample/ratings.csv.gz"
run_dir="$root/runs/netns-$(date +%Y%m%d-%H%M%S)"
bin="$root/.build/release"
extra=()
while (($#)); do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --client-rate) client_rate="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --run-dir) run_dir="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --durability) durability="$2"; shift 2 ;;
    --idle-shards) idle="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --reshard-even-after) reshard_after="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then echo "netns-cluster.sh needs root (network namespaces, veth, tc): run it as root" >&2; exit 77; fi
if ! command -v ip > /dev/null || ! ip netns list > /dev/null 2>&1; then
  echo "netns-cluster.sh needs 'ip netns' (iproute2: apt-get install iproute2)" >&2; exit 77
fi
if [[ "$rate$client_rate" != nonenone ]] && ! command -v tc > /dev/null; then echo "--rate needs tc (iproute2)" >&2; exit 77; fi
for b in embedps-server embedps-admin; do
  [[ -x "$bin/$b" ]] || { echo "missing $bin/$b: run 'swift build -c release' first (or pass --bin DIR)" >&2; exit 1; }
done
if [[ -z "$bench" ]]; then
  [[ -x "$bin/embedps-train" ]] || { echo "missing $bin/embedps-train (pass --bin DIR)" >&2; exit 1; }
  [[ -f "$data" ]] || { echo "no data file $data (pass --data PATH)" >&2; exit 1; }
fi
total=$((shards + idle))
((total >= 1 && total <= 60 && workers >= 0 && workers <= 60)) || { echo "1-60 shards and 0-60 workers" >&2; exit 2; }
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"

# Names and addresses of this run only: the prefix carries the launcher's pid (interface names <= 15 bytes).
tag="e$(($$ % 100000))"
bridge="${tag}br"
net="10.231.$(($$ % 250))"
namespaces=(); pids=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break; sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  echo "[netns] removed ${#namespaces[@]} namespaces and bridge $bridge; logs and data in $run_dir"
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# tbf needs a bucket of at least one timer tick of traffic: rate / 250 Hz, doubled, at least 32 KiB.
burst_for() {
  local r="$1" n unit bits
  n="${r%%[a-zA-Z]*}"; unit="${r#"$n"}"
  case "$unit" in gbit) bits=$((n * 1000000000)) ;; mbit) bits=$((n * 1000000)) ;; kbit) bits=$((n * 1000)) ;; *) echo "rate must be like 1gbit, 100mbit, 500kbit or none" >&2; exit 2 ;; esac
  local b=$((bits / 8 / 250 * 2)); ((b < 32768)) && b=32768
  echo "$b"
}
cap() {  # cap DEV [NETNS] RATE
  local dev="$1" ns="$2" r="$3"
  [[ "$r" == none ]] && return 0
  local burst; burst="$(burst_for "$r")"
  if [[ -n "$ns" ]]; then ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$r" burst "$burst" latency 50ms
  else tc qdisc add dev "$dev" root tbf rate "$r" burst "$burst" latency 50ms; fi
}

ip link add "$bridge" type bridge
ip addr add "$net.254/24" dev "$bridge"
ip link set "$bridge" up
# add_host SHORT ADDRESS RATE: a namespace with one veth into the bridge, both ends capped at RATE.
add_host() {
  local short="$1" addr="$2" r="$3" ns="${tag}-$1"
  ip netns add "$ns"; namespaces+=("$ns")
  ip link add "${tag}${short}" type veth peer name "${tag}${short}b"
  ip link set "${tag}${short}" netns "$ns"
  ip link set "${tag}${short}b" master "$bridge" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "$addr/24" dev "${tag}${short}"
  ip netns exec "$ns" ip link set "${tag}${short}" up
  cap "${tag}${short}" "$ns" "$r"
  cap "${tag}${short}b" "" "$r"
}

# The spec: shard i at $net.(10+i):7400. Idle shards own no slots until a resharding gives them some.
spec="$run_dir/cluster.json"
{ echo '{"version": 1, "shards": ['
  for ((i = 0; i < total; i++)); do sep=$([[ $i -lt $((total - 1)) ]] && echo , || true); echo "  {\"address\": \"$net.$((10 + i)):7400\", \"dataDir\": \"$run_dir/shard-$i\"}$sep"; done
  echo '],'
  echo ' "slotRanges": ['
  for ((i = 0; i < shards; i++)); do
    sep=$([[ $i -lt $((shards - 1)) ]] && echo , || true)
    echo "  {\"first\": $((i * 4096 / shards)), \"last\": $(((i + 1) * 4096 / shards - 1)), \"shard\": $i}$sep"
  done
  echo ']}'; } > "$spec"

for ((i = 0; i < total; i++)); do
  add_host "s$i" "$net.$((10 + i))" "$rate"
  ip netns exec "${tag}-s$i" "$bin/embedps-server" --cluster "$spec" --shard-index "$i" --durability "$durability" \
    --port-file "$run_dir/port-$i" > >(sed -u "s/^/[shard $i] /" > "$run_dir/shard-$i.log") 2>&1 &
  pids+=($!)
done
for ((i = 0; i < total; i++)); do
  for _ in $(seq 1 300); do [[ -s "$run_dir/port-$i" ]] && break; sleep 0.1; done
  [[ -s "$run_dir/port-$i" ]] || { echo "[netns] shard $i did not start:" >&2; tail -5 "$run_dir/shard-$i.log" >&2; exit 1; }
done
"$bin/embedps-admin" health --cluster "$spec" | sed "s/^/[netns] /"
echo "[netns] $total shard(s) serving in their own namespaces on $net.0/24 (links: ${rate}); run dir $run_dir"

reshard_later() {  # reshard_later [FILE]: counts from FILE's first "measured:" line (bounded: 600 s)
  [[ -z "$reshard_after" ]] && return 0
  local watch="${1:-}"
  ( if [[ -n "$watch" ]]; then
      for _ in $(seq 1 6000); do grep -q "measured:" "$watch" 2>/dev/null && break; sleep 0.1; done
    fi
    sleep "$reshard_after"
    echo "[netns] reshard even (live) at +${reshard_after}s"
    "$bin/embedps-admin" reshard even --cluster "$spec" --json > "$run_dir/reshard.json" 2> "$run_dir/reshard.log"
    echo "[netns] reshard done: $(tr -d '\n ' < "$run_dir/reshard.json" | head -c 300)" ) &
  reshard_pid=$!; pids+=($!)
}
reshard_pid=""

status=0
if [[ -n "$bench" ]]; then
  add_host c0 "$net.200" "$client_rate"
  : > "$run_dir/bench.err"
  reshard_later "$run_dir/bench.err"
  # shellcheck disable=SC2086
  ip netns exec "${tag}-c0" "$bin/embedps-bench" --cluster "$spec" $bench 2> >(tee "$run_dir/bench.err" >&2) || status=$?
  [[ -n "$reshard_pid" ]] && { wait "$reshard_pid" || status=$?; }
else
  reshard_later
  wpids=()
  run_name="run$(date +%s)"
  for ((r = 0; r < workers; r++)); do
    add_host "w$r" "$net.$((100 + r))" "$client_rate"
    ip netns exec "${tag}-w$r" "$bin/embedps-train" --cluster "$spec" --data "$data" --rank "$r" --world-size "$workers" --run "$run_name" "${extra[@]}" \
      > >(sed -u "s/^/[worker $r] /" | tee "$run_dir/worker-$r.log") 2>&1 &
    wpids+=($!); pids+=($!)
  done
  for p in "${wpids[@]}"; do wait "$p" || status=$?; done
  [[ -n "$reshard_pid" ]] && { wait "$reshard_pid" || status=$?; }
fi
"$bin/embedps-admin" status --cluster "$spec" | sed "s/^/[netns] /" || true
exit $status
