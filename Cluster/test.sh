#!/usr/bin/env bash
# The test command of README.md: installs dependencies, checks the generated wire code is fresh and that the
# client library links no storage, runs every unit and integration test (integration tests start real
# shard processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
Cluster/install-deps.sh
Protos/generate.sh --check
Cluster/check-module-graph.sh
swift build --build-tests
swift test --skip-build
