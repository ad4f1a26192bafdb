#!/usr/bin/env bash
# Fails when a module links what its layer must not: the client library, the trainer and the lookup service
# depend on the wire, the vocabulary and the gRPC bridge only; none may link RocksDB, and the client library
# may not link SentencePiece either. Reads the target graph from `swift package describe`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift package describe --type json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
targets = {t["name"]: t.get("target_dependencies", []) + t.get("product_dependencies", []) for t in json.load(sys.stdin)["targets"]}
def closure(name, seen=None):
    seen = set() if seen is None else seen
    for d in targets.get(name, []):
        if d not in seen:
            seen.add(d); closure(d, seen)
    return seen
rules = {"Client": {"CRocksDB", "Storage", "Engine", "CSentencePiece", "SemanticTokenizers"},
         "Vocabulary": {"CRocksDB", "Storage", "Engine", "RPC", "CGRPC"},
         "Training": {"CRocksDB", "Storage", "Engine", "Server"},
         "Lookup": {"CRocksDB", "Storage", "Engine", "Server"}}
bad = [f"{m} depends on {sorted(closure(m) & banned)}" for m, banned in rules.items() if closure(m) & banned]
if bad:
    sys.exit("module graph check failed: " + "; ".join(bad))
print("module graph: Client, Vocabulary, Training and Lookup link no storage")
'
