"""The library's schema dict and decoding metadata for an ExtractionSchema, without gliner2.

The service hands the library a ``gliner2.Schema`` built by
``core.schema.to_library_schema``; the library then turns it into a schema dict
(``Schema.build()``, what preprocessing reads) and a metadata dict (what
decoding and formatting read: dtypes, thresholds, orders), in
``ExtractorRuntimeMixin._build_schema_dicts_and_metadata``. This module makes
the same builder calls on a port of the part of gliner2 2.1.0
``gliner2.inference.schema.Schema`` / ``StructureBuilder`` that the service's
schema surface reaches, so both dicts are equal to the library's, key order
included. Out of that surface (so not ported): validators (the service has
none, metadata carries the library's empty ``[]``), entity attribute groups,
classification ``top_k``/``prompt``/``examples``/``class_act``, record modes
other than ``"natural"``, anchors and occurrence policies, and the builder's
range checks on thresholds (``ExtractionSchema`` already enforces them).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..core.schema import ExtractionSchema


class _StructureBuilder:
    """gliner2 2.1.0 `StructureBuilder`: fields collect here and land in the schema on `_auto_finish`."""

    def __init__(self, schema: _Schema, parent: str, *, mode: str | None):
        self.schema = schema
        self.parent = parent
        self.fields: OrderedDict[str, Any] = OrderedDict()
        self.descriptions: OrderedDict[str, str] = OrderedDict()
        self.field_order: list[str] = []
        self._finished = False
        self._mode = mode
        self._field_records: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def field(self, name: str, dtype: str = "list", choices: list[str] | None = None,
              description: str | None = None, threshold: float | None = None,
              cardinality: str | None = None, exclusive: bool = False) -> _StructureBuilder:
        """gliner2 2.1.0 `StructureBuilder.field` (without validators)."""
        self.fields[name] = {"value": "", "choices": choices} if choices else ""
        self.field_order.append(name)
        if description:
            self.descriptions[name] = description
        if cardinality is not None or exclusive:
            entry: dict[str, Any] = {}
            if cardinality is not None:
                entry["cardinality"] = cardinality
            if exclusive:
                entry["exclusive"] = True
            self._field_records[name] = entry
        self.schema._field_metadata[f"{self.parent}.{name}"] = {
            "dtype": dtype, "threshold": threshold, "choices": choices, "validators": [],
        }
        return self

    def _auto_finish(self) -> None:
        """gliner2 2.1.0 `StructureBuilder._auto_finish`."""
        if self._finished:
            return
        schema = self.schema
        schema._field_orders[self.parent] = self.field_order
        schema.schema["json_structures"].append({self.parent: self.fields})
        if self.descriptions:
            schema.schema["json_descriptions"][self.parent] = self.descriptions
        if self._mode is not None:
            schema._store_record_metadata(self.parent, mode=self._mode, fields=dict(self._field_records))
        self._finished = True


class _Schema:
    """gliner2 2.1.0 `Schema`: the builder state `build()` and the runtime's metadata read."""

    def __init__(self):
        self.schema: dict[str, Any] = {
            "json_structures": [],
            "classifications": [],
            "entities": OrderedDict(),
            "relations": [],
            "json_descriptions": {},
            "entity_descriptions": OrderedDict(),
            "relation_descriptions": OrderedDict(),
        }
        self._field_metadata: dict[str, dict] = {}
        self._entity_metadata: dict[str, dict] = {}
        self._relation_metadata: dict[str, dict] = {}
        self._record_metadata: dict[str, dict] = {}
        self._field_orders: dict[str, list[str]] = {}
        self._entity_order: list[str] = []
        self._relation_order: list[str] = []
        self._active_builder: _StructureBuilder | None = None

    def _finish_builder(self) -> None:
        if self._active_builder:
            self._active_builder._auto_finish()
            self._active_builder = None

    def _store_record_metadata(self, parent: str, *, mode: str, fields: dict) -> None:
        """gliner2 2.1.0 `Schema._store_record_metadata` for ``mode="natural"`` without an explicit anchor."""
        if mode != "natural":
            raise ValueError(f"only the 'natural' record mode is supported, got {mode!r}")
        order = self._field_orders.get(parent, [])
        if not order:
            raise ValueError(f"structure {parent!r} mode='natural' requires at least one field")
        entry: dict[str, Any] = {"mode": mode, "anchor": order[0]}
        if fields:
            entry["fields"] = fields
        self._record_metadata[parent] = entry

    def entities(self, entity_types: dict[str, dict], dtype: str = "list",
                 threshold: float | None = None) -> _Schema:
        """gliner2 2.1.0 `Schema.entities` for the dict-of-configs form."""
        self._finish_builder()
        for name, config in entity_types.items():
            self.schema["entities"][name] = ""
            if name not in self._entity_order:
                self._entity_order.append(name)
            self._entity_metadata[name] = {
                "dtype": config.get("dtype", dtype),
                "threshold": config.get("threshold", threshold),
                "validators": [],
            }
            if "description" in config:
                self.schema["entity_descriptions"][name] = config["description"]
        return self

    def classification(self, task: str, labels, multi_label: bool = False,
                       cls_threshold: float = 0.5) -> _Schema:
        """gliner2 2.1.0 `Schema.classification` (no ``top_k`` or extra task options)."""
        self._finish_builder()
        label_names = list(labels.keys()) if isinstance(labels, dict) else labels
        label_descs = labels if isinstance(labels, dict) else None
        config: dict[str, Any] = {
            "task": task, "labels": label_names, "multi_label": multi_label, "cls_threshold": cls_threshold,
        }
        if label_descs:
            config["label_descriptions"] = label_descs
        self.schema["classifications"].append(config)
        return self

    def structure(self, name: str, *, mode: str | None = None) -> _StructureBuilder:
        """gliner2 2.1.0 `Schema.structure` (no anchor or occurrence policy)."""
        if self._active_builder:
            self._active_builder._auto_finish()
        self._active_builder = _StructureBuilder(self, name, mode=mode)
        return self._active_builder

    def relations(self, relation_types: dict[str, dict], threshold: float | None = None) -> _Schema:
        """gliner2 2.1.0 `Schema.relations` for the dict-of-configs form."""
        self._finish_builder()
        for name, config in relation_types.items():
            self.schema["relations"].append({name: {"head": "", "tail": ""}})
            if name not in self._relation_order:
                self._relation_order.append(name)
            self._field_orders[name] = ["head", "tail"]
            self._relation_metadata[name] = {"threshold": config.get("threshold", threshold)}
            description = config.get("description")
            if description:
                self.schema["relation_descriptions"][name] = description
        return self

    def build(self) -> dict[str, Any]:
        """gliner2 2.1.0 `Schema.build`."""
        self._finish_builder()
        if self._record_metadata:
            self.schema["record_metadata"] = self._record_metadata
        return self.schema

    def metadata(self, schema_dict: dict[str, Any]) -> dict[str, Any]:
        """gliner2 2.1.0 `ExtractorRuntimeMixin._build_schema_dicts_and_metadata`, for a `Schema`."""
        return {
            "field_metadata": self._field_metadata,
            "entity_metadata": self._entity_metadata,
            "relation_metadata": self._relation_metadata,
            "relation_descriptions": schema_dict.get("relation_descriptions", {}),
            "field_orders": self._field_orders,
            "entity_order": self._entity_order,
            "relation_order": self._relation_order,
            "classification_tasks": [c["task"] for c in schema_dict.get("classifications", [])],
            "entity_attribute_groups": {},
            "entity_attribute_prompt_labels": {},
            "entity_attribute_labels": set(),
        }


def library_schema(schema: ExtractionSchema, *, enable_records: bool) -> tuple[dict, dict]:
    """``(schema_dict, metadata)`` as the library derives them from ``to_library_schema(schema, model)``.

    The builder calls are ``core.schema.to_library_schema``'s, in its order;
    ``enable_records`` is the model's ``enable_records`` attribute (false for
    span models), which turns JSON-API structures into natural records.
    """
    library = _Schema()
    if schema.entities:
        library.entities(
            {e.name: _present(description=e.description, threshold=e.threshold, dtype=e.dtype)
             for e in schema.entities},
            dtype=schema.entity_dtype,
            threshold=schema.entity_threshold,
        )
    for task in schema.classifications:
        labels = dict(task.label_descriptions) if task.label_descriptions else list(task.labels)
        library.classification(task.name, labels, multi_label=task.multi_label, cls_threshold=task.cls_threshold)
    records = "natural" if enable_records else None
    for structure in schema.structures:
        mode = records if structure.json_api else None
        builder = library.structure(structure.name, mode=mode)
        for f in structure.fields:
            builder.field(
                f.name, dtype=f.dtype, choices=list(f.choices) if f.choices else None,
                description=f.description, threshold=f.threshold,
                cardinality=("required_one" if f.dtype == "str" else "zero_or_more") if mode else None,
                exclusive=mode is not None,
            )
    if schema.relations:
        library.relations(
            {r.name: _present(description=r.description, threshold=r.threshold) for r in schema.relations},
            threshold=schema.relation_threshold,
        )
    schema_dict = library.build()
    return schema_dict, library.metadata(schema_dict)


def _present(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}
