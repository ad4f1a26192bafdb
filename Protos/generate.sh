#!/usr/bin/env bash
# Regenerates the protobuf-c code of the wire contract.
#   Protos/generate.sh            write into Sources/EmbedPSWireC/generated
#   Protos/generate.sh --check    fail when the checked-in code differs from what protoc-c makes now
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/Sources/EmbedPSWireC/generated"
command -v protoc-c >/dev/null || { echo "protoc-c not found: apt-get install protobuf-c-compiler" >&2; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$root/Protos" && protoc-c --c_out="$tmp" embedps.proto health.proto)
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r "$tmp" "$out" >/dev/null; then
    echo "generated protobuf-c code is stale: run Protos/generate.sh and commit the result" >&2
    diff -r "$tmp" "$out" | head -20 >&2
    exit 1
  fi
  echo "generated protobuf-c code is up to date"
else
  mkdir -p "$out"; rm -f "$out"/*.pb-c.[ch]
  cp "$tmp"/*.pb-c.[ch] "$out"/
  echo "wrote $(ls "$out" | wc -l) files to ${out#$root/}"
fi
