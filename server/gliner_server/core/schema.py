"""The normalised GLiNER2 schema every front end translates into.

It mirrors what the ``gliner2`` library's ``Schema`` builder accepts and is
turned into one with :func:`to_library_schema`, making the same builder calls
the library's own convenience methods make, so results equal the library's.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ServiceError, shown

Dtype = Literal["list", "str"]
# Keys the library's formatted output uses itself; a task may not take them.
RESERVED_NAMES = frozenset({"entities", "relation_extraction"})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} names must be non-empty strings")
    return value


class EntitySpec(_Spec):
    name: str
    description: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    dtype: Dtype | None = None

    _check_name = field_validator("name")(lambda v: _name(v, "entity"))


class ClassificationSpec(_Spec):
    name: str
    labels: tuple[str, ...] = Field(min_length=2)
    label_descriptions: dict[str, str] | None = None
    multi_label: bool = False
    cls_threshold: float = Field(default=0.5, ge=0.0, le=1.0)

    _check_name = field_validator("name")(lambda v: _name(v, "classification task"))

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels):
        if any(not isinstance(label, str) or not label.strip() for label in labels):
            raise ValueError("classification labels must be non-empty strings")
        if len(set(labels)) != len(labels):
            raise ValueError("classification labels must be unique")
        return labels


class FieldSpec(_Spec):
    name: str
    dtype: Dtype = "list"
    choices: tuple[str, ...] | None = None
    description: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    _check_name = field_validator("name")(lambda v: _name(v, "field"))

    @field_validator("choices")
    @classmethod
    def _non_empty_choices(cls, choices):
        if choices is not None and len(choices) == 0:
            raise ValueError("choices must contain at least one option")
        return choices


class StructureSpec(_Spec):
    name: str
    fields: tuple[FieldSpec, ...] = Field(min_length=1)
    # True when the structure came through the JSON-extraction API
    # (extract_json): the library then lets checkpoints with an Instance
    # Formation head decode natural records, as its extract_json does.
    json_api: bool = False

    _check_name = field_validator("name")(lambda v: _name(v, "structure"))

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields):
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique within a structure")
        return fields


class RelationSpec(_Spec):
    name: str
    description: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    _check_name = field_validator("name")(lambda v: _name(v, "relation"))


class ExtractionSchema(_Spec):
    entities: tuple[EntitySpec, ...] = ()
    entity_dtype: Dtype = "list"
    entity_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    classifications: tuple[ClassificationSpec, ...] = ()
    structures: tuple[StructureSpec, ...] = ()
    relations: tuple[RelationSpec, ...] = ()
    relation_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self):
        if not (self.entities or self.classifications or self.structures or self.relations):
            raise ValueError(
                "the schema is empty: give at least one entity type, classification task, "
                "structure or relation type"
            )
        for kind, items in (("entity", self.entities), ("relation", self.relations)):
            names = [i.name for i in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique")
        top_level = [c.name for c in self.classifications] + [s.name for s in self.structures]
        if len(set(top_level)) != len(top_level):
            raise ValueError("classification task and structure names must be distinct")
        clash = RESERVED_NAMES.intersection(top_level)
        if clash:
            raise ValueError(f"{shown(sorted(clash)[0])} is reserved and cannot name a task or structure")
        return self


def build_schema(**parts) -> ExtractionSchema:
    """Validate parts into an :class:`ExtractionSchema`, or raise INVALID_REQUEST."""
    from pydantic import ValidationError

    try:
        return ExtractionSchema(**parts)
    except ValidationError as error:
        raise ServiceError.invalid(describe_validation_error(error, "schema"), field="schema") from None


def describe_validation_error(error, root: str) -> str:
    """One readable sentence from a pydantic ValidationError."""
    first = error.errors()[0]
    location = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    message = first.get("msg", "is invalid").removeprefix("Value error, ")
    where = f"{root}.{location}" if location else root
    return f"Invalid {where}: {message}"


def parse_field_spec(spec) -> FieldSpec:
    """A structure field from ``"name::dtype::[a|b]::description"`` or a dict.

    The string grammar is the ``gliner2`` library's (``_parse_field_spec``):
    parts after the name are ``str``/``list``, ``[choice|choice]`` (implies
    ``str`` unless a dtype is given) or a description.
    """
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "dtype", "choices", "description", "threshold"}
        if unknown:
            raise ValueError(f"unknown field option {shown(sorted(unknown)[0])}")
        return FieldSpec(**spec)
    if not isinstance(spec, str):
        raise ValueError("a field is a 'name::dtype::description' string or an object")
    parts = spec.split("::")
    dtype, choices, description, explicit = "list", None, None, False
    for part in parts[1:]:
        if part in ("str", "list"):
            dtype, explicit = part, True
        elif part.startswith("[") and part.endswith("]"):
            choices = tuple(c.strip() for c in part[1:-1].split("|"))
            if not explicit:
                dtype = "str"
        else:
            description = part
    return FieldSpec(name=parts[0], dtype=dtype, choices=choices, description=description)


def to_library_schema(schema: ExtractionSchema, model):
    """The ``gliner2.Schema`` the library itself would build for this schema.

    A lean model (:class:`gliner_server.lean.model.BundleModel`) builds its own
    equivalent, the library's ``(schema.build(), metadata)``, without gliner2.
    """
    if hasattr(model, "library_schema"):
        return model.library_schema(schema)
    library = model.create_schema()
    if schema.entities:
        library.entities(
            {e.name: _present(description=e.description, threshold=e.threshold, dtype=e.dtype)
             for e in schema.entities},
            dtype=schema.entity_dtype,
            threshold=schema.entity_threshold,
        )
    for task in schema.classifications:
        labels = dict(task.label_descriptions) if task.label_descriptions else list(task.labels)
        library.classification(task.name, labels, multi_label=task.multi_label,
                               cls_threshold=task.cls_threshold)
    records = "natural" if getattr(model, "enable_records", False) else None
    for structure in schema.structures:
        mode = records if structure.json_api else None
        builder = library.structure(structure.name, mode=mode)
        for f in structure.fields:
            builder.field(
                f.name, dtype=f.dtype, choices=list(f.choices) if f.choices else None,
                description=f.description, threshold=f.threshold,
                # As the library's extract_json sets them for record decoding.
                cardinality=("required_one" if f.dtype == "str" else "zero_or_more") if mode else None,
                exclusive=mode is not None,
            )
    if schema.relations:
        library.relations(
            {r.name: _present(description=r.description, threshold=r.threshold)
             for r in schema.relations},
            threshold=schema.relation_threshold,
        )
    return library


def _present(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}
