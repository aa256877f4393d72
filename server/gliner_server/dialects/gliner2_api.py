"""Fastino's hosted ``POST /gliner-2`` (and the ``gliner2`` library's GLiNER2API client).

Accepted bodies:

* ``{"text", "labels": [...]}`` → entities: ``{"entities": {label: [text, ...]}}``
* ``{"text", "labels": {task: [labels]}}`` → classification: ``{task: label}``
* ``{"task": "extract_json", "text", "schema": {structure: [field specs]}}``
* what GLiNER2API sends: ``task`` (extract_entities, classify_text,
  extract_json, schema), ``text`` (a string, or a list of strings), ``schema``,
  ``threshold``, ``include_confidence``, ``include_spans``, ``format_results``.

A single text is answered with its result object, exactly as the library
formats it; a list of texts with ``{"result": [one result per text]}`` (the
client reads ``result`` when present, and needs an object at the top).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.engine import ExtractionOutcome, ExtractionRequest, OutputOptions
from ..core.recording import ANONYMOUS, Caller, Provenance
from ..core.schema import build_schema
from ..errors import ServiceError, shown
from . import body as fields
from . import schema_json

ROUTE = "/gliner-2"

TASKS = ("extract_entities", "classify_text", "extract_json", "schema")
# classify_text with {"categories": [...]} names no task; the answer uses this key,
# which the GLiNER2API client maps back to the caller's task name.
CATEGORIES_TASK = "classification"
_SCHEMA_KEYS = {"entities", "entity_dtype", "entity_threshold", "classifications",
                "structures", "relations", "relation_threshold"}


# The body as OpenAPI documents it (gliner_server.openapi): what parse() reads.
REQUEST_SCHEMA = {
    "type": "object", "required": ["text"],
    "properties": {
        "text": {"description": "a text, or several (answered as {\"result\": [...]})",
                 "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "task": {"type": "string", "enum": list(TASKS)},
        "labels": {"description": "entity labels (a list, or label -> description), or classification tasks "
                                  "(task -> labels)", "oneOf": [{"type": "array", "items": {"type": "string"}},
                                                                {"type": "object"}]},
        "schema": {"description": "the task's schema: labels, {\"categories\": [...]}, structures of "
                                  "\"name::dtype::description\" fields, or a full schema (entities, "
                                  "classifications, structures, relations)"},
        **fields.OUTPUT_PROPERTIES,
        "format_results": {"type": "boolean"},
        "model_id": {"type": "string"},
        **fields.PROVENANCE_PROPERTIES,
    },
}
RESPONSE_SCHEMA = {"type": "object", "description": "the gliner2 library's formatted output for the text "
                                                    "(entities, task -> label, structure -> records, "
                                                    "relation_extraction), or {\"result\": [...]} for a list"}


@dataclass(frozen=True)
class Gliner2Call:
    request: ExtractionRequest
    batch: bool
    provenance: Provenance

    def answer(self, outcome: ExtractionOutcome) -> Any:
        return {"result": outcome.results} if self.batch else outcome.results[0]

    def answer_json(self, outcome: ExtractionOutcome) -> bytes:
        return fields.encode_json(self.answer(outcome))


def _texts(body: dict) -> tuple[tuple[str, ...], bool]:
    text = body.get("text")
    if text is None:
        raise ServiceError.invalid("Missing required field: text", field="text")
    if isinstance(text, str):
        return (text,), False
    if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
        return tuple(text), True
    raise ServiceError.invalid("text must be a string or a non-empty list of strings", field="text")


def _infer_task(body: dict) -> str:
    labels, schema = body.get("labels"), body.get("schema")
    if isinstance(labels, list):
        return "extract_entities"
    if isinstance(labels, dict):
        return "classify_text"
    if isinstance(schema, dict) and _SCHEMA_KEYS & set(schema):
        return "schema"
    if labels is None and schema is None:
        raise ServiceError.invalid("Missing required field: labels", field="labels")
    raise ServiceError.invalid(
        "labels must be a list of entity labels or an object of classification tasks", field="labels")


def _spec(body: dict, task: str) -> Any:
    spec = body.get("schema") if body.get("schema") is not None else body.get("labels")
    if spec is None:
        field = "schema" if task in ("extract_json", "schema") else "labels"
        raise ServiceError.invalid(f"Missing required field: {field}", field=field)
    return spec


def _schema_for(task: str, spec: Any):
    if task == "extract_entities":
        if isinstance(spec, dict) and "entities" in spec:
            spec = spec["entities"]
        return build_schema(entities=schema_json.entity_specs(spec, "labels"))
    if task == "classify_text":
        if isinstance(spec, dict) and set(spec) == {"categories"}:
            spec = {CATEGORIES_TASK: spec["categories"]}
        elif isinstance(spec, list):
            spec = {CATEGORIES_TASK: spec}
        return build_schema(classifications=schema_json.classification_specs(spec, "labels"))
    if task == "extract_json":
        return build_schema(structures=schema_json.structure_specs(spec, "schema", json_api=True))
    # task == "schema": the dict GLiNER2API's SchemaAPI.build() produces.
    if not isinstance(spec, dict):
        raise ServiceError.invalid("schema must be an object", field="schema")
    unknown = set(spec) - _SCHEMA_KEYS
    if unknown:
        raise ServiceError.invalid(f"Invalid schema: unknown key {shown(sorted(unknown)[0])}", field="schema")
    parts: dict[str, Any] = {}
    if spec.get("entities") is not None:
        parts["entities"] = schema_json.entity_specs(spec["entities"], "schema.entities")
    if spec.get("classifications") is not None:
        parts["classifications"] = schema_json.classification_specs(
            spec["classifications"], "schema.classifications")
    if spec.get("structures") is not None:
        parts["structures"] = schema_json.structure_specs(spec["structures"], "schema.structures")
    if spec.get("relations") is not None:
        parts["relations"] = schema_json.relation_specs(spec["relations"], "schema.relations")
    for key in ("entity_dtype", "entity_threshold", "relation_threshold"):
        if spec.get(key) is not None:
            parts[key] = spec[key]
    return build_schema(**parts)


def parse_json(raw: bytes, caller: Caller = ANONYMOUS) -> Gliner2Call:
    return parse(fields.decode_json(raw), caller)


def parse(body: dict, caller: Caller = ANONYMOUS) -> Gliner2Call:
    """Translate a /gliner-2 body (already decoded from JSON) into a core request."""
    if not isinstance(body, dict):
        raise ServiceError.invalid("The request body must be a JSON object")
    texts, batch = _texts(body)
    task = body.get("task") or _infer_task(body)
    if task not in TASKS:
        raise ServiceError.invalid(f"Unknown task {shown(task)}; use one of {', '.join(TASKS)}", field="task")
    schema = _schema_for(task, _spec(body, task))
    output = OutputOptions(
        format_results=fields.optional_flag(body, "format_results", True),
        include_confidence=fields.optional_flag(body, "include_confidence"),
        include_spans=fields.optional_flag(body, "include_spans"),
    )
    request = ExtractionRequest(texts=texts, schema=schema, threshold=fields.threshold(body), output=output,
                                model_id=fields.optional_str(body, "model_id") or "")
    provenance = Provenance(
        route=ROUTE, task=task, caller=caller, project_id=fields.optional_str(body, "project_id"),
        training_job_id=fields.optional_str(body, "training_job_id"),
        privacy_mode=fields.optional_flag(body, "privacy_mode"),
        parameters={"threshold": request.threshold, **{k: getattr(output, k) for k in
                                                         ("format_results", "include_confidence", "include_spans")}},
    )
    return Gliner2Call(request=request, batch=batch, provenance=provenance)
