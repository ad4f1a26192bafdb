#!/usr/bin/env bash
# Documented check that a real Prometheus (Debian package `prometheus`) scrapes /metrics of a shard and of
# the lookup service: starts one shard with --metrics-port and an embedps-lookup in front of it, lints both
# expositions with promtool, lets Prometheus scrape them every second, and queries it for both series. Needs a release build and `apt-get install prometheus`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; bin="$root/.build/release"
command -v prometheus >/dev/null && command -v curl >/dev/null || { echo "needs prometheus and curl: apt-get install prometheus curl" >&2; exit 1; }
work="$(mktemp -d)"; pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
echo '{"version": 1, "shards": [{"address": "127.0.0.1:0"}]}' > "$work/spec.json"
"$bin/embedps-server" --cluster "$work/spec.json" --shard-index 0 --listen 127.0.0.1:0 --data-dir "$work/shard" \
  --port-file "$work/port" --metrics-port 0 --metrics-port-file "$work/mport" > "$work/shard.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do [[ -s "$work/mport" && -s "$work/port" ]] && break; sleep 0.1; done
mport=$(cat "$work/mport"); port=$(cat "$work/port")
echo "{\"version\": 1, \"shards\": [{\"address\": \"127.0.0.1:$port\"}]}" > "$work/client.json"
"$bin/embedps-admin" table create demo --dim 8 --cluster "$work/client.json" >/dev/null
"$bin/embedps-lookup" --cluster "$work/client.json" --listen 127.0.0.1:0 --http-port 0 --port-file "$work/lport" > "$work/lookup.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do [[ -s "$work/lport" ]] && break; sleep 0.1; done
lport=$(cut -d' ' -f2 "$work/lport")
curl -s "http://127.0.0.1:$lport/v1/lookup?table=demo&ids=1,2,3" > /dev/null
echo "--- promtool check metrics (shard, lookup)"
curl -s "http://127.0.0.1:$mport/metrics" | promtool check metrics && echo "promtool: shard metrics, no problems"
curl -s "http://127.0.0.1:$lport/metrics" | promtool check metrics && echo "promtool: lookup metrics, no problems"
cat > "$work/prometheus.yml" <<YML
global: { scrape_interval: 1s }
scrape_configs:
  - job_name: embedps
    static_configs: [ { targets: ["127.0.0.1:$mport", "127.0.0.1:$lport"] } ]
YML
prom=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" --web.listen-address="127.0.0.1:$prom" \
  > "$work/prometheus.log" 2>&1 & pids+=($!)
for _ in $(seq 30); do
  answer=$(curl -s "http://127.0.0.1:$prom/api/v1/query?query=embedps_table_rows" || true)   # refused until it is up
  lookup=$(curl -s "http://127.0.0.1:$prom/api/v1/query?query=embedps_lookup_ids_total" || true)
  if grep -q '"table":"demo"' <<<"$answer" && grep -q '"value"' <<<"$lookup"; then
    echo "--- Prometheus query embedps_table_rows:"; echo "$answer"
    echo "--- Prometheus query embedps_lookup_ids_total:"; echo "$lookup"; exit 0
  fi
  sleep 1
done
echo "Prometheus did not scrape the shard and the lookup service" >&2; exit 1
