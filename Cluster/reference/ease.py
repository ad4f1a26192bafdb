#!/usr/bin/env python3
"""Single-machine reference for issue 16: EASE (Steck 2019) on the trainer's own split, optionally with the
user's train items weighted by recency.

Split, candidates and metrics are the trainer's (Sources/Training): per user in file order the last
interaction is test, the one before it validation (users with >= 3 interactions), the rest train; every item
is ranked, the user's train items excluded (and the validation item at test); tail = held-out items outside
the 20% most popular train items. Scores: x_u B with B the EASE item-item matrix for L2 strength lambda, and
with --recency, (x_u + alpha r_u) B where r_ui = decay^(steps from the end of u's train sequence to its last
interaction with i). Every setting is printed with validation and test Recall@20; choose on validation.

    python3 Cluster/reference/ease.py ../shared/data/goodbooks-10k/ratings.csv.gz --lambdas 100,300,1000 \
        --recency 0.5,0.8,0.9 --alphas 1,3,10

Needs numpy; about a minute per lambda on 2 cores for the full goodbooks data (10k x 10k inverse).
"""
import argparse
import gzip

import numpy as np


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        header = f.readline().strip()
        if header != "user_id,book_id,rating":
            raise SystemExit(f"{path}: header is '{header}', expected 'user_id,book_id,rating'")
        rows = [tuple(int(float(x)) for x in line.split(",")[:2]) for line in f if line.strip()]
    users = {u: k for k, u in enumerate(sorted({u for u, _ in rows}))}
    items = {i: k for k, i in enumerate(sorted({i for _, i in rows}))}
    sequences = [[] for _ in users]
    for u, i in rows:
        sequences[users[u]].append(items[i])
    return sequences, len(items)


def recall_at_20(scores, train, held_out, exclude, tail):
    s = scores.copy()
    s[train > 0] = -np.inf
    for u, i in exclude:
        s[u, i] = -np.inf
    top = np.argpartition(-s, 20, axis=1)[:, :20]
    hits = [(i in top[u], i in tail) for u, i in held_out]
    return np.mean([h for h, _ in hits]), np.mean([h for h, t in hits if t])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ratings")
    p.add_argument("--lambdas", default="300")
    p.add_argument("--recency", default="", help="decays, e.g. 0.5,0.8 (empty = plain EASE only)")
    p.add_argument("--alphas", default="1,3,10")
    a = p.parse_args()
    sequences, n_items = load(a.ratings)
    n_users = len(sequences)
    train = np.zeros((n_users, n_items), np.float32)
    validation, test, train_seq = [], [], []
    for u, s in enumerate(sequences):
        t = s[:-2] if len(s) >= 3 else s
        if len(s) >= 3:
            validation.append((u, s[-2]))
            test.append((u, s[-1]))
        train_seq.append(t)
        train[u, t] = 1
    popularity = np.zeros(n_items)
    for t in train_seq:
        for i in t:
            popularity[i] += 1
    tail = set(np.argsort(-popularity, kind="stable")[int(0.2 * n_items):].tolist())
    gram = train.T @ train
    print(f"{n_users} users, {n_items} items, {int(train.sum())} distinct train pairs, "
          f"{len(validation)} validation / {len(test)} test users")
    print(f"{'model':<34} {'val R@20':>9} {'test R@20':>9} {'test tail':>9}")
    for lam in [float(x) for x in a.lambdas.split(",")]:
        inv = np.linalg.inv(gram + lam * np.eye(n_items, dtype=np.float32))
        b = -inv / np.diag(inv)
        np.fill_diagonal(b, 0)

        def report(name, x):
            s = x @ b
            v, _ = recall_at_20(s, train, validation, [], tail)
            t, tt = recall_at_20(s, train, test, validation, tail)
            print(f"{name:<34} {v:9.4f} {t:9.4f} {tt:9.4f}", flush=True)

        report(f"EASE lambda {lam:g}", train)
        for decay in [float(x) for x in a.recency.split(",") if x]:
            r = np.zeros_like(train)
            for u, t in enumerate(train_seq):
                for k, i in enumerate(t):
                    r[u, i] = decay ** (len(t) - 1 - k)  # the last occurrence wins
            for alpha in [float(x) for x in a.alphas.split(",")]:
                report(f"EASE {lam:g} + recency {decay:g} x {alpha:g}", train + alpha * r)


if __name__ == "__main__":
    main()
