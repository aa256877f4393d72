"""Malformed native gRPC messages get INVALID_ARGUMENT (400 INVALID_REQUEST), not grpcio's INTERNAL.

grpcio answers bytes its deserializer cannot parse with ``INTERNAL: Exception
deserializing request!``, as if the server had failed. This interceptor wraps
every unary method's deserializer: a message that does not decode reaches the
handler as :class:`_Undecodable`, which answers with the service's one error
type, saying which message was expected.
"""
from __future__ import annotations

import grpc

from ..errors import ServiceError
from .status import abort


class _Undecodable:
    def __init__(self, error: Exception):
        self.error = error


def _safe(deserializer):
    def decode(raw: bytes):
        try:
            return deserializer(raw) if deserializer is not None else raw
        except Exception as error:  # noqa: BLE001 - any decoding failure is the client's
            return _Undecodable(error)
    return decode


def _checked(behavior, method: str):
    def run(request, context):
        if isinstance(request, _Undecodable):
            abort(context, ServiceError.invalid(f"The request to {method} is not a valid protobuf message of "
                                                "its request type"))
        return behavior(request, context)
    return run


class DecodingInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        factory, behavior = ((grpc.unary_unary_rpc_method_handler, handler.unary_unary)
                             if not handler.response_streaming else
                             (grpc.unary_stream_rpc_method_handler, handler.unary_stream))
        return factory(_checked(behavior, method), request_deserializer=_safe(handler.request_deserializer),
                       response_serializer=handler.response_serializer)
