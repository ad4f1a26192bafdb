#!/usr/bin/env python3
"""Pull and push rows/s of the Python client against a running cluster, the way `embedps-bench --cluster`
measures the Swift client (uniform batches of distinct ids, one call at a time), for a same-pass ratio.

    python3 python/bench.py --cluster SPEC.json [--rows 1000000] [--dim 64] [--batch 4096] [--seconds 3] [--json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from embedps import Client, pb  # noqa: E402


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--cluster", required=True)
    a.add_argument("--rows", type=int, default=1_000_000)
    a.add_argument("--dim", type=int, default=64)
    a.add_argument("--batch", type=int, default=4096)
    a.add_argument("--seconds", type=float, default=3)
    a.add_argument("--table", default="py_bench")
    a.add_argument("--json", action="store_true")
    o = a.parse_args()
    rng = np.random.default_rng(7)
    batches = [np.unique(rng.integers(0, o.rows, o.batch, dtype=np.uint64)) for _ in range(64)]
    grads = [rng.standard_normal((len(b), o.dim)).astype(np.float32) * 0.01 for b in batches]
    results = {}
    with Client(o.cluster) as c:
        c.create_table(pb.TableSpec(name=o.table, dim=o.dim, hash_mode=pb.COLLISION_FREE,
                                    optimizer=pb.OptimizerConfig(kind=pb.SGD, learning_rate=0.01),
                                    initializer=pb.InitializerConfig(kind=pb.UNIFORM, low=-0.05, high=0.05, seed=1)))
        for b, g in zip(batches, grads):   # warm: every batch's rows exist and are cached
            c.push(o.table, b, g)
        for op in ("pull", "push"):
            rows, k, start = 0, 0, time.perf_counter()
            while time.perf_counter() - start < o.seconds:
                b = batches[k % len(batches)]
                if op == "pull":
                    c.pull(o.table, b)
                else:
                    c.push(o.table, b, grads[k % len(grads)])
                rows += len(b)
                k += 1
            results[op] = rows / (time.perf_counter() - start)
    if o.json:
        print(json.dumps(results))
    else:
        for op, r in results.items():
            print(f"python {op}: {r:,.0f} rows/s")


if __name__ == "__main__":
    main()
