"""The service's one error type and its mapping to gRPC, HTTP and provider codes.

Every failure a client can see is a :class:`ServiceError` of one
:class:`ErrorKind`. This table is the only place that decides which gRPC status,
which HTTP status and which provider error code (``{"error": {"code": ...}}``)
a kind becomes; the gRPC front end and the Envoy error filter both read it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class _Mapping:
    grpc_code: grpc.StatusCode
    http_status: int
    provider_code: str


class ErrorKind(enum.Enum):
    INVALID_REQUEST = _Mapping(grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_REQUEST")
    UNAUTHORIZED = _Mapping(grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHORIZED")
    FORBIDDEN = _Mapping(grpc.StatusCode.PERMISSION_DENIED, 403, "FORBIDDEN")
    NOT_FOUND = _Mapping(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND")
    PAYLOAD_TOO_LARGE = _Mapping(grpc.StatusCode.OUT_OF_RANGE, 413, "PAYLOAD_TOO_LARGE")
    RATE_LIMITED = _Mapping(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "RATE_LIMITED")
    DEADLINE_EXCEEDED = _Mapping(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "TIMEOUT")
    CANCELLED = _Mapping(grpc.StatusCode.CANCELLED, 499, "CANCELLED")   # the client went away
    UNAVAILABLE = _Mapping(grpc.StatusCode.UNAVAILABLE, 503, "UNAVAILABLE")
    SERVER_ERROR = _Mapping(grpc.StatusCode.INTERNAL, 500, "SERVER_ERROR")

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return self.value.grpc_code

    @property
    def http_status(self) -> int:
        return self.value.http_status

    @property
    def provider_code(self) -> str:
        return self.value.provider_code


MAX_MESSAGE_CHARS = 500


def shown(value, limit: int = 60) -> str:
    """A client-supplied value for an error message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ServiceError(Exception):
    """A failure with a client-facing message; never carries a stack to the client."""

    def __init__(self, kind: ErrorKind, message: str, *, field: str | None = None,
                 retry_after_s: int | None = None):
        if len(message) > MAX_MESSAGE_CHARS:  # messages quote client input: never echo it at length
            message = message[:MAX_MESSAGE_CHARS - 15] + "... (truncated)"
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s  # when to try again (RATE_LIMITED, UNAVAILABLE): Retry-After

    @classmethod
    def invalid(cls, message: str, *, field: str | None = None) -> "ServiceError":
        return cls(ErrorKind.INVALID_REQUEST, message, field=field)

    def __repr__(self) -> str:
        return f"ServiceError({self.kind.name}, {self.message!r})"


def http_mapping_by_grpc_code() -> dict[int, tuple[int, str]]:
    """gRPC status number → (HTTP status, provider code), for the Envoy error filter.

    A gRPC status that no kind uses (e.g. UNIMPLEMENTED from an unknown method, or
    a transcoder parse failure, INVALID_ARGUMENT) still needs an answer there.
    """
    table: dict[int, tuple[int, str]] = {}
    for kind in ErrorKind:
        table.setdefault(kind.grpc_code.value[0], (kind.http_status, kind.provider_code))
    table.setdefault(grpc.StatusCode.UNIMPLEMENTED.value[0], (404, "NOT_FOUND"))
    table.setdefault(grpc.StatusCode.FAILED_PRECONDITION.value[0], (400, "INVALID_REQUEST"))
    return table
