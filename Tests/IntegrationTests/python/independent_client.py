#!/usr/bin/env python3
"""An independent gRPC client: stubs generated from Protos/*.proto by grpc_tools, no EmbedPS code.

usage: independent_client.py PROTOS_DIR HOST:PORT
Creates a table, pulls unseen rows, pushes SGD gradients, pulls again, checks health and error codes.
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import importlib, json, struct, sys, tempfile

from grpc_tools import protoc
import grpc

protos, target = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
for name in ("embedps.proto", "health.proto"):
    if protoc.main(["protoc", f"-I{protos}", f"--python_out={out}", f"--grpc_python_out={out}", name]) != 0:
        sys.exit(f"protoc failed on {name}")
sys.path.insert(0, out)
pb = importlib.import_module("embedps_pb2")
rpc = importlib.import_module("embedps_pb2_grpc")
hpb = importlib.import_module("health_pb2")
hrpc = importlib.import_module("health_pb2_grpc")

channel = grpc.insecure_channel(target)
shard = rpc.ShardStub(channel)
health = hrpc.HealthStub(channel)
seen = {}

seen["health"] = hpb.HealthCheckResponse.ServingStatus.Name(health.Check(hpb.HealthCheckRequest(service="")).status)
spec = pb.TableSpec(name="py", dim=4, hash_mode=pb.COLLISION_FREE,
                    optimizer=pb.OptimizerConfig(kind=pb.SGD, learning_rate=0.5),
                    initializer=pb.InitializerConfig(kind=pb.ZEROS))
seen["created"] = shard.CreateTable(pb.CreateTableRequest(spec=spec)).created
ids = [1, 2, 3]
before = shard.Pull(pb.PullRequest(table="py", ids=ids))
seen["dim"] = before.dim
seen["before"] = list(struct.unpack(f"<{len(ids) * 4}f", before.values))
grads = [1.0] * 4 + [2.0] * 4 + [-1.0] * 4
seen["rows_updated"] = shard.Push(pb.PushRequest(table="py", ids=ids, gradients=struct.pack(f"<{len(grads)}f", *grads))).rows_updated
after = shard.Pull(pb.PullRequest(table="py", ids=ids))
seen["after"] = list(struct.unpack(f"<{len(ids) * 4}f", after.values))
seen["tables"] = list(shard.ListTables(pb.ListTablesRequest()).tables)
stats = shard.DescribeTable(pb.DescribeTableRequest(table="py")).stats
seen["rows"] = stats.rows
seen["status_owned_slots"] = shard.ShardStatus(pb.ShardStatusRequest()).owned_slots
try:
    shard.Pull(pb.PullRequest(table="missing", ids=[1]))
    seen["unknown_table"] = "OK"
except grpc.RpcError as e:
    seen["unknown_table"] = e.code().name
try:
    shard.Push(pb.PushRequest(table="py", ids=[1], gradients=struct.pack("<4f", 0, float("nan"), 0, 0)))
    seen["nan"] = "OK"
except grpc.RpcError as e:
    seen["nan"] = e.code().name
print(json.dumps(seen))
ok = (seen["health"] == "SERVING" and seen["created"] and seen["dim"] == 4 and seen["before"] == [0.0] * 12
      and seen["rows_updated"] == 3 and seen["after"] == [-0.5] * 4 + [-1.0] * 4 + [0.5] * 4
      and seen["tables"] == ["py"] and seen["rows"] == 3 and seen["status_owned_slots"] == 4096
      and seen["unknown_table"] == "NOT_FOUND" and seen["nan"] == "INVALID_ARGUMENT")
sys.exit(0 if ok else 1)
