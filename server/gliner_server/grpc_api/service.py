"""gliner.v1.GlinerService: each RPC translates, calls the core, translates back."""
from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime

import grpc

from gliner_client.v1 import gliner_service_pb2 as service_pb2
from gliner_client.v1 import gliner_service_pb2_grpc as service_grpc

from ..config import EndpointConfig
from ..core.engine import FULL_OUTPUT, CallContext, ExtractionRequest, threshold_or_default
from ..core.recording import Caller, Provenance, RecordingEngine
from ..dialects import anthropic_api, gliner2_api, inference_api, openai_api, run_api
from ..errors import ErrorKind, ServiceError, shown
from . import convert
from .admission import Admission
from .auth import ApiKeys
from .calls import RpcCall, rpc, streaming_rpc
from .llm_streams import LlmStreams

NO_DEADLINE_S = 365 * 24 * 3600.0  # remaining times beyond this mean the caller set no deadline
JOB_LISTING_TIMEOUT_S = 1.0        # longest the model listing waits for the caller's training jobs
logger = logging.getLogger(__name__)


def admitted(method):
    """A model call: it takes one of the service's admission slots while it runs (see :mod:`.admission`)."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext, call: RpcCall):
        with self.admission.slot():
            return method(self, request, context, call)

    return handler


def call_context(context: grpc.ServicerContext, call: RpcCall) -> CallContext:
    """The caller's deadline, disconnect notice and request id, for the core."""
    remaining = context.time_remaining()
    # without a deadline grpcio reports "infinite future" as a huge number of seconds
    deadline = time.monotonic() + remaining if remaining is not None and remaining < NO_DEADLINE_S else None
    return CallContext(deadline=deadline, cancellation=context, request_id=call.request_id)


def caller_of(keys: ApiKeys, context: grpc.ServicerContext, call: RpcCall | None = None) -> Caller:
    caller = keys.identify(context.invocation_metadata())
    if caller is None:  # the interceptor already refused such calls
        raise ServiceError(ErrorKind.UNAUTHORIZED, "Invalid API key")
    if call is not None:
        call.client = caller.client_id
    return caller


class GlinerService(service_grpc.GlinerServiceServicer):
    def __init__(self, engine: RecordingEngine, keys: ApiKeys, endpoints: dict[str, EndpointConfig], *,
                 max_run_inputs: int = 64, admission: Admission | None = None, jobs=None):
        self.engine = engine
        self.jobs = jobs      # training jobs (a JobStore): the caller's complete ones are listed as models
        self.admission = admission or Admission.for_workers(64)
        self.keys = keys
        self.endpoints = endpoints
        self.max_run_inputs = max_run_inputs
        self.llm = LlmStreams(engine, self.admission.limit)
        started = datetime.now(UTC).replace(microsecond=0)
        self.registered_at = int(started.timestamp())    # the models' "created": when this server registered them
        self.registered_at_text = started.isoformat().replace("+00:00", "Z")

    def _typed(self, texts, request, context, call: RpcCall, method: str):
        call.model = request.model_id or "-"
        schema = convert.schema_from_proto(request.schema)
        threshold = threshold_or_default(request.threshold if request.HasField("threshold") else None)
        provenance = Provenance(route=f"grpc:{method}", task="schema", caller=caller_of(self.keys, context, call),
                                project_id=request.project_id or None,
                                training_job_id=request.training_job_id or None,
                                privacy_mode=request.privacy_mode, parameters={"threshold": threshold})
        recorded = self.engine.run(ExtractionRequest(
            texts=tuple(texts), schema=schema, threshold=threshold, output=FULL_OUTPUT,
            model_id=request.model_id), provenance, call_context(context, call))
        call.served(recorded.outcome)
        results = [convert.result_to_proto(r) for r in recorded.outcome.typed(schema)]
        return results, recorded

    @rpc
    @admitted
    def Extract(self, request, context, call):
        results, recorded = self._typed([request.text], request, context, call, "Extract")
        outcome = recorded.outcome
        return service_pb2.ExtractResponse(result=results[0], model_id=outcome.model_id,
                                           latency_ms=outcome.latency_ms, queue_ms=outcome.queue_ms,
                                           inference_id=recorded.inference_id or "",
                                           chunks=outcome.chunks[0])

    @rpc
    @admitted
    def BatchExtract(self, request, context, call):
        results, recorded = self._typed(list(request.texts), request, context, call, "BatchExtract")
        outcome = recorded.outcome
        return service_pb2.BatchExtractResponse(results=results, model_id=outcome.model_id,
                                                latency_ms=outcome.latency_ms, queue_ms=outcome.queue_ms,
                                                inference_ids=recorded.inference_ids, chunks=outcome.chunks)

    @rpc
    @admitted
    def Gliner2(self, request, context, call):
        parsed = gliner2_api.parse_json(request.body.data, caller_of(self.keys, context, call))
        call.model = parsed.request.model_id or "-"
        outcome = self.engine.run(parsed.request, parsed.provenance, call_context(context, call)).outcome
        call.served(outcome)
        return convert.json_http_body(parsed.answer_json(outcome))

    @rpc
    @admitted
    def Run(self, request, context, call):
        parsed = run_api.parse_json(request.body.data, caller_of(self.keys, context, call), self.endpoints,
                                    max_inputs=self.max_run_inputs)
        call.model = parsed.model_id or "-"
        recorded = self.engine.run_many(parsed.requests, parsed.provenances, call_context(context, call),
                                        model_id=parsed.model_id)
        call.served([r.outcome for r in recorded if not isinstance(r, ServiceError)])
        return convert.json_http_body(parsed.answer_json(recorded))

    @rpc
    @admitted
    def Inference(self, request, context, call):
        parsed = inference_api.parse_json(request.body.data, caller_of(self.keys, context, call))
        call.model = parsed.request.model_id or "-"
        recorded = self.engine.run(parsed.request, parsed.provenance, call_context(context, call))
        call.served(recorded.outcome)
        return convert.json_http_body(parsed.answer(recorded))

    def _llm(self, parse, request, context, call: RpcCall):
        with self.admission.slot():
            parsed = parse(request.body.data, caller_of(self.keys, context, call), self.endpoints)
            yield from self.llm.serve(parsed, call_context(context, call), call)

    @streaming_rpc
    def CreateChatCompletion(self, request, context, call):
        yield from self._llm(openai_api.parse_chat, request, context, call)

    @streaming_rpc
    def CreateCompletion(self, request, context, call):
        yield from self._llm(openai_api.parse_completion, request, context, call)

    @streaming_rpc
    def CreateResponse(self, request, context, call):
        yield from self._llm(openai_api.parse_response, request, context, call)

    @streaming_rpc
    def CreateMessage(self, request, context, call):
        yield from self._llm(anthropic_api.parse, request, context, call)

    @rpc
    def ListModels(self, request, context, call):
        models = self.engine.engine.models
        loaded = set(models.loaded_ids())
        common = dict(object="model", type="model", owned_by="gliner2-service", created=self.registered_at,
                      created_at=self.registered_at_text)
        data = [service_pb2.ModelInfo(id=spec.id, display_name=spec.id, kind=spec.kind,
                                      description=spec.description, loaded=spec.id in loaded,
                                      is_default=spec.id == models.default_model_id, **common)
                for spec in models.specs()]
        data += [service_pb2.ModelInfo(id=e.id, display_name=e.id, kind="endpoint", description=e.description,
                                       model_id=e.model, loaded=e.model in loaded, **common)
                 for e in self.endpoints.values()]
        data += self._job_models(context, call, loaded)
        page, has_more = model_page(data, request)
        return service_pb2.ListModelsResponse(object="list", data=page, has_more=has_more,
                                              first_id=page[0].id if page else "",
                                              last_id=page[-1].id if page else "")

    def _job_models(self, context, call, loaded: set) -> list:
        """The caller's complete training jobs, newest first, each a model."""
        if self.jobs is None:
            return []
        from .training_service import evaluation_to_proto

        client = caller_of(self.keys, context, call).client_id
        try:   # the listing is answered while the database is away, without the jobs
            jobs = self.jobs.completed_for(client, timeout_s=JOB_LISTING_TIMEOUT_S)
        except ServiceError as error:
            logger.warning("GET /v1/models without training jobs: %s", error.message)
            return []
        models = []
        for job in jobs:
            finished = job.finished_at or job.created_at
            name = job.spec.get("model_name") or job.id
            info = service_pb2.ModelInfo(
                id=job.id, display_name=name, kind="fine_tuned", description=f"{name}: trained from "
                f"{job.spec['base_model']} ({job.spec['training_type']})", loaded=job.id in loaded,
                object="model", type="model", owned_by=client, created=int(finished.timestamp()),
                created_at=finished.isoformat().replace("+00:00", "Z"), base_model=job.spec["base_model"],
                model_name=name)
            if job.evaluation:
                info.evaluation.CopyFrom(evaluation_to_proto(job.evaluation))
            models.append(info)
        return models


def model_page(data: list, request) -> tuple[list, bool]:
    """The Anthropic SDK's paging over the listing: ``after_id`` / ``before_id`` and ``limit`` (0: all)."""
    ids = [m.id for m in data]
    start, end = 0, len(data)
    for name, value in (("after_id", request.after_id), ("before_id", request.before_id)):
        if value and value not in ids:
            raise ServiceError(ErrorKind.NOT_FOUND, f"{name} {shown(value)} is not a listed model", field=name)
    if request.after_id:
        start = ids.index(request.after_id) + 1
    if request.before_id:
        end = ids.index(request.before_id)
    if request.limit < 0:
        raise ServiceError.invalid("limit must not be negative", field="limit")
    if request.limit and end - start > request.limit:
        if request.before_id and not request.after_id:
            return data[end - request.limit:end], True
        return data[start:start + request.limit], True
    return data[start:end], False
