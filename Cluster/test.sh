#!/usr/bin/env bash
# The test command of README.md: installs dependencies, checks the generated wire code (Swift and Python) is
# fresh and that the client library links no storage, runs every unit and integration test (integration
# tests start real shard processes on 127.0.0.1), then the Python client's tests against real shards.
set -euo pipefail
cd "$(dirname "$0")/.."
Cluster/install-deps.sh
Protos/generate.sh --check
Cluster/check-module-graph.sh
/usr/bin/python3 python/generate_stubs.py --check
swift build --build-tests
swift test --skip-build
# The Python client against real shards (Debian's interpreter: python3-grpcio, -numpy, -xxhash, -pytest).
EMBEDPS_BIN="$(swift build --show-bin-path)" /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
