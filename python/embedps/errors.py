"""One exception type per gRPC status a shard answers (STATUS CODES in Protos/embedps.proto), carrying the
machine-readable ErrorDetail (`reason` as its enum name, `detail` the message) when the shard sent one."""
import grpc

from ._generated import embedps_pb2 as pb


class EmbedPSError(Exception):
    """A failed call: `code` (grpc.StatusCode), `reason` (ErrorReason name or None for transport failures),
    `detail` (ErrorDetail or None), `shard` (address)."""

    def __init__(self, code, message, detail=None, shard=None):
        super().__init__(f"{code.name}: {message}" + (f" (shard {shard})" if shard else ""))
        self.code, self.message, self.detail, self.shard = code, message, detail, shard
        self.reason = pb.ErrorReason.Name(detail.reason) if detail is not None else None


class InvalidArgument(EmbedPSError): pass
class NotFound(EmbedPSError): pass
class AlreadyExists(EmbedPSError): pass
class ResourceExhausted(EmbedPSError): pass
class FailedPrecondition(EmbedPSError): pass
class Unavailable(EmbedPSError): pass
class Aborted(EmbedPSError): pass
class Unauthenticated(EmbedPSError): pass
class Unimplemented(EmbedPSError): pass
class Internal(EmbedPSError): pass
class DeadlineExceeded(EmbedPSError): pass

class PushPart:
    """One shard's part of a push that was not acknowledged: `shard` (index), `ids`, `grads` ((len(ids), dim)
    float32, duplicates already summed), `request_id` it was sent with, `error`, and `known_not_applied`
    (the shard's answer proves nothing was applied; otherwise the outcome is unknown)."""

    def __init__(self, shard, ids, grads, request_id, error, known_not_applied):
        self.shard, self.ids, self.grads, self.request_id = shard, ids, grads, request_id
        self.error, self.known_not_applied = error, known_not_applied


def proves_nothing_applied(err):
    """Whether a failed push part's status proves the shard applied nothing (a shard's own answer, other
    than NOT_REPLICATED and INTERNAL; see STATUS CODES in Protos/embedps.proto)."""
    return (isinstance(err, EmbedPSError) and err.detail is not None and err.reason != "NOT_REPLICATED"
            and err.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED))


class PartialPush(EmbedPSError):
    """A push split over several shards of which some parts were applied and others failed after the
    retries (each shard applies its part whole or not at all). `failed`: every unacknowledged part
    (`PushPart`), `ids_acknowledged`: ids of the parts applied, `table`. `Client.resend(e)` sends the failed
    parts again under their request ids, so each gradient is applied exactly once. code / reason / detail
    are the first failed part's."""

    def __init__(self, table, ids_acknowledged, failed):
        first = failed[0].error
        unknown = [p.shard for p in failed if not p.known_not_applied]
        super().__init__(first.code, f"push to '{table}' partly applied: {ids_acknowledged} ids acknowledged, "
                         f"{sum(len(p.ids) for p in failed)} ids on shards {[p.shard for p in failed]} not"
                         + (f" (outcome unknown on shards {unknown})" if unknown else " (not applied there)")
                         + f"; Client.resend(error) sends them again under their request ids; first failure: {first.message}",
                         first.detail, first.shard)
        self.table, self.ids_acknowledged, self.failed = table, ids_acknowledged, failed


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument, grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists, grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition, grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.ABORTED: Aborted, grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented, grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_detail(rpc_error):
    """The ErrorDetail of a failed call (trailing metadata embedps-error-bin), or None."""
    try:
        for key, value in rpc_error.trailing_metadata() or ():
            if key == "embedps-error-bin":
                return pb.ErrorDetail.FromString(value)
    except Exception:
        return None
    return None


def from_rpc_error(rpc_error, shard=None):
    detail = error_detail(rpc_error)
    cls = _BY_CODE.get(rpc_error.code(), EmbedPSError)
    return cls(rpc_error.code(), rpc_error.details() or "", detail, shard)
