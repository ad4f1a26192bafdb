"""The EmbedPS client for Python: pulls and pushes of id batches split by owning shard and sent in parallel,
with the same routing, de-duplication, request ids and retry rules as the Swift client (see ROUTING, PUSH
REQUEST IDS, STATUS CODES and FAILOVER AND EPOCHS in Protos/embedps.proto)."""
import itertools
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from . import errors
from ._generated import embedps_pb2 as pb
from ._generated import embedps_pb2_grpc as rpc
from ._generated import health_pb2 as hpb
from ._generated import health_pb2_grpc as hrpc
from .routing import ShardMap, TableRoute

# Whether a call may be sent again when its outcome is unknown: the `retry` option of each RPC in the proto.
_SHARD = pb.DESCRIPTOR.services_by_name["Shard"]
_RETRY_SAFE = {m.name for m in _SHARD.methods if m.GetOptions().Extensions[pb.retry] == pb.RETRY_SAFE}
_WITH_REQUEST_ID = {m.name for m in _SHARD.methods if m.GetOptions().Extensions[pb.retry] == pb.RETRY_WITH_REQUEST_ID}
_MAX_MAP_REFRESHES = 64


class Client:
    """A client of one EmbedPS cluster. `cluster`: a cluster-spec path or dict ({"version", "shards":
    [{"address", "followers"?}], "slotRanges"?}). Thread-safe: any number of threads may share one client.

    pull(table, ids) -> float32 array (n, dim); push(table, ids, grads) -> rows updated; pull_pooled /
    push_pooled for semantic tables; create_table / describe / list_tables / drop_table / health.
    Failures raise one `errors.EmbedPSError` subclass per status."""

    def __init__(self, cluster, token=None, timeout=30.0, retry_seconds=30.0, max_message_bytes=64 << 20, workers=16):
        spec = cluster if isinstance(cluster, dict) else json.load(open(cluster))
        self._map = ShardMap(spec)
        self._timeout, self._retry_seconds = timeout, retry_seconds
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._options = [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]
        self._stubs, self._routes = {}, {}
        self._lock = threading.Lock()
        self._client_id = random.getrandbits(64) or 1
        self._counter = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=workers)
        #: Parts of pulls and pushes a shard refused as not its own (WRONG_SHARD) and that were resent.
        self.misrouted_parts = 0

    def close(self):
        self._pool.shutdown(wait=True)
        with self._lock:
            for channel, _, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- connections, request ids, one call with the contract's retry rules

    def _stub(self, address):
        with self._lock:
            if address not in self._stubs:
                channel = grpc.insecure_channel(address, options=self._options)
                self._stubs[address] = (channel, rpc.ShardStub(channel), hrpc.HealthStub(channel))
            return self._stubs[address]

    def next_request_id(self):
        """A fresh push request id (x-embedps-request-id): this client's 64 random bits, then a counter."""
        return f"{self._client_id:016x}{next(self._counter):016x}"

    @property
    def shard_map(self):
        with self._lock:
            return self._map

    def _call(self, shard, method, request, request_id=None):
        """One call to shard index `shard`: a shard's own UNAVAILABLE is retried, a transport failure only for
        retry-safe methods or pushes with their request id, NOT_PRIMARY after a map refresh; backoff doubles
        from 50 ms to 1 s, for retry_seconds at most."""
        metadata = self._metadata + ([("x-embedps-request-id", request_id)] if request_id else [])
        deadline = time.monotonic() + self._retry_seconds
        backoff, attempt = 0.05, 1
        while True:
            address = self.shard_map.shards[shard]
            try:
                return getattr(self._stub(address)[1], method)(request, timeout=self._timeout, metadata=metadata)
            except grpc.RpcError as e:
                err = errors.from_rpc_error(e, address)
                not_primary = err.reason == "NOT_PRIMARY"
                transport = err.code == grpc.StatusCode.UNAVAILABLE and err.detail is None
                retry = not_primary or (err.code == grpc.StatusCode.UNAVAILABLE and (
                    err.detail is not None or method in _RETRY_SAFE or (method in _WITH_REQUEST_ID and request_id)))
                if not retry or time.monotonic() > deadline:
                    raise err from None
                if not_primary or (transport and attempt >= 2):
                    known = self.shard_map.version
                    try:
                        if self.refresh_shard_map() > known:
                            attempt += 1
                            continue
                    except errors.EmbedPSError:
                        pass
                time.sleep(backoff)
                backoff, attempt = min(backoff * 2, 1.0), attempt + 1

    def refresh_shard_map(self):
        """Fetches the map from every shard and follower known (one attempt each, 3 s) and routes by the
        newest. Returns its version."""
        current = self.shard_map
        best = None
        for address in current.all_addresses():
            try:
                reply = self._stub(address)[1].GetShardMap(pb.ListTablesRequest(), timeout=3.0, metadata=self._metadata)
            except grpc.RpcError:
                continue
            if best is None or reply.version > best.version:
                best = reply
        if best is None:
            raise errors.Unavailable(grpc.StatusCode.UNAVAILABLE, f"no shard or follower answered GetShardMap ({', '.join(current.all_addresses())})")
        spec = json.loads(best.spec_json)
        with self._lock:
            if spec.get("version", 1) > self._map.version:
                # A shard's own port-0 listen address keeps the address known for that shard.
                for i, s in enumerate(spec["shards"]):
                    if s["address"].endswith(":0") and i < len(self._map.shards):
                        s["address"] = self._map.shards[i]
                self._map = ShardMap(spec)
            return self._map.version

    def _fan_out(self, parts):
        """Runs (shard, method, request, request_id) parts in parallel; returns (part, response or error)."""
        if len(parts) == 1:   # one shard: no hand-off to the pool
            try:
                return [(parts[0], self._call(*parts[0]))]
            except errors.EmbedPSError as e:
                return [(parts[0], e)]
        futures = [(p, self._pool.submit(self._call, *p)) for p in parts]
        out = []
        for p, f in futures:
            try:
                out.append((p, f.result()))
            except errors.EmbedPSError as e:
                out.append((p, e))
        return out

    # ---- tables

    def _route(self, table):
        with self._lock:
            r = self._routes.get(table)
        if r is None:
            spec = self._call(0, "DescribeTable", pb.DescribeTableRequest(table=table)).stats.spec
            r = TableRoute(table, spec.dim, fixed_budget=spec.hash_mode == pb.FIXED_BUDGET, hash_seed=spec.hash_seed, row_budget=spec.row_budget)
            with self._lock:
                self._routes[table] = r
        return r

    def create_table(self, spec):
        """Creates a table (a `TableSpec` message) on every shard; False when an identical one existed."""
        created = [self._call(s, "CreateTable", pb.CreateTableRequest(spec=spec)).created for s in range(len(self.shard_map.shards))]
        return any(created)

    def drop_table(self, table):
        with self._lock:
            self._routes.pop(table, None)
        return any(self._call(s, "DropTable", pb.DropTableRequest(table=table)).dropped for s in range(len(self.shard_map.shards)))

    def describe(self, table):
        """Each shard's TableStats of `table`."""
        return [self._call(s, "DescribeTable", pb.DescribeTableRequest(table=table)).stats for s in range(len(self.shard_map.shards))]

    def list_tables(self):
        return list(self._call(0, "ListTables", pb.ListTablesRequest()).tables)

    def health(self):
        """SERVING (True) or not, per shard."""
        out = []
        for address in self.shard_map.shards:
            try:
                r = self._stub(address)[2].Check(hpb.HealthCheckRequest(service=""), timeout=3.0, metadata=self._metadata)
                out.append(r.status == hpb.HealthCheckResponse.SERVING)
            except grpc.RpcError:
                out.append(False)
        return out

    # ---- rows

    def _send_routed(self, route, keys, method, make_request, on_answer, with_request_id=False, part_rows=None):
        """Sends distinct `keys` to their owning shards in parallel, one part per shard (make_request(idx)),
        with a fresh request id per part when asked (kept across the part's retries). A part refused as
        WRONG_SHARD (nothing applied there) is resent to the new owner after a map refresh; any other failure
        is raised once every part finished: as `errors.PartialPush` when `part_rows(idx)` gives a part's
        gradient rows and other parts were acknowledged. on_answer(idx, response) for each part answered."""
        pending = np.arange(len(keys))
        acknowledged = 0
        for _ in range(_MAX_MAP_REFRESHES):
            if pending.size == 0:
                return
            owners = self.shard_map.owners[route.slots(keys[pending])]
            groups = [(int(s), pending[owners == s]) for s in np.unique(owners)]
            rids = [self.next_request_id() if with_request_id else None for _ in groups]
            answers = self._fan_out([(s, method, make_request(idx), rid) for (s, idx), rid in zip(groups, rids)])
            misrouted, failures = [], []
            for (shard, idx), rid, (_, res) in zip(groups, rids, answers):
                if isinstance(res, errors.EmbedPSError):
                    if res.reason == "WRONG_SHARD":
                        misrouted.append(idx)
                        self.misrouted_parts += 1
                    else:
                        failures.append((shard, idx, rid, res))
                    continue
                on_answer(idx, res)
                acknowledged += len(idx)
            if failures:
                if part_rows is None or (acknowledged == 0 and len(failures) == 1 and not misrouted):
                    raise failures[0][3]
                failed = [errors.PushPart(shard, keys[idx], part_rows(idx), rid, res, errors.proves_nothing_applied(res))
                          for shard, idx, rid, res in failures]
                for idx in misrouted:   # refused as misrouted: nothing applied, not sent again
                    failed.append(errors.PushPart(-1, keys[idx], part_rows(idx), None,
                                                  errors.FailedPrecondition(grpc.StatusCode.FAILED_PRECONDITION, "refused by the old owner after a shard-map change; not sent again"), True))
                raise errors.PartialPush(route.name, acknowledged, failed)
            if not misrouted:
                return
            self.refresh_shard_map()
            pending = np.concatenate(misrouted)
        raise errors.FailedPrecondition(grpc.StatusCode.FAILED_PRECONDITION, f"ids of '{route.name}' still refused as not owned after {_MAX_MAP_REFRESHES} map refreshes: does the cluster spec list every shard of the cluster?")

    def pull(self, table, ids):
        """The rows of `ids` (any shape, uint64) as float32 (len(ids), dim), in the given order."""
        route = self._route(table)
        ids = np.asarray(ids, dtype=np.uint64).ravel()
        uniq, inverse = np.unique(ids, return_inverse=True)
        out = np.empty((len(uniq), route.dim), dtype=np.float32)

        def answer(idx, res):
            out[idx] = np.frombuffer(res.values, dtype="<f4").reshape(len(idx), route.dim)
        self._send_routed(route, uniq, "Pull", lambda idx: pb.PullRequest(table=table, ids=uniq[idx].tolist()), answer)
        return out[inverse]

    def push(self, table, ids, grads):
        """Applies `grads` (len(ids), dim) to `ids`; duplicate ids are summed first. Each shard's part carries
        its own request id, kept across retries, so a retried part applies once. Returns rows updated."""
        route = self._route(table)
        ids = np.asarray(ids, dtype=np.uint64).ravel()
        grads = np.asarray(grads, dtype=np.float32).reshape(len(ids), route.dim)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1] if len(ids) else np.array([], dtype=np.int64)
        uniq = sorted_ids[starts] if len(ids) else sorted_ids
        if len(uniq) == len(ids):
            summed = grads[order]   # no duplicates: nothing to sum
        else:
            summed = np.add.reduceat(grads[order], starts, axis=0)
        updated = []

        def request(idx):
            return pb.PushRequest(table=table, ids=uniq[idx].tolist(), gradients=np.ascontiguousarray(summed[idx], dtype="<f4").tobytes())
        self._send_routed(route, uniq, "Push", request, lambda idx, res: updated.append(res.rows_updated), with_request_id=True,
                          part_rows=lambda idx: np.array(summed[idx], dtype=np.float32))
        return sum(updated)

    def resend(self, partial):
        """Sends the failed parts of an `errors.PartialPush` again, each to its shard under the request id it
        was first sent with (a shard that applied a part whose answer was lost answers without applying it
        twice); a part its shard now refuses as WRONG_SHARD, or that was never sent, goes to the current
        owners as a fresh push. Returns the ids acknowledged; raises `errors.PartialPush` with what still
        failed. A part of unknown outcome whose slots moved to another shard since may apply twice."""
        acknowledged, failed = 0, []
        for part in partial.failed:
            try:
                if part.request_id is not None and 0 <= part.shard < len(self.shard_map.shards):
                    req = pb.PushRequest(table=partial.table, ids=[int(i) for i in part.ids],
                                         gradients=np.ascontiguousarray(part.grads, dtype="<f4").tobytes())
                    try:
                        self._call(part.shard, "Push", req, request_id=part.request_id)
                        acknowledged += len(part.ids)
                        continue
                    except errors.EmbedPSError as e:
                        if e.reason != "WRONG_SHARD":
                            raise
                        self.refresh_shard_map()
                self.push(partial.table, part.ids, part.grads)
                acknowledged += len(part.ids)
            except errors.PartialPush as e:
                acknowledged += e.ids_acknowledged
                failed += e.failed
            except errors.EmbedPSError as e:
                failed.append(errors.PushPart(part.shard, part.ids, part.grads, part.request_id, e,
                                              part.known_not_applied and errors.proves_nothing_applied(e)))
        if failed:
            raise errors.PartialPush(partial.table, acknowledged, failed)
        return acknowledged

    def register_items(self, table, items, codes):
        """Semantic tables: registers items' codes ((len(items), levels) ints) on every shard."""
        items = np.asarray(items, dtype=np.uint64).ravel()
        codes = np.asarray(codes, dtype=np.int64).reshape(len(items), -1)
        req = pb.RegisterItemsRequest(table=table, items=items.tolist(), codes=codes.ravel().tolist())
        for _, res in self._fan_out([(s, "RegisterItems", req, None) for s in range(len(self.shard_map.shards))]):
            if isinstance(res, errors.EmbedPSError):
                raise res
        return len(items)

    def pull_pooled(self, table, items):
        """Semantic tables: per item, the sum of its pieces' rows (every shard answers its pieces; summed)."""
        items = np.asarray(items, dtype=np.uint64).ravel()
        req = pb.PullRequest(table=table, ids=items.tolist())
        total = None
        for _, res in self._fan_out([(s, "PullPooled", req, None) for s in range(len(self.shard_map.shards))]):
            if isinstance(res, errors.EmbedPSError):
                raise res
            part = np.frombuffer(res.values, dtype="<f4").reshape(len(items), res.dim)
            total = part.copy() if total is None else total + part
        return total

    def push_pooled(self, table, items, grads):
        """Semantic tables: applies each item's gradient to its pieces on every shard (request id per shard)."""
        items = np.asarray(items, dtype=np.uint64).ravel()
        grads = np.ascontiguousarray(grads, dtype="<f4").reshape(len(items), -1)
        req = pb.PushRequest(table=table, ids=items.tolist(), gradients=grads.tobytes())
        updated = 0
        for _, res in self._fan_out([(s, "PushPooled", req, self.next_request_id()) for s in range(len(self.shard_map.shards))]):
            if isinstance(res, errors.EmbedPSError):
                raise res
            updated += res.rows_updated
        return updated
