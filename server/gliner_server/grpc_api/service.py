"""gliner.v1.GlinerService: each RPC translates, calls the core, translates back."""
from __future__ import annotations

import functools
import logging
import time

import grpc

from gliner_client.v1 import gliner_service_pb2 as service_pb2
from gliner_client.v1 import gliner_service_pb2_grpc as service_grpc

from ..core.engine import FULL_OUTPUT, CallContext, ExtractionRequest, threshold_or_default
from ..core.recording import Caller, Provenance, RecordingEngine
from ..dialects import gliner2_api, inference_api
from .. import metrics
from ..config import EndpointConfig
from ..dialects.run_api import RunDialect
from ..errors import ErrorKind, ServiceError
from . import convert
from .admission import Admission
from .auth import ApiKeys
from .status import abort

logger = logging.getLogger(__name__)


def rpc(method):
    """Maps ServiceError (and anything unexpected) to a proper gRPC status."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext):
        with metrics.observed(method.__name__) as outcome:
            try:
                return method(self, request, context)
            except ServiceError as error:
                outcome["code"] = error.kind.grpc_code.name
                abort(context, error)
            except Exception:
                outcome["code"] = grpc.StatusCode.INTERNAL.name
                logger.exception("unexpected failure in %s", method.__name__)
                abort(context, ServiceError(ErrorKind.SERVER_ERROR, "Internal server error"))

    return handler


def admitted(method):
    """A model call: it takes one of the service's admission slots while it runs (see :mod:`.admission`)."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext):
        with self.admission.slot():
            return method(self, request, context)

    return handler


NO_DEADLINE_S = 365 * 24 * 3600.0  # remaining times beyond this mean the caller set no deadline


def call_context(context: grpc.ServicerContext) -> CallContext:
    """The caller's deadline and disconnect notice, for the core: queued work stops when either comes."""
    remaining = context.time_remaining()
    # without a deadline grpcio reports "infinite future" as a huge number of seconds
    deadline = time.monotonic() + remaining if remaining is not None and remaining < NO_DEADLINE_S else None
    return CallContext(deadline=deadline, cancellation=context)


CHUNKS_HEADER = "x-gliner-chunks"  # per text, how many windows a text longer than the model's was run in


def report_chunks(context: grpc.ServicerContext, outcome) -> None:
    """Tell the client (REST: a response header) that long texts were processed in chunks."""
    if outcome.chunked:
        context.send_initial_metadata(((CHUNKS_HEADER, ",".join(map(str, outcome.chunks))),))


def caller_of(keys: ApiKeys, context: grpc.ServicerContext) -> Caller:
    caller = keys.identify(context.invocation_metadata())
    if caller is None:  # the interceptor already refused such calls
        raise ServiceError(ErrorKind.UNAUTHORIZED, "Invalid API key")
    return caller


class GlinerService(service_grpc.GlinerServiceServicer):
    def __init__(self, engine: RecordingEngine, keys: ApiKeys, endpoints: dict[str, EndpointConfig], *,
                 max_run_inputs: int = 64, admission: Admission | None = None):
        self.engine = engine
        self.admission = admission or Admission.for_workers(64)
        self.keys = keys
        self.endpoints = endpoints
        self.run_dialect = RunDialect(engine, endpoints, max_inputs=max_run_inputs)

    def _typed(self, texts, request, context, method: str):
        schema = convert.schema_from_proto(request.schema)
        threshold = threshold_or_default(request.threshold if request.HasField("threshold") else None)
        provenance = Provenance(route=f"grpc:{method}", task="schema", caller=caller_of(self.keys, context),
                                project_id=request.project_id or None,
                                training_job_id=request.training_job_id or None,
                                privacy_mode=request.privacy_mode, parameters={"threshold": threshold})
        recorded = self.engine.run(ExtractionRequest(
            texts=tuple(texts), schema=schema, threshold=threshold, output=FULL_OUTPUT,
            model_id=request.model_id), provenance, call_context(context))
        report_chunks(context, recorded.outcome)
        results = [convert.result_to_proto(r) for r in recorded.outcome.typed(schema)]
        return results, recorded

    @rpc
    @admitted
    def Extract(self, request, context):
        results, recorded = self._typed([request.text], request, context, "Extract")
        return service_pb2.ExtractResponse(result=results[0], model_id=recorded.outcome.model_id,
                                           latency_ms=recorded.outcome.latency_ms,
                                           inference_id=next(iter(recorded.inference_ids), ""),
                                           chunks=recorded.outcome.chunks[0])

    @rpc
    @admitted
    def BatchExtract(self, request, context):
        results, recorded = self._typed(list(request.texts), request, context, "BatchExtract")
        return service_pb2.BatchExtractResponse(results=results, model_id=recorded.outcome.model_id,
                                                latency_ms=recorded.outcome.latency_ms,
                                                inference_ids=recorded.inference_ids,
                                                chunks=recorded.outcome.chunks)

    @rpc
    @admitted
    def Gliner2(self, request, context):
        call = gliner2_api.parse_json(request.body.data, caller_of(self.keys, context))
        outcome = self.engine.run(call.request, call.provenance, call_context(context)).outcome
        report_chunks(context, outcome)
        return convert.json_http_body(call.answer_json(outcome))

    @rpc
    @admitted
    def Run(self, request, context):
        return convert.json_http_body(self.run_dialect.handle(request.body.data, caller_of(self.keys, context),
                                                              call_context(context)))

    @rpc
    @admitted
    def Inference(self, request, context):
        call = inference_api.parse_json(request.body.data, caller_of(self.keys, context))
        recorded = self.engine.run(call.request, call.provenance, call_context(context))
        report_chunks(context, recorded.outcome)
        return convert.json_http_body(call.answer(recorded))

    @rpc
    def ListModels(self, request, context):
        models = self.engine.engine.models
        loaded = set(models.loaded_ids())
        data = [service_pb2.ModelInfo(id=spec.id, object="model", owned_by="gliner2-service", kind=spec.kind,
                                      description=spec.description, loaded=spec.id in loaded,
                                      is_default=spec.id == models.default_model_id)
                for spec in models.specs()]
        data += [service_pb2.ModelInfo(id=e.id, object="model", owned_by="gliner2-service", kind="endpoint",
                                       description=e.description, model_id=e.model, loaded=e.model in loaded)
                 for e in self.endpoints.values()]
        return service_pb2.ListModelsResponse(object="list", data=data)
