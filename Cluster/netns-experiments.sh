#!/usr/bin/env bash
# The many-hosts scaling experiments (README "Many hosts on one machine"), each run through
# Cluster/netns-cluster.sh (every shard, worker and client in its own network namespace). Writes one JSON
# file per experiment and an SVG plot of each into OUT (default Cluster/results/netns). Needs root and a
# release build. About 15 minutes on 2 cores.
#
#   Cluster/netns-experiments.sh [--out DIR] [--only shards|trainer|reshard] [--data RATINGS.csv.gz]
#
#   shards   1, 2, 4, 8 shards, each behind a 1 Gbit link (and again at 100 Mbit): aggregate pull and push
#            rows/s from 2 x shards clients (at least 4) against the sum of the link bounds
#   trainer  full goodbooks, 1, 2, 4 workers x 2, 4 shards behind 1 Gbit links: epoch time, Recall@20
#            (and three seeds of one layout for the seed noise)
#   reshard  live resharding 2 -> 4 shards behind 100 Mbit links under push load: time to move and the
#            throughput series before, during and after
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/Cluster/results/netns"; only=""; data="/work/shared/data/goodbooks-10k/ratings.csv.gz"
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f "$data" ]] || data="$root/Cluster/data/goodbooks-10k-sample/ratings.csv.gz"
mkdir -p "$out"
work="$(mktemp -d /tmp/embedps-netns-XXXXXX)"
trap 'rm -rf "$work"' EXIT
launcher="$root/Cluster/netns-cluster.sh"
rows=400000; dim=64

# The JSON object a tool printed on stdout (pretty-printed, starting with "{" at column 0).
json_of() { sed 's/^\[worker 0\] //' "$1" | awk '/^\{/{f=1} f{print} /^\}/{if(f) exit}'; }

if [[ -z "$only" || "$only" == shards ]]; then
  echo "== shards: aggregate throughput against link bounds"
  echo "[" > "$out/shards.json"; first=1
  for rate in 1gbit 100mbit; do
    for n in 1 2 4 8; do
      clients=$((2 * n)); ((clients < 4)) && clients=4
      echo "-- $n shard(s) at $rate, $clients clients"
      "$launcher" --shards "$n" --rate "$rate" --run-dir "$work/shards-$rate-$n" \
        --bench "--no-redis --json --rows $rows --dim $dim --optimizer sgd --ops pull,push --dists uniform --clients $clients --pipeline 0 --reps 1 --seconds 4" \
        > "$work/out" 2> "$work/err" || { tail -20 "$work/err" >&2; exit 1; }
      ((first)) || echo "," >> "$out/shards.json"; first=0
      printf '{"rate": "%s", "shards": %d, "clients": %d, "dim": %d, "bench": ' "$rate" "$n" "$clients" "$dim" >> "$out/shards.json"
      json_of "$work/out" >> "$out/shards.json"
      echo "}" >> "$out/shards.json"
    done
  done
  echo "]" >> "$out/shards.json"
fi

if [[ -z "$only" || "$only" == trainer ]]; then
  echo "== trainer: layouts on $(basename "$data")"
  echo "[" > "$out/trainer.json"; first=1
  runs=("2 1 1" "2 2 1" "2 4 1" "4 1 1" "4 2 1" "4 4 1" "2 1 2" "2 1 3")
  for r in "${runs[@]}"; do
    read -r s w seed <<< "$r"
    echo "-- $s shards x $w workers, seed $seed"
    "$launcher" --shards "$s" --workers "$w" --rate 1gbit --data "$data" --run-dir "$work/train-$s-$w-$seed" -- --epochs 20 --seed "$seed" --json \
      > "$work/out" 2> "$work/err" || { tail -20 "$work/out" "$work/err" >&2; exit 1; }
    ((first)) || echo "," >> "$out/trainer.json"; first=0
    printf '{"shards": %d, "workers": %d, "seed": %d, "report": ' "$s" "$w" "$seed" >> "$out/trainer.json"
    json_of "$work/train-$s-$w-$seed/worker-0.log" >> "$out/trainer.json"
    echo "}" >> "$out/trainer.json"
  done
  echo "]" >> "$out/trainer.json"
fi

if [[ -z "$only" || "$only" == reshard ]]; then
  echo "== reshard: 2 -> 4 shards live at 100 Mbit under push load"
  "$launcher" --shards 2 --idle-shards 2 --rate 100mbit --run-dir "$work/reshard" --reshard-even-after 8 \
    --bench "--no-redis --json --rows $rows --dim $dim --optimizer sgd --ops push --dists uniform --clients 8 --pipeline 0 --reps 24 --seconds 2" \
    > "$work/out" 2> "$work/err" || { tail -20 "$work/err" >&2; exit 1; }
  python3 - "$work/err" "$work/reshard/reshard.json" "$work/out" > "$out/reshard.json" <<'PY'
import json, re, sys
series = [{"t": float(m.group(1)), "rowsPerSecond": float(m.group(2))}
          for m in (re.search(r"measured: .* at \+([0-9.]+) s: ([0-9.]+) rows/s", l) for l in open(sys.argv[1])) if m]
reshard = json.load(open(sys.argv[2]))
# The launcher starts the resharding 8 s after the bench's first measurement line (series[0]).
start = series[0]["t"] + 8 if series else 0
print(json.dumps({"series": series, "reshard": reshard, "reshardStart": start, "reshardEnd": start + reshard["seconds"]}, indent=1))
PY
fi
python3 "$root/Cluster/plot-netns.py" "$out"
echo "results and plots in $out"
