"""Runs inferences and records each one in the history (one record per text).

Transport-agnostic: every route (REST dialects and gRPC) describes where a call
came from with a :class:`Provenance`; this module writes the records and only
then returns, so an acknowledged inference is in the history. When the history
cannot take records (stalled or failing), calls are refused before any model
work (503 ``UNAVAILABLE``); a record not stored in time fails its call the same
way, never acknowledged.

A call with a request id gets a ``dedupe_key`` per text (a digest of the id,
the text's position and what was asked), so that a retry of the same call
(by Envoy, or by a client reusing its ``x-request-id``) is stored once and
answered with the first attempt's inference ids.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import ServiceError
from .engine import NO_CONTEXT, CallContext, ExtractionOutcome, ExtractionRequest, InferenceEngine


@dataclass(frozen=True)
class Caller:
    """The API client behind a call (never its key)."""

    client_id: str
    privacy_mode: bool = False


ANONYMOUS = Caller("anonymous")
MAX_ID_CHARS = 200   # project and training job ids (the history's columns hold this much)


@dataclass(frozen=True)
class Provenance:
    route: str                              # "/gliner-2", "/run", "/inference", "grpc:Extract", ...
    task: str                               # "extract_entities", "schema", "run", ...
    caller: Caller = ANONYMOUS
    project_id: str | None = None
    training_job_id: str | None = None
    privacy_mode: bool = False              # asked for by this request
    parameters: dict = field(default_factory=dict)   # other request parameters, JSON

    def __post_init__(self):
        for name in ("project_id", "training_job_id"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_ID_CHARS:
                raise ServiceError.invalid(f"{name} has {len(value)} characters; at most {MAX_ID_CHARS}", field=name)

    @property
    def private(self) -> bool:
        return self.privacy_mode or self.caller.privacy_mode


@dataclass(frozen=True)
class Recorded:
    outcome: ExtractionOutcome
    inference_ids: list[str]
    created_at: datetime

    @property
    def inference_id(self) -> str | None:
        """The (first) text's history id; None when nothing was recorded."""
        return self.inference_ids[0] if self.inference_ids else None


class RecordingEngine:
    """The engine plus the history; ``history`` None records nothing."""

    def __init__(self, engine: InferenceEngine, history=None):
        self.engine = engine
        self.history = history

    def run(self, request: ExtractionRequest, provenance: Provenance, call: CallContext = NO_CONTEXT) -> Recorded:
        [recorded] = self.run_many([request], [provenance], call)
        if isinstance(recorded, ServiceError):
            raise recorded
        return recorded

    def run_many(self, requests: Sequence[ExtractionRequest | ServiceError], provenances: Sequence[Provenance],
                 call: CallContext = NO_CONTEXT, *, model_id: str | None = None
                 ) -> list[Recorded | ServiceError]:
        """The requests run together (see ``InferenceEngine.run_many``) and recorded in one commit."""
        job_id = self._check_model(requests, provenances, model_id)
        if self.history is not None:
            self.history.check_writable()   # no model work that could not be recorded
        outcomes = self.engine.run_many(requests, call, model_id=model_id)
        created_at = datetime.now(UTC)
        if self.history is None:
            return [o if isinstance(o, ServiceError) else Recorded(o, [], created_at) for o in outcomes]
        from ..history.records import InferenceRecord, new_inference_id

        records, spans = [], []
        for position, (request, provenance, outcome) in enumerate(zip(requests, provenances, outcomes)):
            if isinstance(outcome, ServiceError):
                spans.append(None)
                continue
            private = provenance.private
            share = outcome.latency_ms / len(request.texts)
            schema = request.schema.model_dump(mode="json")
            start = len(records)
            for index, (text, result) in enumerate(zip(request.texts, outcome.results)):
                records.append(InferenceRecord(
                    id=new_inference_id(), created_at=created_at, route=provenance.route,
                    model_id=outcome.model_id, task=provenance.task, client_id=provenance.caller.client_id,
                    text=None if private else text, schema=schema,
                    parameters=provenance.parameters or None,
                    output=None if private else result,
                    latency_ms=share, project_id=provenance.project_id,
                    training_job_id=provenance.training_job_id or job_id, privacy=private,
                    request_id=call.request_id,
                    dedupe_key=dedupe_key(call.request_id, position, index, request, provenance, text),
                ))
            spans.append((start, len(records)))
        ids = self.history.record_many(records)  # one durable transaction, shared with concurrent requests
        return [outcome if span is None else Recorded(outcome, ids[span[0]:span[1]], created_at)
                for outcome, span in zip(outcomes, spans)]

    def _check_model(self, requests, provenances, model_id: str | None) -> str | None:
        """NOT_FOUND for a model the caller may not use (another client's training job); the training job
        id of the model, if it is one (recorded with the inferences it answers)."""
        ids = {r.model_id for r in requests if isinstance(r, ExtractionRequest)}
        target = model_id if model_id is not None else (next(iter(ids)) if len(ids) == 1 else None)
        spec_of = getattr(self.engine.models, "spec", None)
        if target is None or spec_of is None or not provenances:
            return None
        return spec_of(target, client_id=provenances[0].caller.client_id).training_job_id


def dedupe_key(request_id: str | None, position: int, index: int, request: ExtractionRequest,
               provenance: Provenance, text: str) -> str | None:
    """What makes two records the same call's (a retry): its request id, place, and everything it asked.

    The text enters the digest except in privacy mode, whose records keep no
    trace of it; None without a request id.
    """
    if not request_id:
        return None
    asked = [request_id, position, index, provenance.route, request.model_id,
             request.schema.model_dump(mode="json"), request.threshold, provenance.parameters,
             None if provenance.private else text]
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:48]
