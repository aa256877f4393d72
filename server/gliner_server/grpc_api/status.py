"""ServiceError → gRPC status with google.rpc.Status details (grpcio-status)."""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import ServiceError

ERROR_DOMAIN = "gliner.v1"


def to_rpc_status(error: ServiceError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=error.kind.provider_code, domain=ERROR_DOMAIN,
                                       metadata={"http_status": str(error.kind.http_status)})
    details = [info]
    if error.field:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)]))
    if error.retry_after_s is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after_s)))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = rpc_status.to_status(status_pb2.Status(
        code=error.kind.grpc_code.value[0], message=error.message, details=packed))
    if error.retry_after_s is None:
        return status
    # Also as plain metadata: Envoy turns it into the REST response's Retry-After header.
    return _Status(status.code, status.details, (*status.trailing_metadata, (RETRY_AFTER, str(error.retry_after_s))))


RETRY_AFTER = "retry-after"


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def abort(context: grpc.ServicerContext, error: ServiceError):
    """Ends the call with ``error``; never returns."""
    context.abort_with_status(to_rpc_status(error))
