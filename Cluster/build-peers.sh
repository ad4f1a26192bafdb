#!/usr/bin/env bash
# Builds the peers embedps-bench can measure in the same pass (see `embedps-bench --help`, --peer):
#   ps-lite (shared/bench/pslite/setup.sh: apt deps, bundled source, build)  -> OUT/pslite/wbench
#   the in-process RocksDB ceiling (shared/bench/rocks_bench.cc)             -> OUT/rocks_bench
# Usage: Cluster/build-peers.sh [OUT]   (default ${TMPDIR:-/tmp}/embedps-peers; SHARED=... overrides the
# location of the shared material, default ../shared beside the repository). Prints the --peer arguments.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$(cd "$HERE/../../shared" 2>/dev/null && pwd || true)}
[ -n "$SHARED" ] && [ -f "$SHARED/bench/rocks_bench.cc" ] || { echo "shared benchmark material not found; set SHARED=/path/to/shared" >&2; exit 1; }
OUT=${1:-${TMPDIR:-/tmp}/embedps-peers}
mkdir -p "$OUT"
if [ ! -x "$OUT/pslite/wbench/bench_pslite" ]; then
  echo "building ps-lite into $OUT/pslite (a few minutes on 2 cores)"
  bash "$SHARED/bench/pslite/setup.sh" "$OUT/pslite"
fi
if [ ! -x "$OUT/rocks_bench" ] || [ "$SHARED/bench/rocks_bench.cc" -nt "$OUT/rocks_bench" ]; then
  echo "building rocks_bench"
  command -v g++ >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++; }
  g++ -O2 -std=c++17 -I"$SHARED/bench" "$SHARED/bench/rocks_bench.cc" -lrocksdb -lpthread -o "$OUT/rocks_bench"
fi
echo "--peer pslite=$OUT/pslite/wbench --peer rocks=$OUT/rocks_bench"
