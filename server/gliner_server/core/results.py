"""Typed results, derived from the library's formatted output.

The engine always asks the library for formatted results with confidences and
spans; :func:`typed_result` turns that into flat, typed records that the gRPC
front end (and any dialect that wants offsets and scores) maps to its wire type.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .schema import ExtractionSchema


@dataclass(frozen=True)
class Span:
    text: str
    score: float
    start: int | None = None   # None for a choice value, which is not a span of the text
    end: int | None = None


@dataclass(frozen=True)
class EntityMention:
    text: str
    label: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class ClassificationOutcome:
    task: str
    labels: tuple[LabelScore, ...]


@dataclass(frozen=True)
class StructureRecord:
    fields: tuple[tuple[str, tuple[Span, ...]], ...]   # (field name, values) in schema order


@dataclass(frozen=True)
class StructureOutcome:
    name: str
    records: tuple[StructureRecord, ...]


@dataclass(frozen=True)
class RelationMention:
    relation: str
    head: Span
    tail: Span


@dataclass(frozen=True)
class TypedResult:
    entities: tuple[EntityMention, ...] = ()
    classifications: tuple[ClassificationOutcome, ...] = ()
    structures: tuple[StructureOutcome, ...] = ()
    relations: tuple[RelationMention, ...] = field(default=())


def _span(value, text: str) -> Span | None:
    """A typed span whose offsets index the caller's ``text``.

    The library appends "." to a text without final punctuation before it
    runs (``processor._normalize_text``), so a span may cover that period:
    it is clipped to the original text, and dropped if nothing is left.
    """
    if not isinstance(value, dict) or not value.get("text"):
        return None
    start, end = value.get("start"), value.get("end")
    covered = value["text"]
    if start is not None and end is not None:
        end = min(end, len(text))
        covered = text[start:end]
        if not covered.strip():
            return None
    return Span(text=covered, score=float(value.get("confidence", 0.0)), start=start, end=end)


def _spans(value, text: str) -> tuple[Span, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(s for s in (_span(i, text) for i in items) if s is not None)


def _labels(value) -> tuple[LabelScore, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(LabelScore(label=i["label"], score=float(i["confidence"]))
                 for i in items if isinstance(i, dict) and "label" in i)


def typed_result(formatted: dict, schema: ExtractionSchema, text: str) -> TypedResult:
    """``formatted`` is the library's result for ``text``, with include_confidence and include_spans."""
    found = formatted.get("entities") or {}
    entities = tuple(
        EntityMention(text=s.text, label=e.name, start=s.start, end=s.end, score=s.score)
        for e in schema.entities
        for s in _spans(found.get(e.name), text)
        if s.start is not None
    )
    classifications = tuple(
        ClassificationOutcome(task=c.name, labels=_labels(formatted.get(c.name)))
        for c in schema.classifications
    )
    structures = tuple(
        StructureOutcome(
            name=s.name,
            records=tuple(
                StructureRecord(fields=tuple((f.name, _spans(record.get(f.name), text)) for f in s.fields))
                for record in formatted.get(s.name) or []
                if isinstance(record, dict)
            ),
        )
        for s in schema.structures
    )
    found_relations = formatted.get("relation_extraction") or {}
    relations = tuple(
        RelationMention(relation=r.name, head=head, tail=tail)
        for r in schema.relations
        for pair in found_relations.get(r.name) or []
        if isinstance(pair, dict)
        for head, tail in [(_span(pair.get("head"), text), _span(pair.get("tail"), text))]
        if head is not None and tail is not None
    )
    return TypedResult(entities=entities, classifications=classifications,
                       structures=structures, relations=relations)
