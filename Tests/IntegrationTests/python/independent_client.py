#!/usr/bin/env python3
"""An independent gRPC client: stubs generated from Protos/*.proto by grpc_tools, no EmbedPS code.

usage: independent_client.py PROTOS_DIR HOST:PORT
Creates a table, pulls unseen rows, pushes SGD gradients, pulls again, checks health and error codes,
names with NULs, strict parsing, freeze semantics and the machine-readable error details and method options.
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import importlib, json, struct, sys, tempfile

from grpc_tools import protoc
import grpc, os

protos, target = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
# The well-known protos (google/protobuf/descriptor.proto, for the method options) ship with every protoc.
wellknown = os.path.join(os.path.dirname(protoc.__file__), "_proto")
for name in ("embedps.proto", "health.proto"):
    if protoc.main(["protoc", f"-I{protos}", f"-I{wellknown}", f"--python_out={out}", f"--grpc_python_out={out}", name]) != 0:
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

def reason(e):
    """The ErrorDetail reason of a failed call (binary trailing metadata embedps-error-bin), by name."""
    for key, value in (e.trailing_metadata() or ()):
        if key == "embedps-error-bin":
            d = pb.ErrorDetail(); d.ParseFromString(value)
            return pb.ErrorReason.Name(d.reason)
    return None

def code_and_reason(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}/{reason(e)}"

# Names with a NUL (a C-string server would cut them at the NUL and write to table "py").
seen["push_nul_name"] = code_and_reason(lambda: shard.Push(pb.PushRequest(table="py\0junk", ids=[1], gradients=struct.pack("<4f", 9, 9, 9, 9))))
seen["pull_nul_name"] = code_and_reason(lambda: shard.Pull(pb.PullRequest(table="py\0x", ids=[1])))
seen["create_nul_name"] = code_and_reason(lambda: shard.CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(name="a\0b", dim=4, optimizer=pb.OptimizerConfig(kind=pb.SGD, learning_rate=1))))) 
seen["after_nul"] = list(struct.unpack("<12f", shard.Pull(pb.PullRequest(table="py", ids=ids)).values))
seen["freeze_escape"] = code_and_reason(lambda: shard.Freeze(pb.CheckpointRequest(name="../escape")))
# Garbage request bytes to a method with an empty request.
raw = channel.unary_unary("/embedps.v1.Shard/ListTables", request_serializer=lambda b: b, response_deserializer=lambda b: b)
seen["garbage"] = code_and_reason(lambda: raw(bytes([0x0f, 0xff, 0xff])))
# Freeze: reads keep serving, updates are refused with FROZEN, thaw lets them through.
shard.Freeze(pb.CheckpointRequest(name="pycheck", freeze_seconds=30))
seen["pull_frozen"] = code_and_reason(lambda: shard.Pull(pb.PullRequest(table="py", ids=ids)))
seen["push_frozen"] = code_and_reason(lambda: shard.Push(pb.PushRequest(table="py", ids=[1], gradients=struct.pack("<4f", 1, 1, 1, 1))))
shard.Thaw(pb.CheckpointRequest(name="pycheck"))
# The method options are readable by any client: Push is retried only with a request id.
method = pb.DESCRIPTOR.services_by_name["Shard"].methods_by_name["Push"]
opts = method.GetOptions()
seen["push_retry_option"] = pb.Retry.Name(opts.Extensions[pb.retry])
seen["pull_while_frozen_option"] = pb.WhileFrozen.Name(pb.DESCRIPTOR.services_by_name["Shard"].methods_by_name["Pull"].GetOptions().Extensions[pb.while_frozen])
print(json.dumps(seen))
ok = (seen["health"] == "SERVING" and seen["created"] and seen["dim"] == 4 and seen["before"] == [0.0] * 12
      and seen["rows_updated"] == 3 and seen["after"] == [-0.5] * 4 + [-1.0] * 4 + [0.5] * 4
      and seen["tables"] == ["py"] and seen["rows"] == 3 and seen["status_owned_slots"] == 4096
      and seen["unknown_table"] == "NOT_FOUND" and seen["nan"] == "INVALID_ARGUMENT"
      and seen["push_nul_name"] == "INVALID_ARGUMENT/INVALID_NAME" and seen["pull_nul_name"] == "INVALID_ARGUMENT/INVALID_NAME"
      and seen["create_nul_name"] == "INVALID_ARGUMENT/INVALID_NAME" and seen["after_nul"] == seen["after"]
      and seen["freeze_escape"] == "INVALID_ARGUMENT/INVALID_NAME" and seen["garbage"] == "INVALID_ARGUMENT/MALFORMED"
      and seen["pull_frozen"] == "OK" and seen["push_frozen"] == "UNAVAILABLE/FROZEN"
      and seen["push_retry_option"] == "RETRY_WITH_REQUEST_ID" and seen["pull_while_frozen_option"] == "FROZEN_SERVES")
sys.exit(0 if ok else 1)
