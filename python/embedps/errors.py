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
