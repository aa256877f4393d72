"""Protobuf messages ↔ the core's types. Mechanical, no decisions."""
from __future__ import annotations

from google.api import httpbody_pb2

from gliner_client.v1 import results_pb2, schema_pb2

from ..core import results as core_results
from ..core.schema import (
    ClassificationSpec,
    EntitySpec,
    ExtractionSchema,
    FieldSpec,
    RelationSpec,
    StructureSpec,
    build_schema,
)

_DTYPE = {schema_pb2.VALUE_KIND_UNSPECIFIED: None, schema_pb2.VALUE_KIND_LIST: "list",
          schema_pb2.VALUE_KIND_STR: "str"}


def _opt(message, name: str):
    return getattr(message, name) if message.HasField(name) else None


def _kind(value: int, where: str):
    """A ValueKind enum value as the core's dtype; a number no version of the enum defines is a 400."""
    from ..errors import ServiceError

    if value not in _DTYPE:
        raise ServiceError.invalid(f"{where}: unknown kind {value} (use VALUE_KIND_LIST or VALUE_KIND_STR)",
                                   field=where)
    return _DTYPE[value]


def schema_from_proto(schema: schema_pb2.Schema) -> ExtractionSchema:
    from pydantic import ValidationError

    from ..core.schema import describe_validation_error
    from ..errors import ServiceError

    try:
        parts = dict(
            entities=tuple(EntitySpec(name=e.name, description=e.description or None,
                                      threshold=_opt(e, "threshold"), dtype=_kind(e.kind, f"schema.entities[{i}].kind"))
                           for i, e in enumerate(schema.entities)),
            classifications=tuple(ClassificationSpec(
                name=c.name, labels=tuple(c.labels), multi_label=c.multi_label,
                label_descriptions=dict(c.label_descriptions) or None,
                cls_threshold=0.5 if _opt(c, "cls_threshold") is None else c.cls_threshold)
                for c in schema.classifications),
            structures=tuple(StructureSpec(name=s.name, fields=tuple(
                FieldSpec(name=f.name, dtype=_kind(f.kind, f"schema.structures[{i}].fields[{j}].kind") or "list",
                          choices=tuple(f.choices) or None,
                          description=f.description or None, threshold=_opt(f, "threshold"))
                for j, f in enumerate(s.fields))) for i, s in enumerate(schema.structures)),
            relations=tuple(RelationSpec(name=r.name, description=r.description or None,
                                         threshold=_opt(r, "threshold")) for r in schema.relations),
        )
    except ValidationError as error:
        raise ServiceError.invalid(describe_validation_error(error, "schema"), field="schema") from None
    return build_schema(**parts)


def _span(span: core_results.Span) -> results_pb2.Span:
    return results_pb2.Span(text=span.text, start=span.start, end=span.end, score=span.score)


def result_to_proto(result: core_results.TypedResult) -> results_pb2.ExtractionResult:
    return results_pb2.ExtractionResult(
        entities=[results_pb2.EntityMention(text=e.text, label=e.label, start=e.start, end=e.end,
                                            score=e.score) for e in result.entities],
        classifications=[results_pb2.ClassificationResult(
            task=c.task, labels=[results_pb2.LabelScore(label=s.label, score=s.score) for s in c.labels])
            for c in result.classifications],
        structures=[results_pb2.StructureResult(name=s.name, records=[
            results_pb2.StructureRecord(fields=[
                results_pb2.FieldValue(name=name, values=[_span(v) for v in values])
                for name, values in record.fields])
            for record in s.records]) for s in result.structures],
        relations=[results_pb2.RelationMention(relation=r.relation, head=_span(r.head), tail=_span(r.tail))
                   for r in result.relations],
    )


def json_http_body(data: bytes) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)
