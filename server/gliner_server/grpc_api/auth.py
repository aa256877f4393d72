"""API-key authentication for every RPC except health checks.

Keys arrive as ``x-api-key`` (the hosted APIs' header; Envoy forwards HTTP
headers as gRPC metadata) or ``authorization: Bearer KEY``. Comparison is in
constant time, and keys are never logged. Each key belongs to a client, whose
id is what the inference history records and scopes by.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

import grpc

from ..core.recording import ANONYMOUS, Caller
from ..errors import ErrorKind, ServiceError
from .status import to_rpc_status

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def presented_key(metadata: Iterable[tuple[str, str]]) -> str | None:
    for key, value in metadata:
        if key == "x-api-key" and value:
            return value
        if key == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


class ApiKeys:
    """The accepted keys and the client each belongs to."""

    def __init__(self, clients: Iterable[tuple[str, Caller]] = ()):
        self._clients = [(key.encode(), caller) for key, caller in clients if key]

    @property
    def enabled(self) -> bool:
        return bool(self._clients)

    def caller(self, candidate: str | None) -> Caller | None:
        """The client a key belongs to; ANONYMOUS when auth is off; None when refused."""
        if not self._clients:
            return ANONYMOUS
        if candidate is None:
            return None
        given = candidate.encode()
        found = None
        # Compare against every key so timing does not reveal which one matched.
        for key, caller in self._clients:
            if hmac.compare_digest(given, key) and found is None:
                found = caller
        return found

    def identify(self, metadata: Iterable[tuple[str, str]]) -> Caller | None:
        return self.caller(presented_key(metadata or ()))


def _denying(handler: grpc.RpcMethodHandler, error: ServiceError) -> grpc.RpcMethodHandler:
    status = to_rpc_status(error)

    def deny(_request, context):
        context.abort_with_status(status)

    kinds: dict[str, Callable] = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for attribute, factory in kinds.items():
        if getattr(handler, attribute) is not None:
            return factory(deny, request_deserializer=handler.request_deserializer,
                           response_serializer=handler.response_serializer)
    raise AssertionError("handler of unknown kind")


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, keys: ApiKeys):
        self.keys = keys

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not self.keys.enabled or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        candidate = presented_key(handler_call_details.invocation_metadata or ())
        if self.keys.caller(candidate) is not None:
            return handler
        message = "Missing API key" if candidate is None else "Invalid API key"
        return _denying(handler, ServiceError(ErrorKind.UNAUTHORIZED, message))
