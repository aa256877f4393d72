"""Runs inferences and records each one in the history (one record per text).

Transport-agnostic: every route (REST dialects and gRPC) describes where a call
came from with a :class:`Provenance`; this module writes the records and only
then returns, so an acknowledged inference is in the history.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from .engine import NO_CONTEXT, CallContext, ExtractionOutcome, ExtractionRequest, InferenceEngine


@dataclass(frozen=True)
class Caller:
    """The API client behind a call (never its key)."""

    client_id: str
    privacy_mode: bool = False


ANONYMOUS = Caller("anonymous")


@dataclass(frozen=True)
class Provenance:
    route: str                              # "/gliner-2", "/run", "/inference", "grpc:Extract", ...
    task: str                               # "extract_entities", "schema", "run", ...
    caller: Caller = ANONYMOUS
    project_id: Optional[str] = None
    training_job_id: Optional[str] = None
    privacy_mode: bool = False              # asked for by this request
    parameters: dict = field(default_factory=dict)   # other request parameters, JSON

    @property
    def private(self) -> bool:
        return self.privacy_mode or self.caller.privacy_mode


@dataclass(frozen=True)
class Recorded:
    outcome: ExtractionOutcome
    inference_ids: list[str]
    created_at: datetime


class RecordingEngine:
    """The engine plus the history; ``history`` None records nothing."""

    def __init__(self, engine: InferenceEngine, history=None):
        self.engine = engine
        self.history = history

    def run(self, request: ExtractionRequest, provenance: Provenance, call: CallContext = NO_CONTEXT) -> Recorded:
        outcome = self.engine.run(request, call)
        created_at = datetime.now(timezone.utc)
        if self.history is None:
            return Recorded(outcome, [], created_at)
        from ..history.records import InferenceRecord, new_inference_id

        private = provenance.private
        share = outcome.latency_ms / len(request.texts)
        records = [
            InferenceRecord(
                id=new_inference_id(), created_at=created_at, route=provenance.route,
                model_id=outcome.model_id, task=provenance.task, client_id=provenance.caller.client_id,
                text=None if private else text,
                schema=request.schema.model_dump(mode="json"),
                parameters=provenance.parameters or None,
                output=None if private else result,
                latency_ms=share, project_id=provenance.project_id,
                training_job_id=provenance.training_job_id, privacy=private,
            )
            for text, result in zip(request.texts, outcome.results)
        ]
        self.history.record_many(records)  # one durable transaction, shared with concurrent requests
        return Recorded(outcome, [r.id for r in records], created_at)
