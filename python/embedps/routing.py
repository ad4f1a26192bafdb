"""Routing of ids to shards, exactly as the shards own them (ROUTING in Protos/embedps.proto):

    row_key = id                                        COLLISION_FREE tables
    row_key = XXH64(id as 8 LE bytes, hash_seed) % row_budget   FIXED_BUDGET tables
    slot    = XXH64(row_key as 8 LE bytes, XXH64(table name)) % 4096
    shard   = owner of the slot in the shard map

XXH64 of one 8-byte input is a fixed sequence of multiplies and rotates, computed here over whole numpy
arrays (uint64 arithmetic wraps modulo 2**64); the table seed comes from the xxhash package.
"""
import numpy as np
import xxhash

SLOTS = 4096
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = 0x27D4EB2F165667C5


def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def xxh64_u64(values, seed):
    """XXH64 of each value's 8 little-endian bytes with `seed`, vectorized (equals xxhash.xxh64_intdigest)."""
    v = np.asarray(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(v.shape, (int(seed) + _P5 + 8) % (1 << 64), dtype=np.uint64)
        k1 = _rotl(v * _P2, 31) * _P1
        h ^= k1
        h = _rotl(h, 27) * _P1 + _P4
        h ^= h >> np.uint64(33)
        h *= _P2
        h ^= h >> np.uint64(29)
        h *= _P3
        h ^= h >> np.uint64(32)
    return h


def table_seed(name):
    return xxhash.xxh64_intdigest(name.encode("utf-8"), 0)


class TableRoute:
    """How a table's ids become row keys and slots (from its spec: hash mode, seed, row budget)."""

    def __init__(self, name, dim, fixed_budget=False, hash_seed=0, row_budget=0):
        self.name, self.dim = name, dim
        self.seed = table_seed(name)
        self.fixed_budget, self.hash_seed, self.row_budget = fixed_budget, hash_seed, row_budget

    def row_keys(self, ids):
        ids = np.asarray(ids, dtype=np.uint64)
        if self.fixed_budget:
            return xxh64_u64(ids, self.hash_seed) % np.uint64(self.row_budget)
        return ids

    def slots(self, ids):
        return (xxh64_u64(self.row_keys(ids), self.seed) % np.uint64(SLOTS)).astype(np.int64)


class ShardMap:
    """The shard map (cluster-spec JSON): shard addresses, their followers, and the owner of every slot."""

    def __init__(self, spec):
        self.version = int(spec.get("version", 1))
        self.shards = [s["address"] for s in spec["shards"]]
        self.followers = [list(s.get("followers") or []) for s in spec["shards"]]
        owners = np.full(SLOTS, -1, dtype=np.int64)
        ranges = spec.get("slotRanges")
        if ranges is None:
            owners = (np.arange(SLOTS) * len(self.shards)) // SLOTS
        else:
            for r in ranges:
                owners[r["first"]:r["last"] + 1] = r["shard"]
            if (owners < 0).any():
                raise ValueError(f"slot {int(np.argmax(owners < 0))} has no owner in the shard map")
        self.owners = owners
        self.spec = spec

    def all_addresses(self):
        return self.shards + [f for fs in self.followers for f in fs]
