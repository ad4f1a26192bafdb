#!/usr/bin/env bash
# Regenerates the Swift message layer and RPC method tables of the wire contract from Protos/*.proto.
#   Protos/generate.sh            write into Sources/EmbedPSWire/generated
#   Protos/generate.sh --check    fail when the checked-in code differs from what the generator makes now
# Needs protoc (protobuf-compiler), Debian's python3-protobuf and descriptor.proto (libprotobuf-dev);
# Cluster/install-deps.sh installs them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/Sources/EmbedPSWire/generated"
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
[ -f /usr/include/google/protobuf/descriptor.proto ] || { echo "descriptor.proto not found: apt-get install libprotobuf-dev" >&2; exit 1; }
/usr/bin/python3 -c "import google.protobuf" 2>/dev/null || { echo "python3-protobuf not found: apt-get install python3-protobuf" >&2; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
protoc -I"$root/Protos" -I/usr/include --include_source_info --descriptor_set_out="$tmp/descriptors.pb" embedps.proto health.proto
mkdir -p "$tmp/swift"
/usr/bin/python3 "$root/Protos/swiftgen.py" "$tmp/descriptors.pb" "$tmp/swift"
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r "$tmp/swift" "$out" >/dev/null; then
    echo "generated wire code is stale: run Protos/generate.sh and commit the result" >&2
    diff -r "$tmp/swift" "$out" | head -20 >&2
    exit 1
  fi
  echo "generated wire code is up to date"
else
  mkdir -p "$out"; rm -f "$out"/*.swift
  cp "$tmp/swift"/*.swift "$out"/
  echo "wrote $(ls "$out" | wc -l) files to ${out#$root/}"
fi
