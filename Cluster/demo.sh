#!/usr/bin/env bash
# The main job of README.md: installs dependencies, builds EmbedPS (release), and trains MF-BPR on the bundled
# goodbooks-10k sample on a local cluster of 2 shards and 2 trainer workers, with progress and final metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
Cluster/install-deps.sh
echo "building EmbedPS (release)..."
swift build -c release 2>&1 | grep -E "error|warning: unre|Compiling|Build complete" | grep -v "^\[" || true
swift build -c release >/dev/null
exec Cluster/local-cluster.sh --shards 2 --workers 2 "$@"
