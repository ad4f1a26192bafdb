"""EmbedPS from Python: `Client(cluster_spec)` pulls and pushes embedding rows of an EmbedPS cluster with the
routing, request ids and retry rules of Protos/embedps.proto; `errors` has one exception per status."""
from . import errors
from ._generated import embedps_pb2 as pb
from .client import Client
from .routing import ShardMap, TableRoute, xxh64_u64

__all__ = ["Client", "errors", "pb", "ShardMap", "TableRoute", "xxh64_u64"]
