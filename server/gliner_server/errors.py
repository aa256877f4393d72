"""The service's one error type: its kinds, and what each is on the REST side.

Every failure a client can see is a :class:`ServiceError` of one
:class:`ErrorKind`. This table decides which HTTP status and which provider
error code (``{"error": {"code": ...}}``) a kind becomes, and its ``error.type``
on the OpenAI- and Anthropic-compatible routes; the gRPC status of
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
    openai_type: str        # error.type on the OpenAI-compatible routes
    anthropic_type: str     # error.type on the Anthropic-compatible route


class ErrorKind(enum.Enum):
    INVALID_REQUEST = _Mapping(400, "INVALID_REQUEST", "invalid_request_error", "invalid_request_error")
    UNAUTHORIZED = _Mapping(401, "UNAUTHORIZED", "authentication_error", "authentication_error")
    FORBIDDEN = _Mapping(403, "FORBIDDEN", "permission_error", "permission_error")
    NOT_FOUND = _Mapping(404, "NOT_FOUND", "invalid_request_error", "not_found_error")
    PAYLOAD_TOO_LARGE = _Mapping(413, "PAYLOAD_TOO_LARGE", "invalid_request_error", "request_too_large")
    RATE_LIMITED = _Mapping(429, "RATE_LIMITED", "rate_limit_error", "rate_limit_error")
    DEADLINE_EXCEEDED = _Mapping(504, "TIMEOUT", "timeout_error", "timeout_error")
    CANCELLED = _Mapping(499, "CANCELLED", "invalid_request_error", "invalid_request_error")   # the client went away
    # transient: retry (another replica may serve it)
    UNAVAILABLE = _Mapping(503, "UNAVAILABLE", "server_error", "overloaded_error")
    # a model failed to load: not retried elsewhere
    MODEL_UNAVAILABLE = _Mapping(503, "MODEL_UNAVAILABLE", "server_error", "api_error")
    SERVER_ERROR = _Mapping(500, "SERVER_ERROR", "server_error", "api_error")

    @property
    def http_status(self) -> int:
        return self.value.http_status

    @property
    def provider_code(self) -> str:
        return self.value.provider_code

    def error_type(self, dialect: str) -> str | None:
        """``error.type`` in an LLM dialect's error shape ("openai", "anthropic"); None for the provider shape."""
        return {"openai": self.value.openai_type, "anthropic": self.value.anthropic_type}.get(dialect)


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
    def invalid(cls, message: str, *, field: str | None = None) -> ServiceError:
        return cls(ErrorKind.INVALID_REQUEST, message, field=field)

    def __repr__(self) -> str:
        return f"ServiceError({self.kind.name}, {self.message!r})"
