"""The service's one error type: its kinds, and what each is on the REST side.

Every failure a client can see is a :class:`ServiceError` of one
:class:`ErrorKind`. This table decides which HTTP status and which provider
error code (``{"error": {"code": ...}}``) a kind becomes; the gRPC status of
each kind is the gRPC front end's business (``grpc_api.status.GRPC_CODES``,
which also derives the Envoy error filter's gRPC → HTTP table from this one),
so the core never imports a transport.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class _Mapping:
    http_status: int
    provider_code: str


class ErrorKind(enum.Enum):
    INVALID_REQUEST = _Mapping(400, "INVALID_REQUEST")
    UNAUTHORIZED = _Mapping(401, "UNAUTHORIZED")
    FORBIDDEN = _Mapping(403, "FORBIDDEN")
    NOT_FOUND = _Mapping(404, "NOT_FOUND")
    PAYLOAD_TOO_LARGE = _Mapping(413, "PAYLOAD_TOO_LARGE")
    RATE_LIMITED = _Mapping(429, "RATE_LIMITED")
    DEADLINE_EXCEEDED = _Mapping(504, "TIMEOUT")
    CANCELLED = _Mapping(499, "CANCELLED")   # the client went away
    UNAVAILABLE = _Mapping(503, "UNAVAILABLE")                # transient: retry (another replica may serve it)
    MODEL_UNAVAILABLE = _Mapping(503, "MODEL_UNAVAILABLE")    # a model failed to load: not retried elsewhere
    SERVER_ERROR = _Mapping(500, "SERVER_ERROR")

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
                 retry_after_s: int | None = None, reason: str | None = None):
        if len(message) > MAX_MESSAGE_CHARS:  # messages quote client input: never echo it at length
            message = message[:MAX_MESSAGE_CHARS - 15] + "... (truncated)"
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s  # when to try again (RATE_LIMITED, UNAVAILABLE): Retry-After
        self.reason = reason                # why a call was refused before any work, for metrics (e.g. queue_full)

    @classmethod
    def invalid(cls, message: str, *, field: str | None = None) -> "ServiceError":
        return cls(ErrorKind.INVALID_REQUEST, message, field=field)

    def __repr__(self) -> str:
        return f"ServiceError({self.kind.name}, {self.message!r})"
