"""The Python client against real shards: routing equal to the shards' (and the Swift client's), rows
pushed from Python read by the Swift tools and the reverse, typed errors with the shards' reasons, and a
push retried with its request id applied once."""
import os

import numpy as np
import pytest
import xxhash

from embedps import Client, errors, pb
from embedps.routing import xxh64_u64


def sgd_table(name, dim, lr=1.0):
    return pb.TableSpec(name=name, dim=dim, hash_mode=pb.COLLISION_FREE,
                        optimizer=pb.OptimizerConfig(kind=pb.SGD, learning_rate=lr), initializer=pb.InitializerConfig(kind=pb.ZEROS))


def test_vectorized_xxh64_equals_the_xxhash_package():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(0, 2**63, 2000, dtype=np.uint64) * np.uint64(2) + np.uint64(1), np.array([0, 2**64 - 1], dtype=np.uint64)])
    for seed in (0, 1, 2**64 - 1, xxhash.xxh64_intdigest(b"users", 0)):
        mine = xxh64_u64(values, seed)
        assert [int(x) for x in mine] == [xxhash.xxh64_intdigest(int(v).to_bytes(8, "little"), seed) for v in values]


def test_pull_push_dedup_order_and_routing(cluster):
    with Client(cluster.spec_path) as c:
        assert c.health() == [True, True]
        c.create_table(sgd_table("py_rows", 4))
        ids = np.array([5, 3, 5, 9, 3, 5], dtype=np.uint64)
        grads = np.arange(24, dtype=np.float32).reshape(6, 4)
        assert c.push("py_rows", ids, grads) == 3
        expected = {5: -(grads[0] + grads[2] + grads[5]), 3: -(grads[1] + grads[4]), 9: -grads[3]}
        rows = c.pull("py_rows", [9, 5, 3, 5, 1000])
        np.testing.assert_array_equal(rows, np.stack([expected[9], expected[5], expected[3], expected[5], np.zeros(4, np.float32)]))
        # 20,000 distinct ids: every part went to the owner the shards agree on, and each shard stores
        # exactly the rows the client's routing gave it.
        many = np.arange(1, 20001, dtype=np.uint64) * np.uint64(2654435761)
        c.push("py_rows", many, np.ones((len(many), 4), np.float32))
        assert c.misrouted_parts == 0
        owners = c.shard_map.owners[c._route("py_rows").slots(many)]
        stats = c.describe("py_rows")
        for s, st in enumerate(stats):
            assert st.rows == int((owners == s).sum()) + sum(1 for i in (5, 3, 9) if owners_of(c, "py_rows", i) == s)


def owners_of(c, table, i):
    return int(c.shard_map.owners[c._route(table).slots(np.array([i], dtype=np.uint64))][0])


def test_rows_cross_between_python_and_the_swift_tools(cluster, tmp_path):
    with Client(cluster.spec) as c:
        c.create_table(sgd_table("py_interop", 3))
        ids = np.arange(100, 400, dtype=np.uint64)
        c.push("py_interop", ids, np.random.default_rng(2).standard_normal((len(ids), 3)).astype(np.float32))
        # Python -> Swift: embedps-admin export reads what Python pushed.
        status, out = cluster.admin("export", "py_interop", "--out", str(tmp_path / "x"))
        assert status == 0, out
        keys = np.load(tmp_path / "x.ids.npy")
        values = np.load(tmp_path / "x.values.npy")
        np.testing.assert_array_equal(values, c.pull("py_interop", keys))
        assert sorted(keys.tolist()) == ids.tolist()
        # Swift -> Python: embedps-admin import sets rows that Python pulls.
        new_values = np.random.default_rng(3).standard_normal((50, 3)).astype(np.float32)
        np.save(tmp_path / "y.ids.npy", np.arange(5000, 5050, dtype=np.uint64))
        np.save(tmp_path / "y.values.npy", new_values)
        status, out = cluster.admin("import", "py_interop", "--in", str(tmp_path / "y"))
        assert status == 0, out
        np.testing.assert_array_equal(c.pull("py_interop", np.arange(5000, 5050)), new_values)


def test_errors_are_typed_with_the_shards_reasons(cluster):
    with Client(cluster.spec) as c:
        c.create_table(sgd_table("py_errors", 2))
        with pytest.raises(errors.NotFound) as e:
            c.pull("py_missing", [1])
        assert e.value.reason == "UNKNOWN_TABLE"
        with pytest.raises(errors.InvalidArgument) as e:
            c.push("py_errors", [1], [[float("nan"), 0.0]])
        assert e.value.reason == "NON_FINITE"
        with pytest.raises(errors.AlreadyExists):
            c.create_table(sgd_table("py_errors", 3))
        # The Swift tool reports the same status for the same bad request.
        status, out = cluster.admin("table", "describe", "py_missing")
        assert status != 0 and "NOT_FOUND" in out, out
        np.testing.assert_array_equal(c.pull("py_errors", [1]), np.zeros((1, 2), np.float32))


def test_a_push_resent_with_its_request_id_applies_once(cluster):
    with Client(cluster.spec) as c:
        c.create_table(sgd_table("py_once", 2))
        shard = owners_of(c, "py_once", 77)
        req = pb.PushRequest(table="py_once", ids=[77], gradients=np.array([-1, -2], "<f4").tobytes())
        rid = c.next_request_id()
        first = c._call(shard, "Push", req, request_id=rid)
        again = c._call(shard, "Push", req, request_id=rid)
        assert first.rows_updated == again.rows_updated == 1
        np.testing.assert_array_equal(c.pull("py_once", [77]), [[1, 2]])
        c._call(shard, "Push", req, request_id=c.next_request_id())
        np.testing.assert_array_equal(c.pull("py_once", [77]), [[2, 4]])


def test_pooled_rows_of_a_semantic_table(cluster):
    with Client(cluster.spec) as c:
        spec = sgd_table("py_semantic", 2)
        spec.semantic.CopyFrom(pb.SemanticConfig(tokenizer=pb.UNIGRAM, levels=2, codebook_size=4, budget=64))
        c.create_table(spec)
        # Item 1 = pieces (level 0, code 0) and (1, 1); item 2 shares (0, 0) and has (1, 2).
        assert c.register_items("py_semantic", [1, 2], [[0, 1], [0, 2]]) == 2
        c.push_pooled("py_semantic", [1], [[1.0, 2.0]])
        pooled = c.pull_pooled("py_semantic", [1, 2])
        np.testing.assert_array_equal(pooled, [[-2, -4], [-1, -2]])
        with pytest.raises(errors.NotFound):
            c.pull_pooled("py_semantic", [3])


def test_a_partly_applied_push_names_the_failed_part_and_resend_applies_it_once(cluster):
    with Client(cluster.spec_path, retry_seconds=0.3) as c:
        c.create_table(sgd_table("py_partial", 2))
        ids = np.arange(1, 3001, dtype=np.uint64) * np.uint64(2654435761)
        owners = c.shard_map.owners[c._route("py_partial").slots(ids)]
        on1 = set(int(i) for i in ids[owners == 1])
        assert 0 < len(on1) < len(ids)
        shard1 = c._stub(c.shard_map.shards[1])[1]
        shard1.Freeze(pb.CheckpointRequest(name="hold", freeze_seconds=60))
        try:
            with pytest.raises(errors.PartialPush) as caught:
                c.push("py_partial", ids, np.ones((len(ids), 2), np.float32))
        finally:
            shard1.Thaw(pb.CheckpointRequest(name="hold"))
        e = caught.value
        assert e.ids_acknowledged == len(ids) - len(on1) and e.reason == "FROZEN"
        assert [p.shard for p in e.failed] == [1] and e.failed[0].known_not_applied and e.failed[0].request_id
        assert set(int(i) for i in e.failed[0].ids) == on1
        assert c.resend(e) == len(on1)
        assert c.resend(e) == len(on1)   # again under the same request id: answered, not applied twice
        np.testing.assert_array_equal(c.pull("py_partial", ids), -np.ones((len(ids), 2), np.float32))
