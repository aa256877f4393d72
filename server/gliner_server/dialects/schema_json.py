"""Schema pieces in the JSON forms the hosted APIs and the gliner2 clients send.

Shared by every dialect: entity and relation types as a name, a list of names
or an object of name → description (or → options); classification tasks as an
object of task → labels (or → options) or a list of ``{"task", "labels"}``;
structures as an object of name → fields, where a field is a
``"name::dtype::description"`` string or an object.
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..core.schema import (
    ClassificationSpec,
    EntitySpec,
    RelationSpec,
    StructureSpec,
    describe_validation_error,
    parse_field_spec,
)
from ..errors import ServiceError, shown


def _root(where: str) -> str:
    return where.split(".")[0].split("[")[0]


def _invalid(where: str, message: str) -> ServiceError:
    return ServiceError.invalid(f"Invalid {where}: {message}", field=_root(where))


def _build(cls, where: str, **values):
    try:
        return cls(**values)
    except ValidationError as error:
        raise ServiceError.invalid(describe_validation_error(error, where), field=_root(where)) from None


def _named_types(value: Any, where: str, cls, options: set[str]) -> tuple:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not all(isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("name"), str)) for v in value):
            raise _invalid(where, "expected a list of names, or of objects with a 'name'")
        names = [v if isinstance(v, str) else v["name"] for v in value]
        if len(set(names)) != len(names):
            raise _invalid(where, "names must be unique")
        value = {v: {} for v in value} if all(isinstance(v, str) for v in value) else {
            (v if isinstance(v, str) else v["name"]): ({} if isinstance(v, str) else
                                                      {k: x for k, x in v.items() if k != "name"})
            for v in value}
    if isinstance(value, dict):
        specs = []
        for name, config in value.items():
            if isinstance(config, str) or config is None:
                config = {"description": config or None}
            if not isinstance(config, dict):
                raise _invalid(f"{where}.{name}", "expected a description string or an options object")
            unknown = set(config) - options
            if unknown:
                raise _invalid(f"{where}.{name}", f"unknown option {shown(sorted(unknown)[0])}")
            specs.append(_build(cls, f"{where}.{name}", name=name, **config))
        return tuple(specs)
    raise _invalid(where, "expected a list of names or an object of name to description")


def entity_specs(value: Any, where: str = "entities") -> tuple[EntitySpec, ...]:
    return _named_types(value, where, EntitySpec, {"description", "threshold", "dtype"})


def relation_specs(value: Any, where: str = "relations") -> tuple[RelationSpec, ...]:
    return _named_types(value, where, RelationSpec, {"description", "threshold"})


_TASK_OPTIONS = {"labels", "multi_label", "cls_threshold"}


def classification_spec(name: str, config: Any, where: str) -> ClassificationSpec:
    if isinstance(config, (list, tuple)):
        config = {"labels": config}
    if not isinstance(config, dict) or "labels" not in config:
        raise _invalid(where, "expected a list of labels or an object with 'labels'")
    unknown = set(config) - _TASK_OPTIONS - {"task"}
    if unknown:
        raise _invalid(where, f"unknown option {shown(sorted(unknown)[0])}")
    labels = config["labels"]
    descriptions = None
    if isinstance(labels, dict):
        descriptions, labels = labels, list(labels)
    if not isinstance(labels, list):
        raise _invalid(f"{where}.labels", "expected a list of labels")
    options = {k: config[k] for k in ("multi_label", "cls_threshold") if config.get(k) is not None}
    return _build(ClassificationSpec, where, name=name, labels=tuple(labels),
                  label_descriptions=descriptions, **options)


def classification_specs(value: Any, where: str = "classifications") -> tuple[ClassificationSpec, ...]:
    if isinstance(value, dict):
        return tuple(classification_spec(n, c, f"{where}.{n}") for n, c in value.items())
    if isinstance(value, list):
        specs = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("task"), str):
                raise _invalid(f"{where}[{i}]", "expected an object with 'task' and 'labels'")
            specs.append(classification_spec(item["task"], item, f"{where}[{i}]"))
        return tuple(specs)
    raise _invalid(where, "expected an object of task name to labels")


def structure_specs(value: Any, where: str = "structures", *, json_api: bool = False) -> tuple[StructureSpec, ...]:
    if not isinstance(value, dict):
        raise _invalid(where, "expected an object of structure name to its fields")
    specs = []
    for name, fields in value.items():
        if isinstance(fields, dict) and "fields" in fields:
            fields = fields["fields"]
        if not isinstance(fields, list):
            raise _invalid(f"{where}.{name}", "expected a list of fields")
        parsed = []
        for i, spec in enumerate(fields):
            try:
                parsed.append(parse_field_spec(spec))
            except ValidationError as error:
                raise ServiceError.invalid(describe_validation_error(error, f"{where}.{name}[{i}]"),
                                           field=_root(where)) from None
            except ValueError as error:
                raise _invalid(f"{where}.{name}[{i}]", str(error)) from None
        specs.append(_build(StructureSpec, f"{where}.{name}", name=name, fields=tuple(parsed), json_api=json_api))
    return tuple(specs)
