"""The library's result formatting, gliner2 2.1.0 ``gliner2/inference/runtime.py`` (Apache-2.0), verbatim.

``format_results``, ``format_entity_dict``, ``format_struct`` and
``_format_classification`` are plain Python over plain values in the library
(the module around them imports torch), so they are copied as they are: the
public payload, key order and deduplication included, is the library's by
construction. Keep in step with the gliner2 version the converter records.
"""
from __future__ import annotations

from typing import Any


def _is_score(value: object) -> bool:
    """True for a confidence scalar, excluding bools."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_classification(value: object, include_confidence: bool) -> object:
    """Format a single- or multi-label classification, including JSON lists.

    Args:
        value: ``(label, score)``, JSON ``[label, score]``, or a list of pairs.
        include_confidence: When True, keep scores on the public payload.

    Returns:
        A label, a ``{label, confidence}`` dict, or a list of those.
    """
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        if isinstance(first, (list, tuple)):
            if include_confidence:
                return [{"label": item[0], "confidence": item[1]} for item in value]
            return [item[0] for item in value]
        # A pair is only a (label, score) if the score is numeric; a
        # two-label list stays a list.
        if len(value) == 2 and isinstance(first, str) and _is_score(value[1]):
            label, conf = value
            return {"label": label, "confidence": conf} if include_confidence else label
    return value


def format_results(
    results: dict,
    include_confidence: bool = False,
    requested_relations: list[str] | None = None,
    classification_tasks: list[str] | None = None,
) -> dict[str, Any]:
    """Format extraction results into the public AutoExtractor payload."""
    formatted = {}
    relations = {}
    requested_relations = requested_relations or []
    classification_tasks = classification_tasks or []

    for key, value in results.items():
        is_classification = key in classification_tasks
        looks_like_relations = isinstance(value, list) and len(value) > 0 and (
            (isinstance(value[0], tuple) and len(value[0]) == 2)
            or (isinstance(value[0], dict) and "head" in value[0] and "tail" in value[0]))
        is_relation = not is_classification and (key in requested_relations or looks_like_relations)

        if is_classification:
            formatted[key] = _format_classification(value, include_confidence)
        elif is_relation:
            relations[key] = value if isinstance(value, list) else []
        elif isinstance(value, list):
            if len(value) == 0:
                formatted[key] = {} if key == "entities" else value
            elif isinstance(value[0], dict):
                if key == "entities":
                    formatted[key] = format_entity_dict(value[0], include_confidence)
                else:
                    formatted[key] = [format_struct(v, include_confidence) for v in value]
            elif isinstance(value[0], tuple):
                if include_confidence:
                    formatted[key] = [{"label": label, "confidence": c} for label, c in value]
                else:
                    formatted[key] = [label for label, _ in value]
            else:
                formatted[key] = value
        elif isinstance(value, tuple):
            label, conf = value
            formatted[key] = {"label": label, "confidence": conf} if include_confidence else label
        elif isinstance(value, dict):
            formatted[key] = format_struct(value, include_confidence)
        else:
            formatted[key] = value

    for rel in requested_relations:
        if rel not in relations:
            relations[rel] = []

    if relations:
        formatted["relation_extraction"] = relations

    return formatted


def format_entity_dict(entities: dict, include_confidence: bool) -> dict:
    """Deduplicate and optionally keep confidence on an entity-type map."""
    formatted = {}
    for name, spans in entities.items():
        if isinstance(spans, list):
            unique = []
            seen = set()
            for span in spans:
                if isinstance(span, tuple):
                    text, conf, start, end = span
                    if text and (text.lower(), start, end) not in seen:
                        seen.add((text.lower(), start, end))
                        unique.append(
                            {"text": text, "confidence": conf} if include_confidence else text
                        )
                elif isinstance(span, dict):
                    text = span.get("text", "")
                    if "start" in span and "end" in span:
                        key = (text.lower(), span["start"], span["end"])
                    else:
                        key = (text.lower(), None, None)
                    if text and key not in seen:
                        seen.add(key)
                        unique.append(span)
                else:
                    if span and span.lower() not in seen:
                        seen.add(span.lower())
                        unique.append(span)
            formatted[name] = unique
        elif isinstance(spans, tuple):
            text, conf, _, _ = spans
            formatted[name] = (
                {"text": text, "confidence": conf} if include_confidence and text else text
            )
        else:
            formatted[name] = spans or None
    return formatted


def format_struct(struct: dict, include_confidence: bool) -> dict:
    """Deduplicate and optionally keep confidence on a structure instance."""
    formatted = {}
    for field, value in struct.items():
        if isinstance(value, list):
            unique = []
            seen = set()
            for v in value:
                if isinstance(v, tuple):
                    text, conf, start, end = v
                    if text and (text.lower(), start, end) not in seen:
                        seen.add((text.lower(), start, end))
                        unique.append(
                            {"text": text, "confidence": conf} if include_confidence else text
                        )
                elif isinstance(v, dict):
                    text = v.get("text", "")
                    if "start" in v and "end" in v:
                        key = (text.lower(), v["start"], v["end"])
                    else:
                        key = (text.lower(), None, None)
                    if text and key not in seen:
                        seen.add(key)
                        unique.append(v)
                else:
                    if v and v.lower() not in seen:
                        seen.add(v.lower())
                        unique.append(v)
            formatted[field] = unique
        elif isinstance(value, tuple):
            text, conf, _, _ = value
            formatted[field] = (
                {"text": text, "confidence": conf} if include_confidence and text else text
            )
        elif value:
            formatted[field] = value
        else:
            formatted[field] = None
    return formatted
