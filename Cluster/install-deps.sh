#!/usr/bin/env bash
# Installs the Debian packages EmbedPS builds, tests and runs with. Idempotent; needs root (or sudo).
set -euo pipefail
packages=(
  libgrpc-dev            # gRPC C core (the wire)
  librocksdb-dev         # shard storage
  protobuf-compiler libprotobuf-dev python3-protobuf        # Protos/generate.sh (protoc, descriptor.proto, the generator)
  libxxhash-dev          # the pinned hash
  openssl                # test certificates for the TLS test
  libmicrohttpd-dev      # /metrics and /healthz endpoints
  libopenblas-dev        # trainer matrix products, k-means distances
  libsentencepiece-dev   # SentencePiece tokenizer of semantic IDs
  python3-grpcio python3-grpc-tools python3-protobuf         # the independent-client test
  python3-numpy          # the export test reads the .npy files with NumPy
  python3-xxhash python3-pytest                              # the Python client (python/) and its tests
  redis-server           # embedps-bench baseline
  etcd-server            # automatic failover (--etcd); the failover test starts its own etcd
  iproute2               # Cluster/netns-cluster.sh (ip netns, tc)
  zlib1g-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
