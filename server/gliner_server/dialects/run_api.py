"""Fastino's batch ``POST /run``.

Request: ``{"model_id": "...", "input": [{"text": "...", "parameters": {...}}]}``.
``model_id`` names a model or a configured endpoint; an endpoint's default
parameters apply to every input, and an input's own parameters override them
key by key. Parameters: ``entity_types`` (list, or name → description),
``threshold``, ``labels`` (a list for one classification task, or task →
labels), ``multi_label`` (for the list form), ``classifications`` (Pioneer
form), ``structures`` (name → fields), ``relations``.

Answer: a top-level JSON array with one object per input, in order:
``{"input", "latency_ms", "message", "output", "status"}`` (plus ``inference_id``
and ``queue_ms``; ``latency_ms`` is the time of the model passes that carried
the input, ``queue_ms`` the time it waited for one). ``output`` holds
``entities`` (``start``, ``end``, ``label``, ``text``, ``score``) with
``redacted_text`` (each entity replaced by ``<LABEL>``), and, when asked for,
``classifications``, ``structures`` and ``relations``. A bad input gets
``"status": "error"`` with a message while the others succeed; whole-request
problems are 400s. Every input goes to the core in one call: the inputs share
model passes and are recorded in one commit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..config import EndpointConfig
from ..core.engine import FULL_OUTPUT, ExtractionRequest
from ..core.recording import ANONYMOUS, Caller, Provenance, Recorded
from ..core.results import EntityMention, Span, TypedResult
from ..core.schema import ExtractionSchema, build_schema
from ..errors import ServiceError, shown
from . import body as fields
from . import schema_json

ROUTE = "/run"
PARAMETERS = {"entity_types", "threshold", "labels", "multi_label", "classifications", "structures",
              "relations"}
CLASSIFICATION_TASK = "classification"  # the task named by a plain list of labels


# The body as OpenAPI documents it (gliner_server.openapi): what RunDialect.handle() reads.
REQUEST_SCHEMA = {
    "type": "object", "required": ["input"],
    "properties": {
        "model_id": {"type": "string", "description": "a model, or a configured endpoint"},
        "input": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["text"],
            "properties": {"text": {"type": "string"},
                           "parameters": {"type": "object", "properties": {key: {} for key in sorted(PARAMETERS)}}},
        }},
        **fields.PROVENANCE_PROPERTIES,
    },
}
RESPONSE_SCHEMA = {"type": "array", "items": {
    "type": "object", "required": ["input", "latency_ms", "message", "output", "status"],
    "properties": {
        "input": {"type": ["string", "null"]}, "latency_ms": {"type": "number"},
        "message": {"type": "string"}, "status": {"type": "string", "enum": ["success", "error"]},
        "output": {"type": ["object", "null"]}, "inference_id": {"type": ["string", "null"]},
        "chunks": {"type": "integer", "minimum": 2},
        "queue_ms": {"type": "number", "description": "how long the input waited for a model pass"},
    },
}}


def parameters_schema(parameters: dict) -> ExtractionSchema:
    unknown = set(parameters) - PARAMETERS
    if unknown:
        raise ServiceError.invalid(
            f"Unknown parameter {shown(sorted(unknown)[0])}; use {', '.join(sorted(PARAMETERS))}", field="parameters")
    parts: dict[str, Any] = {}
    if parameters.get("entity_types") is not None:
        parts["entities"] = schema_json.entity_specs(parameters["entity_types"], "parameters.entity_types")
    labels = parameters.get("labels")
    if isinstance(labels, list):
        labels = {CLASSIFICATION_TASK: {"labels": labels,
                                        "multi_label": fields.optional_flag(parameters, "multi_label")}}
    tasks = []
    if labels is not None:
        tasks += schema_json.classification_specs(labels, "parameters.labels")
    if parameters.get("classifications") is not None:
        tasks += schema_json.classification_specs(parameters["classifications"], "parameters.classifications")
    if tasks:
        parts["classifications"] = tuple(tasks)
    if parameters.get("structures") is not None:
        parts["structures"] = schema_json.structure_specs(parameters["structures"], "parameters.structures",
                                                          json_api=True)
    if parameters.get("relations") is not None:
        parts["relations"] = schema_json.relation_specs(parameters["relations"], "parameters.relations")
    if not parts:
        raise ServiceError.invalid("parameters ask for nothing: give entity_types, labels, classifications, "
                                   "structures or relations (or call an endpoint with defaults)",
                                   field="parameters")
    return build_schema(**parts)


def redact(text: str, entities: list[EntityMention]) -> str:
    """Each entity replaced by ``<LABEL>``; where entities overlap, the higher score wins."""
    chosen: list[EntityMention] = []
    for entity in sorted(entities, key=lambda e: (-e.score, e.start)):
        if all(entity.end <= c.start or entity.start >= c.end for c in chosen):
            chosen.append(entity)
    for entity in sorted(chosen, key=lambda e: e.start, reverse=True):
        text = f"{text[:entity.start]}<{entity.label.upper()}>{text[entity.end:]}"
    return text


def _span(span: Span) -> dict:
    out = {"text": span.text, "score": span.score}
    if span.start is not None:
        out.update(start=span.start, end=span.end)
    return out


def _unique_texts(values) -> list[str]:
    """List values as text, deduplicated case-insensitively as the library's plain format does."""
    seen: set[str] = set()
    return [v.text for v in values if not (v.text.lower() in seen or seen.add(v.text.lower()))]


def run_output(text: str, schema: ExtractionSchema, result: TypedResult) -> dict:
    output: dict[str, Any] = {}
    if schema.entities:
        entities = sorted(result.entities, key=lambda e: (e.start, e.end))
        output["entities"] = [{"start": e.start, "end": e.end, "label": e.label, "text": e.text, "score": e.score}
                              for e in entities]
        output["redacted_text"] = redact(text, entities)
    if schema.classifications:
        multi = {c.name: c.multi_label for c in schema.classifications}
        output["classifications"] = {
            c.task: ([{"label": s.label, "score": s.score} for s in c.labels] if multi[c.task]
                     else ({"label": c.labels[0].label, "score": c.labels[0].score} if c.labels else None))
            for c in result.classifications}
    if schema.structures:
        dtypes = {s.name: {f.name: f.dtype for f in s.fields} for s in schema.structures}
        output["structures"] = {
            s.name: [{name: (values[0].text if values else None) if dtypes[s.name][name] == "str"
                      else _unique_texts(values) for name, values in record.fields} for record in s.records]
            for s in result.structures}
    if schema.relations:
        output["relations"] = [{"relation": r.relation, "head": _span(r.head), "tail": _span(r.tail)}
                               for r in result.relations]
    return output


@dataclass(frozen=True)
class RunCall:
    """A parsed ``/run`` body: one core request per input (or its error), in order."""

    model_id: str
    endpoint: EndpointConfig | None
    texts: list[str | None]                              # each input's text, for the answer
    requests: list[ExtractionRequest | ServiceError]
    provenances: list[Provenance]

    def answer_json(self, recorded: Sequence[Recorded | ServiceError]) -> bytes:
        return fields.encode_json([self._item(text, request, outcome)
                                   for text, request, outcome in zip(self.texts, self.requests, recorded)])

    def _item(self, text, request, recorded) -> dict:
        if isinstance(recorded, ServiceError):
            return {"input": text if isinstance(text, str) else None, "latency_ms": 0.0,
                    "message": recorded.message, "output": None, "status": "error"}
        outcome = recorded.outcome
        answer = {
            "input": text, "latency_ms": round(outcome.latency_ms, 3),
            "message": "Responses from endpoint." if self.endpoint else "Responses from model.",
            "output": run_output(text, request.schema, outcome.typed(request.schema)[0]),
            "status": "success",
            "inference_id": recorded.inference_id,
            "queue_ms": round(outcome.queue_ms, 3),
        }
        if outcome.chunked:  # the text was longer than the model's window
            answer["chunks"] = outcome.chunks[0]
        return answer


def _inputs(body: dict, max_inputs: int) -> list:
    items = body.get("input")
    if items is None:
        raise ServiceError.invalid("Missing required field: input", field="input")
    if not isinstance(items, list) or not items:
        raise ServiceError.invalid("input must be a non-empty list of {text, parameters} objects", field="input")
    if len(items) > max_inputs:
        raise ServiceError.invalid(f"Too many inputs: {len(items)} (at most {max_inputs} per request)",
                                   field="input")
    return items


def _item_request(item: Any, model_id: str, defaults: dict, provenance: Provenance
                  ) -> tuple[ExtractionRequest | ServiceError, Provenance]:
    """One input as a core request, or the client error that input gets in its place."""
    try:
        if not isinstance(item, dict):
            raise ServiceError.invalid("each input must be an object with text and parameters")
        if item.get("text") is None:
            raise ServiceError.invalid("Missing required field: text", field="text")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ServiceError.invalid("parameters must be an object", field="parameters")
        merged = {**defaults, **parameters}
        request = ExtractionRequest(texts=(item["text"],), schema=parameters_schema(merged),
                                    threshold=fields.threshold(merged), output=FULL_OUTPUT, model_id=model_id)
        return request, replace(provenance, parameters=merged)
    except ServiceError as error:
        return error, provenance


def parse(body: dict, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None, *,
          max_inputs: int = 64) -> RunCall:
    """Translate a /run body into one core request per input (an endpoint's defaults applied)."""
    items = _inputs(body, max_inputs)
    requested = fields.optional_str(body, "model_id")
    endpoint = (endpoints or {}).get(requested or "")
    model_id, defaults = (endpoint.model, endpoint.parameters) if endpoint else (requested or "", {})
    provenance = Provenance(route=ROUTE, task="run", caller=caller,
                            project_id=fields.optional_str(body, "project_id"),
                            training_job_id=fields.optional_str(body, "training_job_id"),
                            privacy_mode=fields.optional_flag(body, "privacy_mode"))
    pairs = [_item_request(item, model_id, defaults, provenance) for item in items]
    texts = [item.get("text") if isinstance(item, dict) else None for item in items]
    return RunCall(model_id=model_id, endpoint=endpoint, texts=texts, requests=[r for r, _ in pairs],
                   provenances=[p for _, p in pairs])


def parse_json(raw: bytes, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None, *,
               max_inputs: int = 64) -> RunCall:
    return parse(fields.decode_object(raw), caller, endpoints, max_inputs=max_inputs)
