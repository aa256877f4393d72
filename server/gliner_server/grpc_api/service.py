"""gliner.v1.GlinerService: each RPC translates, calls the core, translates back."""
from __future__ import annotations

import functools
import logging

import grpc

from gliner_client.v1 import gliner_service_pb2 as service_pb2
from gliner_client.v1 import gliner_service_pb2_grpc as service_grpc

from ..core.engine import FULL_OUTPUT, ExtractionRequest, InferenceEngine, threshold_or_default
from ..dialects import gliner2_api
from ..errors import ErrorKind, ServiceError
from . import convert
from .status import abort

logger = logging.getLogger(__name__)


def rpc(method):
    """Maps ServiceError (and anything unexpected) to a proper gRPC status."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except ServiceError as error:
            abort(context, error)
        except Exception:
            logger.exception("unexpected failure in %s", method.__name__)
            abort(context, ServiceError(ErrorKind.SERVER_ERROR, "Internal server error"))

    return handler


class GlinerService(service_grpc.GlinerServiceServicer):
    def __init__(self, engine: InferenceEngine):
        self.engine = engine

    def _typed(self, texts, request) -> tuple:
        schema = convert.schema_from_proto(request.schema)
        threshold = threshold_or_default(request.threshold if request.HasField("threshold") else None)
        outcome = self.engine.run(ExtractionRequest(
            texts=tuple(texts), schema=schema, threshold=threshold, output=FULL_OUTPUT,
            model_id=request.model_id))
        return [convert.result_to_proto(r) for r in outcome.typed(schema)], outcome

    @rpc
    def Extract(self, request, context):
        results, outcome = self._typed([request.text], request)
        return service_pb2.ExtractResponse(result=results[0], model_id=outcome.model_id,
                                           latency_ms=outcome.latency_ms)

    @rpc
    def BatchExtract(self, request, context):
        results, outcome = self._typed(list(request.texts), request)
        return service_pb2.BatchExtractResponse(results=results, model_id=outcome.model_id,
                                                latency_ms=outcome.latency_ms)

    @rpc
    def Gliner2(self, request, context):
        call = gliner2_api.parse_json(request.body.data)
        return convert.json_http_body(call.answer_json(self.engine.run(call.request)))
