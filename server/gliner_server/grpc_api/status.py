"""ServiceError → gRPC status with google.rpc.Status details (grpcio-status).

:data:`GRPC_CODES` is the gRPC column of the one error table
(:mod:`gliner_server.errors` holds the kinds and their REST side). Envoy's
error filter reads the same table backwards (:func:`http_mapping_by_grpc_code`).
"""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import ErrorKind, ServiceError

ERROR_DOMAIN = "gliner.v1"

GRPC_CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.CANCELLED: grpc.StatusCode.CANCELLED,
    # Envoy retries UNAVAILABLE on another replica: only for what is worth retrying there.
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    # A model that failed to load fails alike on every replica: a code Envoy does not retry.
    ErrorKind.MODEL_UNAVAILABLE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.SERVER_ERROR: grpc.StatusCode.INTERNAL,
}


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    return GRPC_CODES[kind]


def kinds_by_grpc_code() -> dict[int, ErrorKind]:
    """gRPC status number → the first kind with that code: how the Envoy error filter reads the table back.

    A gRPC status that no kind uses (UNIMPLEMENTED, from an unknown method)
    still needs an answer there: NOT_FOUND's.
    """
    table: dict[int, ErrorKind] = {}
    for kind in ErrorKind:
        table.setdefault(GRPC_CODES[kind].value[0], kind)
    table.setdefault(grpc.StatusCode.UNIMPLEMENTED.value[0], ErrorKind.NOT_FOUND)
    return table


def http_mapping_by_grpc_code() -> dict[int, tuple[int, str]]:
    """gRPC status number → (HTTP status, provider code), for the Envoy error filter."""
    return {code: (kind.http_status, kind.provider_code) for code, kind in kinds_by_grpc_code().items()}


def dialect_types_by_grpc_code() -> dict[int, tuple[str, str]]:
    """gRPC status number → (OpenAI error.type, Anthropic error.type), for the Envoy error filter."""
    return {code: (kind.error_type("openai"), kind.error_type("anthropic"))
            for code, kind in kinds_by_grpc_code().items()}


def to_rpc_status(error: ServiceError, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.Status:
    """The status with its details; ``metadata`` (e.g. the request id) travels in its trailers."""
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
        code=GRPC_CODES[error.kind].value[0], message=error.message, details=packed))
    extra = tuple(metadata)
    if error.retry_after_s is not None:
        # Also as plain metadata: Envoy turns it into the REST response's Retry-After header.
        extra += ((RETRY_AFTER, str(error.retry_after_s)),)
    if not extra:
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, *extra))


RETRY_AFTER = "retry-after"


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def abort(context: grpc.ServicerContext, error: ServiceError, metadata: tuple[tuple[str, str], ...] = ()):
    """Ends the call with ``error``; never returns."""
    context.abort_with_status(to_rpc_status(error, metadata))
