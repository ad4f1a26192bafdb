#!/usr/bin/env python3
"""MF-BPR trained with numpy through a running EmbedPS cluster (the Python client's pulls and pushes), with
the Swift trainer's data split, model, optimizer and evaluation: leave-last-out per user in file order,
BPR with a uniform negative the user has not seen, Adagrad (initial accumulator 0.1) on the shards,
summed gradients, test Recall@20 over every item with the user's train and validation items masked.

    Cluster/local-cluster.sh --workers 0 --run-dir runs/py &     # 2 shards, no Swift workers
    python3 python/examples/train_mf_bpr.py --cluster runs/py/cluster.json [--epochs 20] [--seed 1]
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from embedps import Client, pb  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Cluster", "data", "goodbooks-10k-sample", "ratings.csv.gz")


def load(path):
    users, items, pairs = {}, {}, []
    with gzip.open(path, "rt") as f:
        header = f.readline().strip()
        if header != "user_id,book_id,rating":
            sys.exit(f"{path}: header is '{header}', expected 'user_id,book_id,rating'")
        for line in f:
            u, i, _ = line.rstrip("\n").split(",")
            pairs.append((users.setdefault(int(u), len(users)), items.setdefault(int(i), len(items))))
    return list(users), list(items), pairs


def split(n_users, pairs):
    """Per user in file order: the last interaction is test, the one before validation (users with >= 3)."""
    by_user = [[] for _ in range(n_users)]
    for u, i in pairs:
        by_user[u].append(i)
    train, valid, test = [], {}, {}
    for u, its in enumerate(by_user):
        if len(its) >= 3:
            test[u], valid[u] = its[-1], its[-2]
            its = its[:-2]
        train += [(u, i) for i in its]
    return np.array(train, dtype=np.int64), valid, test


def recall_at_20(U, V, train_items, held, also_masked):
    hits, n = 0, 0
    for u, target in held.items():
        scores = V @ U[u]
        t = scores[target]
        mask = np.zeros(len(V), dtype=bool)
        mask[list(train_items[u])] = True
        if u in also_masked:
            mask[also_masked[u]] = True
        mask[target] = True
        rank = int(((scores >= t) & ~mask).sum())
        hits += rank < 20
        n += 1
    return hits / max(n, 1)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--cluster", required=True)
    a.add_argument("--data", default=SAMPLE)
    a.add_argument("--epochs", type=int, default=20)
    a.add_argument("--dim", type=int, default=32)
    a.add_argument("--batch", type=int, default=1024)
    a.add_argument("--lr", type=float, default=0.05)
    a.add_argument("--l2", type=float, default=1e-4)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--json", action="store_true")
    o = a.parse_args()
    user_ids, item_ids, pairs = load(o.data)
    train, valid, test = split(len(user_ids), pairs)
    train_items = [set() for _ in user_ids]
    for u, i in train:
        train_items[u].add(int(i))
    uids, iids = np.array(user_ids, dtype=np.uint64), np.array(item_ids, dtype=np.uint64)
    run = f"py{int(time.time())}s{o.seed}"
    rng = np.random.default_rng(o.seed)
    with Client(o.cluster) as c:
        for name in ("user", "item"):
            c.create_table(pb.TableSpec(name=f"{run}.{name}", dim=o.dim, hash_mode=pb.COLLISION_FREE,
                                        optimizer=pb.OptimizerConfig(kind=pb.ADAGRAD, learning_rate=o.lr, initial_accumulator=0.1),
                                        initializer=pb.InitializerConfig(kind=pb.NORMAL, mean=0, stddev=0.1, seed=o.seed)))
        started = time.time()
        for epoch in range(o.epochs):
            order = rng.permutation(len(train))
            loss = 0.0
            for b in range(0, len(order), o.batch):
                batch = train[order[b:b + o.batch]]
                users, pos = batch[:, 0], batch[:, 1]
                neg = rng.integers(0, len(item_ids), len(batch))
                for k in range(len(batch)):   # a negative the user has not seen in train
                    while int(neg[k]) in train_items[users[k]]:
                        neg[k] = rng.integers(0, len(item_ids))
                P = c.pull(f"{run}.user", uids[users])
                Qi, Qj = c.pull(f"{run}.item", iids[pos]), c.pull(f"{run}.item", iids[neg])
                x = np.einsum("nd,nd->n", P, Qi - Qj)
                g = (1 / (1 + np.exp(-x)) - 1)[:, None]
                loss += float(np.logaddexp(0, -x).sum())
                gu = g * (Qi - Qj) + 2 * o.l2 * P
                gi, gj = g * P + 2 * o.l2 * Qi, -g * P + 2 * o.l2 * Qj
                c.push(f"{run}.user", uids[users], gu)
                c.push(f"{run}.item", np.concatenate([iids[pos], iids[neg]]), np.concatenate([gi, gj]))
            if not o.json:
                print(f"epoch {epoch + 1}/{o.epochs}: loss {loss / len(train):.4f}", flush=True)
        U, V = c.pull(f"{run}.user", uids), c.pull(f"{run}.item", iids)
        seconds = time.time() - started
        result = {"seed": o.seed, "epochs": o.epochs, "seconds": seconds,
                  "validationRecallAt20": recall_at_20(U, V, train_items, valid, {}),
                  "testRecallAt20": recall_at_20(U, V, train_items, test, {u: [i] for u, i in valid.items()})}
        for name in ("user", "item"):
            c.drop_table(f"{run}.{name}")
    print(json.dumps(result) if o.json else f"test Recall@20 {result['testRecallAt20']:.4f} (validation {result['validationRecallAt20']:.4f}) in {seconds:.1f} s")


if __name__ == "__main__":
    main()
