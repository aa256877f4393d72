"""Pioneer's native ``POST /inference``.

Request: ``{"model_id", "text", "schema": {"entities", "classifications",
"structures", "relations"}, "threshold"}`` plus the optional ``project_id``,
``training_job_id``, ``privacy_mode``, ``include_confidence`` and
``include_spans``. Every schema key combines in one pass. The answer:
``{"id", "model_id", "result", "latency_ms", "created_at"}`` where ``result``
is the gliner2 library's formatted output (plus ``queue_ms``: ``latency_ms`` is
the model passes' time, ``queue_ms`` the wait for one). ``"task": "generate"`` asks for a
decoder model, which this service does not run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.engine import ExtractionRequest, OutputOptions
from ..core.recording import ANONYMOUS, Caller, Provenance, Recorded
from ..core.schema import build_schema
from ..errors import ServiceError, shown
from . import body as fields
from . import schema_json

ROUTE = "/inference"
SCHEMA_KEYS = ("entities", "classifications", "structures", "relations")


# The body as OpenAPI documents it (gliner_server.openapi): what parse() reads.
REQUEST_SCHEMA = {
    "type": "object", "required": ["text", "schema"],
    "properties": {
        "text": {"type": "string"},
        "schema": {"type": "object", "description": "entities (names, or name -> description), classifications "
                                                     "([{task, labels, multi_label?, cls_threshold?}]), structures "
                                                     "(name -> fields), relations (names or {name, description})",
                   "properties": {key: {} for key in SCHEMA_KEYS}},
        "model_id": {"type": "string"},
        "task": {"type": "string", "enum": ["extract"]},
        **fields.OUTPUT_PROPERTIES,
        **fields.PROVENANCE_PROPERTIES,
    },
}
RESPONSE_SCHEMA = {
    "type": "object", "required": ["id", "model_id", "result", "latency_ms", "created_at"],
    "properties": {
        "id": {"type": ["string", "null"]}, "model_id": {"type": "string"},
        "result": {"type": "object"},
        "latency_ms": {"type": "number", "description": "time of the model passes that carried the request"},
        "created_at": {"type": "string"},
        "queue_ms": {"type": "number", "description": "how long the request waited for a model pass"},
        "chunks": {"type": "integer", "minimum": 2, "description": "present when the text was longer than the "
                                                                    "model's window: how many chunks it took"},
    },
}


@dataclass(frozen=True)
class InferenceCall:
    request: ExtractionRequest
    provenance: Provenance

    @staticmethod
    def answer(recorded: Recorded) -> bytes:
        outcome = recorded.outcome
        answer = {
            "id": recorded.inference_id,
            "model_id": outcome.model_id,
            "result": outcome.results[0],
            "latency_ms": round(outcome.latency_ms, 3),
            "created_at": recorded.created_at.isoformat().replace("+00:00", "Z"),
            "queue_ms": round(outcome.queue_ms, 3),
        }
        if outcome.chunked:  # the text was longer than the model's window
            answer["chunks"] = outcome.chunks[0]
        return fields.encode_json(answer)


def pioneer_schema(spec: Any):
    """The normalised schema of a Pioneer ``schema`` object."""
    if not isinstance(spec, dict):
        raise ServiceError.invalid("schema must be an object with entities, classifications, structures "
                                   "or relations", field="schema")
    unknown = set(spec) - set(SCHEMA_KEYS)
    if unknown:
        raise ServiceError.invalid(f"Invalid schema: unknown key {shown(sorted(unknown)[0])}; use "
                                   f"{', '.join(SCHEMA_KEYS)}", field="schema")
    parts: dict[str, Any] = {}
    if spec.get("entities") is not None:
        parts["entities"] = schema_json.entity_specs(spec["entities"], "schema.entities")
    if spec.get("classifications") is not None:
        parts["classifications"] = schema_json.classification_specs(spec["classifications"],
                                                                    "schema.classifications")
    if spec.get("structures") is not None:
        parts["structures"] = schema_json.structure_specs(spec["structures"], "schema.structures")
    if spec.get("relations") is not None:
        parts["relations"] = schema_json.relation_specs(spec["relations"], "schema.relations")
    return build_schema(**parts)


def parse(body: dict, caller: Caller = ANONYMOUS) -> InferenceCall:
    task = body.get("task")
    if task == "generate":
        raise ServiceError.invalid('Decoder models ("task": "generate") are not served here: this service runs '
                                   "GLiNER2 encoder models; send a schema instead", field="task")
    if task not in (None, "", "extract"):
        raise ServiceError.invalid(f"Unknown task {shown(task)}; omit it and send a schema", field="task")
    text = body.get("text")
    if text is None:
        raise ServiceError.invalid("Missing required field: text", field="text")
    if body.get("schema") is None:
        raise ServiceError.invalid("Missing required field: schema", field="schema")
    output = OutputOptions(include_confidence=fields.optional_flag(body, "include_confidence"),
                           include_spans=fields.optional_flag(body, "include_spans"))
    request = ExtractionRequest(texts=(text,), schema=pioneer_schema(body["schema"]),
                                threshold=fields.threshold(body), output=output,
                                model_id=fields.optional_str(body, "model_id") or "")
    provenance = Provenance(
        route=ROUTE, task="inference", caller=caller, project_id=fields.optional_str(body, "project_id"),
        training_job_id=fields.optional_str(body, "training_job_id"),
        privacy_mode=fields.optional_flag(body, "privacy_mode"),
        parameters={"threshold": request.threshold, "include_confidence": output.include_confidence,
                    "include_spans": output.include_spans},
    )
    return InferenceCall(request=request, provenance=provenance)


def parse_json(raw: bytes, caller: Caller = ANONYMOUS) -> InferenceCall:
    return parse(fields.decode_object(raw), caller)
