"""Recorded results → ``gliner2`` training records (``{"input", "output"}``).

The output is what ``gliner2.training.data.InputExample.to_dict`` writes and
``TrainingDataset.load`` / ``InputExample.from_dict`` read:

- ``entities``: every entity type of the schema → its mention texts (an empty
  list trains the type as absent), plus ``entity_descriptions``;
- ``classifications``: ``{"task", "labels", "true_label": [...]}`` with the
  schema's full label set, ``multi_label`` and ``label_descriptions``;
- ``json_structures``: one ``{name: {field: value}}`` per instance, a choice
  field as ``{"value", "choices"}``, plus ``json_descriptions``; a structure
  the answer has no instance of becomes one all-None instance, which trains
  "no instance";
- ``relations``: one ``{name: {"head", "tail"}}`` per pair.

The recorded result is the library's formatted output in any of its shapes
(with or without confidences and spans); confidences and offsets are dropped.
The normalised schema says which keys are which task and gives the label sets;
keys it does not name are ignored.
"""
from __future__ import annotations

from typing import Any


def training_example(text: str, schema: dict, output: Any) -> dict | None:
    """The training record for ``text`` answered by ``output``; None if nothing to train."""
    if not isinstance(output, dict):
        return None
    annotations: dict[str, Any] = {}
    if schema.get("entities"):
        annotations.update(_entities(schema["entities"], output.get("entities")))
    classifications = [c for c in (_classification(spec, output.get(spec["name"]))
                                   for spec in schema.get("classifications") or ()) if c]
    if classifications:
        annotations["classifications"] = classifications
    structures, descriptions = [], {}
    for spec in schema.get("structures") or ():
        instances = _structure_instances(spec, output.get(spec["name"]))
        structures += [{spec["name"]: fields} for fields in instances]
        described = {f["name"]: f["description"] for f in spec["fields"] if f.get("description")}
        if instances and described:
            descriptions[spec["name"]] = described
    if structures:
        annotations["json_structures"] = structures
    if descriptions:
        annotations["json_descriptions"] = descriptions
    relations = _relations(schema.get("relations") or (), output.get("relation_extraction"))
    if relations:
        annotations["relations"] = relations
    return {"input": text, "output": annotations} if annotations else None


def _texts(value: Any) -> list[str]:
    """Mention texts from a formatted value: a text, ``{"text", ...}``, or a list of them."""
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str) and item and item not in texts:
            texts.append(item)
    return texts


def _labels(value: Any, allowed) -> list[str]:
    """Chosen labels from a formatted value: a label, ``{"label"|"text", ...}``, or a list."""
    items = value if isinstance(value, list) else [value]
    labels = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("label", item.get("text"))
        if item in allowed and item not in labels:
            labels.append(item)
    return labels


def _entities(specs, found: Any) -> dict:
    found = found if isinstance(found, dict) else {}
    result: dict[str, Any] = {"entities": {spec["name"]: _texts(found.get(spec["name"])) for spec in specs}}
    descriptions = {spec["name"]: spec["description"] for spec in specs if spec.get("description")}
    if descriptions:
        result["entity_descriptions"] = descriptions
    return result


def _classification(spec: dict, value: Any) -> dict | None:
    labels = list(spec["labels"])
    chosen = _labels(value, labels)
    multi_label = bool(spec.get("multi_label")) or len(chosen) > 1
    if not chosen and not multi_label:
        return None  # a single-label task needs its answer
    result: dict[str, Any] = {"task": spec["name"], "labels": labels, "true_label": chosen}
    if multi_label:
        result["multi_label"] = True
    if spec.get("label_descriptions"):
        result["label_descriptions"] = dict(spec["label_descriptions"])
    return result


def _structure_instances(spec: dict, value: Any) -> list[dict]:
    instances = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]
    result = [_structure_fields(spec["fields"], instance) for instance in instances]
    result = [fields for fields in result if any(v is not None for v in fields.values())]
    if not result:
        # No instance found: all-None fields train the structure as absent.
        # Choice fields cannot be None (the library would read "None" as a choice).
        empty = {f["name"]: None for f in spec["fields"] if not f.get("choices")}
        result = [empty] if empty else []
    return result


def _structure_fields(fields, instance: dict) -> dict:
    """Every field of the schema in order; empty ones None, unanswered choice fields left out."""
    result: dict[str, Any] = {}
    for field in fields:
        value = instance.get(field["name"])
        if field.get("choices"):
            chosen = _labels(value, field["choices"])
            if chosen:
                # The library's processor reads a list of choices, but its validate()
                # rejects any list: a single choice stays a plain value.
                several = field.get("dtype") == "list" and len(chosen) > 1
                result[field["name"]] = {"value": chosen if several else chosen[0],
                                         "choices": list(field["choices"])}
            continue
        texts = _texts(value)
        if not texts:
            result[field["name"]] = None
        else:
            result[field["name"]] = texts if field.get("dtype", "list") == "list" else texts[0]
    return result


def _relations(specs, found: Any) -> list[dict]:
    found = found if isinstance(found, dict) else {}
    relations = []
    for spec in specs:
        for pair in found.get(spec["name"]) or ():
            if isinstance(pair, dict):
                head, tail = pair.get("head"), pair.get("tail")
            elif isinstance(pair, list) and len(pair) == 2:
                head, tail = pair
            else:
                continue
            head, tail = _texts(head), _texts(tail)
            relation = {spec["name"]: {"head": head[0], "tail": tail[0]}} if head and tail else None
            if relation and relation not in relations:
                relations.append(relation)
    return relations
