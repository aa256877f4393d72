"""ServiceError → gRPC status with google.rpc.Status details (grpcio-status)."""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
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
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(
        code=error.kind.grpc_code.value[0], message=error.message, details=packed))


def abort(context: grpc.ServicerContext, error: ServiceError):
    """Ends the call with ``error``; never returns."""
    context.abort_with_status(to_rpc_status(error))
