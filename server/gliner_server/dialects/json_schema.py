"""JSON Schema (OpenAI structured outputs, tool parameters, Anthropic input_schema) → GLiNER2 structures.

:func:`plan_from_json_schema` translates the schema a client sends with
``response_format.json_schema.schema``, a tool's ``function.parameters`` or an
Anthropic tool's ``input_schema`` (what ``pydantic.BaseModel.model_json_schema()``
and the OpenAI SDK's ``to_strict_json_schema`` produce) into structures of an
:class:`~gliner_server.core.schema.ExtractionSchema`. The returned
:class:`JsonSchemaPlan` then turns the library's formatted result for one text
into one JSON object that validates against the schema (see the caveats below).

Mapping, after ``$ref``, one-element ``allOf`` and ``Optional`` unions are resolved:

=============================  ============================  ==========================================
JSON Schema                    GLiNER2                       assembled value
=============================  ============================  ==========================================
root ``object``                structure ``name`` holding    one object, keys in the schema's order
                               the root's scalar properties
``string`` (or ``{}``: any)    ``str`` field                 the extracted span
``enum`` / ``const``           ``str`` field with choices    the original enum value of the chosen
                               (labels: strings as they      label (``null`` in an enum only makes the
                               are, others as JSON: ``1``,   property nullable)
                               ``true``)
``number``                     ``str`` field                 first number in the span (``-1,234.5e3``)
``integer``                    ``str`` field                 that number if it is integral
``boolean``                    ``str`` field                 true/yes/y/1 → true, false/no/n/0 → false
``array`` of any of the above  ``list`` field (choices for   each element converted; unparsable ones
                               an array of enums)            dropped; duplicates dropped, order kept
root property ``object``       its own structure             its first record that has a value
root property ``array`` of     its own structure             all its records that have a value
``object``
=============================  ============================  ==========================================

A nested structure is named after its property, or ``f"{name}_{property}"``
when that is taken (the root structure, another structure, or the library's
reserved ``entities`` / ``relation_extraction``). Inside a nested object only
scalars and arrays of scalars are allowed. Everything else is refused with a
400 naming the offending part by its path (``where`` plus ``.properties.x``,
``.items``): deeper objects, arrays of arrays, tuples (``prefixItems``),
unions other than ``X | null``, multi-type ``type`` lists, objects without
properties (free-form maps), remote or anchor references, ``$ref`` cycles,
non-object roots and malformed schema values. Annotations and constraints
(``title``, ``examples``, ``format``, ``pattern``, ``minLength``, ``minimum``,
``additionalProperties``, ``strict``, ``$schema``...) are ignored.

A property is *nullable* when its schema allows ``null`` and *optional* when it
is not in ``required``. When nothing was found for a property (no span, or none
that parses; an object none of whose fields has a value):

======================================  ==============================================
property                                assembled as
======================================  ==============================================
nullable                                ``null``
optional (not nullable)                 key omitted
required ``string``                     ``""``
required ``array`` (of anything)        ``[]``
required ``object``                     the object with its own fields filled by these rules
required ``enum`` / ``number`` /        the schema's ``default`` if it has a scalar one,
``integer`` / ``boolean``               else ``null``
======================================  ==============================================

So an output always validates against the schema's structure, except that a
required, non-nullable enum, number, integer or boolean without a ``default``
becomes ``null`` when the text has no value for it: declare such fields
Optional (or give them a default) to be sure the output validates. Ignored
constraints (``minLength``, ``format``, ``minimum``, ``minItems``...) are not
enforced either.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..core.schema import RESERVED_NAMES, ExtractionSchema, FieldSpec, StructureSpec, build_schema
from ..errors import ServiceError, shown
from .schema_json import _build, _invalid, _root

_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_MAX_HOPS = 64   # $ref / allOf / anyOf / oneOf unwrappings of one property's schema
_TOO_DEEP = ("nested objects deeper than one level are not supported; flatten it into its parent's "
             "properties or make it a property of the root object")


class _Missing:
    """Nothing found for a property (or no default): distinct from an extracted ``null``."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _shown(value: Any) -> str:
    try:
        return shown(value)
    except RecursionError:       # repr of a pathologically nested value
        return "a deeply nested value"


# --------------------------------------------------------------------------- schema nodes


@dataclass(frozen=True)
class _Node:
    """One schema with ``$ref``, ``allOf`` and ``Optional`` unions resolved away."""

    kind: str                       # string | number | integer | boolean | enum | object | array
    schema: dict                    # the merged schema object
    path: str                       # where it is, for error messages
    refs: tuple                     # the $ref targets (JSON pointers) on the way here: cycle detection
    nullable: bool
    choices: tuple = ()             # enum: (label, value) pairs


def _schema_object(raw: Any, path: str) -> dict:
    if raw is True:
        return {}
    if raw is False:
        raise _invalid(path, "the schema `false` accepts no value")
    if not isinstance(raw, dict):
        raise _invalid(path, f"expected a schema object, got {_shown(raw)}")
    return raw


def _without(raw: dict, key: str) -> dict:
    return {k: v for k, v in raw.items() if k != key}


def _normalise(raw: Any, path: str, document: Any, refs: tuple) -> _Node:
    """Resolve ``$ref``, ``allOf: [X]``, ``anyOf``/``oneOf: [X, null]`` and ``type`` lists into a node.

    Siblings of these keywords (``description``, ``default``...) override what they resolve to.
    """
    nullable = False
    for _ in range(_MAX_HOPS):
        raw = _schema_object(raw, path)
        if "$ref" in raw:
            pointer, target = _resolve(raw["$ref"], document, path)
            if pointer in refs:
                raise _invalid(path, f"$ref cycle at {_shown(raw['$ref'])}: recursive schemas are not supported")
            refs = refs + (pointer,)
            raw = {**_schema_object(target, path), **_without(raw, "$ref")}
        elif "allOf" in raw:
            parts = raw["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise _invalid(path, "allOf is only supported with exactly one schema")
            raw = {**_schema_object(parts[0], path), **_without(raw, "allOf")}
        elif "anyOf" in raw or "oneOf" in raw:
            if "anyOf" in raw and "oneOf" in raw:
                raise _invalid(path, "anyOf and oneOf together are not supported")
            keyword = "anyOf" if "anyOf" in raw else "oneOf"
            alternative, with_null = _optional_alternative(raw[keyword], path, keyword)
            nullable = nullable or with_null
            raw = {**_schema_object(alternative, path), **_without(raw, keyword)}
        else:
            kind, with_null = _kind(raw, path)
            choices, enum_null = _enum_choices(raw, path) if kind == "enum" else ((), False)
            return _Node(kind, raw, path, refs, nullable or with_null or enum_null, choices)
    raise _invalid(path, f"more than {_MAX_HOPS} levels of $ref, allOf, anyOf or oneOf are not supported")


def _resolve(ref: Any, document: Any, path: str) -> tuple[tuple[str, ...], Any]:
    """A local ``$ref`` (a JSON pointer into the root document) → (its pointer segments, its target)."""
    if not isinstance(ref, str):
        raise _invalid(path, f"$ref must be a string, got {_shown(ref)}")
    if not ref.startswith("#"):
        raise _invalid(path, f"remote $ref {_shown(ref)} is not supported: only local ones like '#/$defs/Name'")
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise _invalid(path, f"$ref {_shown(ref)} is not supported: only JSON pointers like '#/$defs/Name'")
    segments = tuple(s.replace("~1", "/").replace("~0", "~") for s in pointer.split("/")[1:])
    target = document
    for segment in segments:
        if isinstance(target, dict) and segment in target:
            target = target[segment]
        elif isinstance(target, list) and 0 <= _index(segment) < len(target):
            target = target[_index(segment)]
        else:
            raise _invalid(path, f"$ref {_shown(ref)} does not resolve within the schema")
    return segments, target


def _index(segment: str) -> int:
    """A JSON pointer segment as an array index (-1 if it is none)."""
    return int(segment) if re.fullmatch(r"0|[1-9][0-9]{0,8}", segment) else -1


def _is_null_schema(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    t = raw.get("type")
    return (t == "null" or t == ["null"] or ("const" in raw and raw["const"] is None)
            or raw.get("enum") == [None])


def _optional_alternative(alternatives: Any, path: str, keyword: str) -> tuple[Any, bool]:
    """The one non-null schema of ``anyOf``/``oneOf``, and whether null was an alternative."""
    if not isinstance(alternatives, list) or not alternatives:
        raise _invalid(path, f"{keyword} must be a non-empty list of schemas")
    others = [a for a in alternatives if not _is_null_schema(a)]
    if not others:
        raise _invalid(path, "a property that can only be null is not supported")
    if len(others) > 1:
        raise _invalid(path, f"{keyword} unions of {len(others)} schemas are not supported: only one schema, "
                             "optionally with null (Optional[X])")
    return others[0], len(others) < len(alternatives)


def _kind(raw: dict, path: str) -> tuple[str, bool]:
    """The kind of a schema without combinators, and whether its ``type`` allows null."""
    nullable = raw.get("nullable") is True          # OpenAPI 3.0 spelling
    t = raw.get("type")
    if isinstance(t, list):
        if not t or not all(isinstance(x, str) for x in t):
            raise _invalid(path, f"type must be a type name or a list of them, got {_shown(t)}")
        nullable = nullable or "null" in t
        others = [x for x in dict.fromkeys(t) if x != "null"]
        if len(others) > 1:
            raise _invalid(path, f"multi-type unions like {_shown(t)} are not supported: "
                                 "one type, optionally with 'null'")
        t = others[0] if others else "null"
    if t is not None and (not isinstance(t, str) or t not in _TYPES):
        raise _invalid(path, f"unsupported type {_shown(t)}")
    if t == "null":
        raise _invalid(path, "a property that can only be null is not supported")
    if "enum" in raw or "const" in raw:
        return "enum", nullable
    if t is None:
        t = "object" if "properties" in raw else "array" if ("items" in raw or "prefixItems" in raw) else "string"
    return t, nullable


def _enum_choices(raw: dict, path: str) -> tuple[tuple, bool]:
    """``enum``/``const`` → ((label, value), ...) and whether null is one of the values."""
    values = [raw["const"]] if "const" in raw else raw["enum"]
    if not isinstance(values, list) or not values:
        raise _invalid(path, "enum must be a non-empty list of values")
    choices: dict[str, Any] = {}
    for value in values:
        if value is None:
            continue
        label = _label(value, path)
        if label in choices and not _same(choices[label], value):
            raise _invalid(path, f"enum values {_shown(choices[label])} and {_shown(value)} "
                                 f"would share the label {_shown(label)}")
        choices.setdefault(label, value)
    if not choices:
        raise _invalid(path, "a property that can only be null is not supported")
    return tuple(choices.items()), any(v is None for v in values)


def _label(value: Any, path: str) -> str:
    """The choice label the model sees for an enum value."""
    if isinstance(value, str):
        if not value.strip():
            raise _invalid(path, "enum values must not be empty strings")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() <= 256:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise _invalid(path, f"enum values must be strings, numbers, booleans or null, not {_shown(value)}")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- objects and fields


def _properties(node: _Node, document: Any) -> list[tuple[str, _Node, bool]]:
    """An object's properties in order: (name, resolved schema, required)."""
    properties = node.schema.get("properties", {})
    if not isinstance(properties, dict):
        raise _invalid(f"{node.path}.properties", "expected an object of property name to schema")
    if not properties:
        raise _invalid(node.path, "objects without properties are not supported: declare its properties")
    if not all(isinstance(key, str) for key in properties):
        raise _invalid(f"{node.path}.properties", "property names must be strings")
    required = node.schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _invalid(f"{node.path}.required", "expected a list of property names")
    unknown = [r for r in required if r not in properties]
    if unknown:
        raise _invalid(f"{node.path}.required", f"{_shown(unknown[0])} is not one of the properties")
    return [(key, _normalise(raw, f"{node.path}.properties.{key}", document, node.refs), key in required)
            for key, raw in properties.items()]


def _items(node: _Node, document: Any) -> _Node:
    """The element schema of an array node."""
    if "prefixItems" in node.schema or isinstance(node.schema.get("items"), list):
        raise _invalid(node.path, "tuple arrays (prefixItems, or a list of items) are not supported")
    items = _normalise(node.schema.get("items", True), f"{node.path}.items", document, node.refs)
    if items.kind == "array":
        raise _invalid(items.path, "arrays of arrays are not supported")
    return items


@dataclass(frozen=True)
class _Field:
    """A scalar or array-of-scalars property: one field of a structure's records."""

    key: str
    kind: str                   # string | number | integer | boolean | enum
    is_list: bool
    nullable: bool
    required: bool
    default: Any = MISSING      # a scalar ``default`` of the schema
    choices: tuple = ()         # enum: (label, value) pairs


@dataclass(frozen=True)
class _Object:
    """An object or array-of-objects property of the root: one structure of its own."""

    key: str
    structure: str
    fields: tuple[_Field, ...]
    is_list: bool
    nullable: bool
    required: bool


def _description(node: _Node) -> str | None:
    description = node.schema.get("description")
    return description if isinstance(description, str) and description.strip() else None


def _scalar_default(node: _Node) -> Any:
    default = node.schema.get("default", MISSING)
    if default is None or isinstance(default, (str, bool, int)):
        return default
    if isinstance(default, float) and math.isfinite(default):
        return default
    return MISSING


def _scalar_field(key: str, node: _Node, items: _Node | None, required: bool) -> tuple[_Field, FieldSpec]:
    """The plan and the structure field of a scalar property (``items``: its element, for an array)."""
    element = items or node
    description = _description(node) or (_description(items) if items else None)
    spec = _build(FieldSpec, node.path, name=key, dtype="list" if items else "str",
                  choices=tuple(label for label, _ in element.choices) or None, description=description)
    plan = _Field(key=key, kind=element.kind, is_list=items is not None, nullable=node.nullable,
                  required=required, default=_scalar_default(node), choices=element.choices)
    return plan, spec


def _nested_fields(obj: _Node, document: Any) -> tuple[list[_Field], list[FieldSpec]]:
    """The fields of an object nested in the root: scalars and arrays of scalars only."""
    plans, specs = [], []
    for key, child, required in _properties(obj, document):
        items = _items(child, document) if child.kind == "array" else None
        if child.kind == "object" or (items is not None and items.kind == "object"):
            raise _invalid(child.path, _TOO_DEEP)
        plan, spec = _scalar_field(key, child, items, required)
        plans.append(plan)
        specs.append(spec)
    return plans, specs


def _unique(candidates: list[str], used: set[str]) -> str:
    for candidate in candidates:
        if candidate not in used:
            return candidate
    number = 2
    while f"{candidates[-1]}_{number}" in used:
        number += 1
    return f"{candidates[-1]}_{number}"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class JsonSchemaPlan:
    """The structures to extract for a JSON Schema, and how to assemble their records into one object."""

    schema: ExtractionSchema
    entries: tuple[_Field | _Object, ...] = field(default=(), repr=False)   # in property order
    root_structure: str | None = field(default=None, repr=False)   # holds the root's scalar fields

    def assemble(self, result: dict) -> dict:
        """One object for the schema from the library's formatted result for one text."""
        result = result if isinstance(result, dict) else {}
        root_fields = [e for e in self.entries if isinstance(e, _Field)]
        found = _found(root_fields, _records(result, self.root_structure))
        root = found[0] if found else {}
        output: dict = {}
        for entry in self.entries:
            value = root.get(entry.key, MISSING) if isinstance(entry, _Field) else _object_value(entry, result)
            _place(output, entry, value)
        return output


def plan_from_json_schema(schema: Any, *, name: str, where: str) -> JsonSchemaPlan:
    """Translate a JSON Schema object into structures; a 400 naming the part that is not supported.

    ``name`` names the root structure (the json_schema ``name`` or the tool's name); ``where`` is the
    schema's place in the request (``"tools[0].function.parameters"``), for error messages.
    """
    if not isinstance(name, str) or not name.strip():
        raise _invalid(where, f"the schema's name must be a non-empty string, got {_shown(name)}")
    root = _normalise(schema, where, schema, refs=((),))
    if root.kind != "object":
        raise _invalid(where, f"the schema must be an object ('type': 'object' with 'properties'), "
                              f"not {root.kind}")
    properties = [_root_property(key, node, required, schema) for key, node, required in _properties(root, schema)]
    used = set(RESERVED_NAMES)
    root_structure = None
    if any(obj is None for _, _, _, obj, _ in properties):
        root_structure = _unique([name], used)
        used.add(root_structure)
    entries: list[_Field | _Object] = []
    root_fields: list[FieldSpec] = []
    structures: list[StructureSpec] = []
    for key, node, items, obj, required in properties:
        if obj is None:
            plan, spec = _scalar_field(key, node, items, required)
            entries.append(plan)
            root_fields.append(spec)
        else:
            structure = _unique([key, f"{name}_{key}"], used)
            used.add(structure)
            plan, spec = _object(key, node, obj, structure, required, schema)
            entries.append(plan)
            structures.append(spec)
    if root_structure is not None:
        structures.insert(0, _build(StructureSpec, where, name=root_structure, fields=tuple(root_fields),
                                    json_api=True))
    try:
        extraction = build_schema(structures=tuple(structures))
    except ServiceError as error:
        raise ServiceError.invalid(error.message, field=_root(where)) from None
    return JsonSchemaPlan(schema=extraction, entries=tuple(entries), root_structure=root_structure)


def _root_property(key: str, node: _Node, required: bool, document: Any) -> tuple:
    """(key, node, its items for an array, the object node for an object or array of objects, required)."""
    items = _items(node, document) if node.kind == "array" else None
    obj = node if node.kind == "object" else items if items is not None and items.kind == "object" else None
    return key, node, items, obj, required


def _object(key: str, node: _Node, obj: _Node, structure: str, required: bool,
            document: Any) -> tuple[_Object, StructureSpec]:
    """The plan and the structure of a root property that is an object (``obj is node``) or an array of them."""
    plans, specs = _nested_fields(obj, document)
    spec = _build(StructureSpec, node.path, name=structure, fields=tuple(specs), json_api=True)
    plan = _Object(key=key, structure=structure, fields=tuple(plans), is_list=obj is not node,
                   nullable=node.nullable, required=required)
    return plan, spec


# --------------------------------------------------------------------------- assembling


def _records(result: dict, structure: str | None) -> list[dict]:
    records = result.get(structure) if structure is not None else None
    if isinstance(records, dict):
        return [records]
    if isinstance(records, list):
        return [r for r in records if isinstance(r, dict)]
    return []


def _found(fields, records: list[dict]) -> list[dict]:
    """The records' converted values (MISSING where nothing parses), leaving out records with no value."""
    found = []
    for record in records:
        values = {f.key: _field_value(f, record.get(f.key)) for f in fields}
        if any(v is not MISSING for v in values.values()):
            found.append(values)
    return found


def _object_value(entry: _Object, result: dict) -> Any:
    found = _found(entry.fields, _records(result, entry.structure))
    if not found:
        return MISSING
    objects = [_fill(entry.fields, values) for values in found]
    return objects if entry.is_list else objects[0]


def _fill(fields, values: dict) -> dict:
    output: dict = {}
    for f in fields:
        _place(output, f, values.get(f.key, MISSING))
    return output


def _place(output: dict, entry: _Field | _Object, value: Any) -> None:
    if value is MISSING:
        value = _absent(entry)
    if value is not MISSING:
        output[entry.key] = value


def _absent(entry: _Field | _Object) -> Any:
    """The value of a property nothing was found for (MISSING: leave the key out)."""
    if entry.nullable:
        return None
    if not entry.required:
        return MISSING
    if entry.is_list:
        return []
    if isinstance(entry, _Object):
        return _fill(entry.fields, {})
    if entry.kind == "string":
        return ""
    return None if entry.default is MISSING else entry.default


def _field_value(f: _Field, raw: Any) -> Any:
    """A field's library value (span, list of spans, label; or ``{"text": ...}``) converted, or MISSING."""
    if not f.is_list:
        for item in (raw if isinstance(raw, (list, tuple)) else [raw]):
            value = _convert(f, item)
            if value is not MISSING:
                return value
        return MISSING
    values, seen = [], set()
    for item in (raw if isinstance(raw, (list, tuple)) else [] if raw is None else [raw]):
        value = _convert(f, item)
        key = (isinstance(value, bool), isinstance(value, str), value)   # 1 == 1.0, but not "1" or true
        if value is not MISSING and key not in seen:
            seen.add(key)
            values.append(value)
    return values or MISSING


def _convert(f: _Field, raw: Any) -> Any:
    if isinstance(raw, dict):          # include_confidence / include_spans form
        raw = raw.get("text")
    if f.kind == "enum":
        return _choice(f.choices, raw)
    if f.kind == "number":
        return parse_number(raw)
    if f.kind == "integer":
        return parse_integer(raw)
    if f.kind == "boolean":
        return parse_boolean(raw)
    return raw if isinstance(raw, str) and raw.strip() else MISSING


def _choice(choices: tuple, raw: Any) -> Any:
    if isinstance(raw, str):
        for label, value in choices:
            if label == raw or label == raw.strip():
                return value
    return MISSING


# A number: optional sign (not inside a word: "COVID-19" is 19), thousands separators, decimals, exponent.
_NUMBER = re.compile(r"(?:(?<![0-9A-Za-z])[-+])?"
                     r"(?:(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)"
                     r"(?:[eE][-+]?[0-9]+)?")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def parse_number(raw: Any) -> Any:
    """The first number in a span (an int when written as one), or MISSING."""
    if isinstance(raw, bool):
        return MISSING
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else MISSING
    if not isinstance(raw, str):
        return MISSING
    match = _NUMBER.search(raw)
    if match is None:
        return MISSING
    text = match.group().replace(",", "")
    if re.fullmatch(r"[-+]?[0-9]{1,300}", text):
        return int(text)
    value = float(text)
    return value if math.isfinite(value) else MISSING


def parse_integer(raw: Any) -> Any:
    """The first number in a span if it is integral, as an int, or MISSING."""
    value = parse_number(raw)
    if isinstance(value, float):
        return int(value) if value.is_integer() else MISSING
    return value


def parse_boolean(raw: Any) -> Any:
    """true/yes/y/1 → True, false/no/n/0 → False (any case, surrounding punctuation ignored), or MISSING."""
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        return MISSING
    word = raw.strip(string.whitespace + string.punctuation).lower()
    return True if word in _TRUE else False if word in _FALSE else MISSING
