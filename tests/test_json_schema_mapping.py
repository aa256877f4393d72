"""JSON Schema (OpenAI structured outputs, tool parameters) → GLiNER2 structures, and back to one object.

Schemas come from pydantic models (``model_json_schema()``) and from the OpenAI
strict form written by hand; assembled outputs are checked against the original
schema (with ``jsonschema_rs`` when installed) and by parsing into the model.
"""
from __future__ import annotations

import json
from enum import IntEnum
from typing import Any, Literal, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from gliner_server.core.schema import FieldSpec, to_library_schema
from gliner_server.dialects.json_schema import (MISSING, JsonSchemaPlan, parse_boolean, parse_integer,
                                                parse_number, plan_from_json_schema)
from gliner_server.errors import ErrorKind, ServiceError

try:
    import jsonschema_rs
except ImportError:      # pragma: no cover - then the pydantic models alone check outputs
    jsonschema_rs = None

WHERE = "response_format.json_schema.schema"


# --------------------------------------------------------------------------- models


class Address(BaseModel):
    street: str = Field(description="street and number")
    city: Optional[str] = None
    zip_code: Optional[int] = None


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Contact(BaseModel):
    """A contact in a CRM."""

    name: str = Field(description="full name")
    age: Optional[int] = Field(None, description="age in years")
    salary: Optional[float] = None
    active: Optional[bool] = None
    kind: Literal["person", "company"]
    priority: Optional[Priority] = None
    tags: list[str] = []
    scores: list[float] = []
    colors: list[Literal["red", "green"]] = []
    address: Optional[Address] = None
    offices: list[Address] = []


# The OpenAI strict form of Contact, as to_strict_json_schema writes it: every property required,
# Optional as anyOf with null, nested models in $defs, additionalProperties false everywhere.
STRICT_CONTACT = {
    "type": "object",
    "title": "Contact",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "full name", "title": "Name"},
        "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "age in years"},
        "salary": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "active": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "kind": {"type": "string", "enum": ["person", "company"]},
        "priority": {"anyOf": [{"$ref": "#/$defs/Priority"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "scores": {"type": "array", "items": {"type": "number"}},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "green"]}},
        "address": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
        "offices": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
    },
    "required": ["name", "age", "salary", "active", "kind", "priority", "tags", "scores", "colors",
                 "address", "offices"],
    "$defs": {
        "Priority": {"type": "integer", "enum": [1, 2], "title": "Priority"},
        "Address": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "street": {"type": "string", "description": "street and number"},
                "city": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "zip_code": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "required": ["street", "city", "zip_code"],
        },
    },
}

CONTACT_SCHEMAS = {"pydantic": Contact.model_json_schema(), "strict": STRICT_CONTACT}


def check_valid(output: dict, schema: dict, model: type[BaseModel] | None = None) -> None:
    json.dumps(output, allow_nan=False)
    if jsonschema_rs is not None:
        jsonschema_rs.validate(schema, output)
    if model is not None:
        model.model_validate(output)


def structures(plan: JsonSchemaPlan) -> dict[str, tuple[FieldSpec, ...]]:
    return {s.name: s.fields for s in plan.schema.structures}


def shape(fields: tuple[FieldSpec, ...]) -> list[tuple]:
    return [(f.name, f.dtype, f.choices, f.description) for f in fields]


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize("form", sorted(CONTACT_SCHEMAS))
def test_contact_maps_to_root_and_nested_structures(form):
    plan = plan_from_json_schema(CONTACT_SCHEMAS[form], name="contact", where=WHERE)
    found = structures(plan)
    assert list(found) == ["contact", "address", "offices"]
    assert all(s.json_api for s in plan.schema.structures)
    assert shape(found["contact"]) == [
        ("name", "str", None, "full name"),
        ("age", "str", None, "age in years"),
        ("salary", "str", None, None),
        ("active", "str", None, None),
        ("kind", "str", ("person", "company"), None),
        ("priority", "str", ("1", "2"), None),
        ("tags", "list", None, None),
        ("scores", "list", None, None),
        ("colors", "list", ("red", "green"), None),
    ]
    address = [("street", "str", None, "street and number"), ("city", "str", None, None),
               ("zip_code", "str", None, None)]
    assert shape(found["address"]) == address
    assert shape(found["offices"]) == address
    assert not (plan.schema.entities or plan.schema.classifications or plan.schema.relations)


LIBRARY_RESULT = {
    "contact": [
        {"name": None, "age": None, "salary": None, "active": None, "kind": None, "priority": None,
         "tags": [], "scores": [], "colors": []},          # an empty record: skipped
        {"name": "Ada Lovelace", "age": "about 42 years", "salary": "1,234.5 dollars", "active": "Yes",
         "kind": "company", "priority": "2", "tags": ["vip", "vip", "board"],
         "scores": ["1.5", "n/a", "-2e3", "1.50"], "colors": ["green", "blue", "green"]},
        {"name": "someone else", "age": "7", "kind": "person"},
    ],
    "address": [{"street": "1 Main St", "city": None, "zip_code": "75,001"}, {"street": "2 Side St"}],
    "offices": [{"street": None, "city": None, "zip_code": None},
                {"street": "3 High St", "city": "Leeds", "zip_code": "unknown"},
                {"street": "4 Low St", "city": "York", "zip_code": "12345.0"}],
}


@pytest.mark.parametrize("form", sorted(CONTACT_SCHEMAS))
def test_assemble_converts_values_and_validates(form):
    schema = CONTACT_SCHEMAS[form]
    output = plan_from_json_schema(schema, name="contact", where=WHERE).assemble(LIBRARY_RESULT)
    assert output == {
        "name": "Ada Lovelace", "age": 42, "salary": 1234.5, "active": True, "kind": "company",
        "priority": 2, "tags": ["vip", "board"], "scores": [1.5, -2000.0], "colors": ["green"],
        "address": {"street": "1 Main St", "city": None, "zip_code": 75001},
        "offices": [{"street": "3 High St", "city": "Leeds", "zip_code": None},
                    {"street": "4 Low St", "city": "York", "zip_code": 12345}],
    }
    assert list(output) == list(schema["properties"])
    assert type(output["priority"]) is int
    check_valid(output, schema, Contact)


@pytest.mark.parametrize("form", sorted(CONTACT_SCHEMAS))
@pytest.mark.parametrize("result", [{}, {"contact": []}, {"contact": None, "address": "junk"},
                                    {"contact": [{"name": None, "kind": None}]}, None, [],
                                    {"contact": [{"kind": "nope", "age": "old", "active": "maybe"}]}])
def test_assemble_when_nothing_is_found(form, result):
    schema = CONTACT_SCHEMAS[form]
    output = plan_from_json_schema(schema, name="contact", where=WHERE).assemble(result)
    if form == "strict":      # everything required: nullable → null, arrays → []
        assert output == {"name": "", "age": None, "salary": None, "active": None, "kind": None,
                          "priority": None, "tags": [], "scores": [], "colors": [], "address": None,
                          "offices": []}
    else:                     # optional, non-nullable arrays are left out
        assert output == {"name": "", "age": None, "salary": None, "active": None, "kind": None,
                          "priority": None, "address": None}
    # kind is a required enum with no default: null, the documented exception to validating.
    check_valid({**output, "kind": "person"}, schema, Contact)


def test_assemble_accepts_the_confidence_form():
    plan = plan_from_json_schema(STRICT_CONTACT, name="contact", where=WHERE)
    output = plan.assemble({"contact": [{
        "name": {"text": "Ada", "confidence": 0.9, "start": 0, "end": 3},
        "age": {"text": "36", "confidence": 0.8}, "kind": {"text": "person", "confidence": 0.7},
        "tags": [{"text": "a", "confidence": 0.6}, {"text": "b", "confidence": 0.5}],
    }]})
    assert (output["name"], output["age"], output["kind"], output["tags"]) == ("Ada", 36, "person", ["a", "b"])
    check_valid(output, STRICT_CONTACT, Contact)


def test_missing_value_rules_and_key_order():
    schema = {
        "type": "object",
        "properties": {
            "opt_str": {"type": "string"},
            "req_str": {"type": "string"},
            "null_str": {"type": ["string", "null"]},
            "req_num_default": {"type": "number", "default": 2.5},
            "req_int": {"type": "integer"},
            "req_bool_default": {"type": "boolean", "default": False},
            "req_enum_default": {"enum": ["x", "y"], "default": "y"},
            "req_list": {"type": "array", "items": {"type": "integer"}},
            "opt_list": {"type": "array", "items": {"type": "integer"}},
            "req_obj": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"},
                                                         "c": {"type": "array"}, "d": {"type": "string"}},
                        "required": ["a", "c"]},
            "opt_obj": {"type": "object", "properties": {"a": {"type": "string"}}},
            "null_obj": {"type": ["object", "null"], "properties": {"a": {"type": "string"}}},
            "req_objs": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
        "required": ["req_str", "req_num_default", "req_int", "req_bool_default", "req_enum_default",
                     "req_list", "req_obj", "req_objs", "null_obj"],
    }
    output = plan_from_json_schema(schema, name="t", where=WHERE).assemble({})
    assert list(output.items()) == [
        ("req_str", ""), ("null_str", None), ("req_num_default", 2.5), ("req_int", None),
        ("req_bool_default", False), ("req_enum_default", "y"), ("req_list", []),
        ("req_obj", {"a": "", "c": []}), ("null_obj", None), ("req_objs", []),
    ]


def test_enums_of_numbers_booleans_and_null():
    schema = {"type": "object", "properties": {
        "level": {"enum": [1, 2.5, True, None, "x"]},
        "flag": {"const": False},
        "levels": {"type": "array", "items": {"enum": [1, 2, 3]}},
    }, "required": ["level", "flag", "levels"]}
    plan = plan_from_json_schema(schema, name="t", where=WHERE)
    fields = {f.name: f for f in plan.schema.structures[0].fields}
    assert fields["level"].choices == ("1", "2.5", "true", "x")
    assert fields["flag"].choices == ("false",)
    assert (fields["levels"].dtype, fields["levels"].choices) == ("list", ("1", "2", "3"))
    output = plan.assemble({"t": [{"level": "true", "flag": "false", "levels": ["3", "1", "3", "9"]}]})
    assert output == {"level": True, "flag": False, "levels": [3, 1]}
    assert type(output["levels"][0]) is int
    assert plan.assemble({"t": [{"level": "2.5"}]})["level"] == 2.5
    assert plan.assemble({})["level"] is None     # null is one of the enum's values
    check_valid(plan.assemble({"t": [{"level": "x", "flag": "false"}]}), schema)


def test_structure_names_avoid_collisions():
    inner = {"type": "object", "properties": {"a": {"type": "string"}}}
    schema = {"type": "object", "properties": {
        "x": {"type": "string"}, "contact": inner, "entities": inner,
        "relation_extraction": {"type": "array", "items": inner}, "contact_contact": inner,
    }}
    plan = plan_from_json_schema(schema, name="contact", where=WHERE)
    assert list(structures(plan)) == ["contact", "contact_contact", "contact_entities",
                                      "contact_relation_extraction", "contact_contact_contact"]
    result = {"contact": [{"x": "1"}], "contact_contact": [{"a": "c"}], "contact_entities": [{"a": "e"}],
              "contact_relation_extraction": [{"a": "r1"}, {"a": "r2"}], "contact_contact_contact": [{"a": "cc"}]}
    assert plan.assemble(result) == {"x": "1", "contact": {"a": "c"}, "entities": {"a": "e"},
                                     "relation_extraction": [{"a": "r1"}, {"a": "r2"}],
                                     "contact_contact": {"a": "cc"}}
    # A reserved schema name is renamed too; without root scalars no root structure is made.
    assert list(structures(plan_from_json_schema({"properties": {"x": {"type": "string"}}},
                                                 name="entities", where=WHERE))) == ["entities_2"]
    assert list(structures(plan_from_json_schema({"properties": {"person": inner}},
                                                 name="person", where=WHERE))) == ["person"]


def test_refs_allof_and_annotations():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/definitions/Root",
        "definitions": {
            "Root": {"type": "object", "title": "Root", "additionalProperties": False, "properties": {
                "when": {"type": "string", "format": "date-time", "pattern": ".*", "minLength": 1},
                "who": {"allOf": [{"$ref": "#/definitions/Name"}], "description": "the sender"},
                "same": {"$ref": "#/definitions/Root/properties/when", "description": "pointer into a schema"},
                "esc": {"$ref": "#/definitions/a~1b%20c"},
                "count": {"type": "integer", "minimum": 0, "examples": [3], "default": 0},
                "anything": {},
                "also": True,
            }, "required": ["count"]},
            "Name": {"type": "string", "description": "overridden"},
            "a/b c": {"type": "boolean"},
        },
    }
    plan = plan_from_json_schema(schema, name="root", where=WHERE)
    assert shape(plan.schema.structures[0].fields) == [
        ("when", "str", None, None), ("who", "str", None, "the sender"),
        ("same", "str", None, "pointer into a schema"), ("esc", "str", None, None),
        ("count", "str", None, None), ("anything", "str", None, None), ("also", "str", None, None),
    ]
    output = plan.assemble({"root": [{"esc": "No.", "count": "n/a", "anything": "?"}]})
    assert output == {"esc": False, "count": 0, "anything": "?"}
    check_valid(output, schema)


def test_refs_to_the_root_document_and_into_lists():
    with pytest.raises(ServiceError, match=r"properties\.me: \$ref cycle"):
        plan_from_json_schema({"type": "object", "properties": {"me": {"$ref": "#"}}}, name="t", where=WHERE)
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"},
                                               "c": {"$ref": "#/x/1"}},
              "x": [{"type": "string"}, {"type": "integer"}]}
    plan = plan_from_json_schema(schema, name="t", where=WHERE)
    assert plan.assemble({"t": [{"a": "s", "b": "s", "c": "4"}]}) == {"a": "s", "b": "s", "c": 4}
    for bad in ("#/x/2", "#/x/-1", "#/x/01", "#/x/a"):
        with pytest.raises(ServiceError, match="does not resolve"):
            plan_from_json_schema({**schema, "properties": {"c": {"$ref": bad}}}, name="t", where=WHERE)


@pytest.mark.parametrize("text, number, integer", [
    ("1,234", 1234, 1234), ("about 42 years", 42, 42), ("1,234.5", 1234.5, None), ("-3.5e2 m", -350.0, -350),
    ("+7", 7, 7), ("COVID-19", 19, 19), ("1,23", 1, 1), ("12345,678", 12345, 12345), (".5", 0.5, None),
    ("42.", 42, 42), ("3.0", 3.0, 3), ("1e999", None, None), ("no digits", None, None), ("", None, None),
    (None, None, None), (["7"], None, None), (True, None, None), (5, 5, 5), (2.0, 2.0, 2),
])
def test_number_parsing(text, number, integer):
    def plain(value):
        return None if value is MISSING else value

    assert plain(parse_number(text)) == number
    assert plain(parse_integer(text)) == integer
    assert type(plain(parse_integer(text))) in (int, type(None))


@pytest.mark.parametrize("text, value", [
    ("true", True), ("Yes", True), ("y", True), (" 1 ", True), ("YES.", True), ("false", False), ("No", False),
    ("n", False), ("0", False), ("maybe", None), ("", None), (None, None), (1, None), (False, False),
])
def test_boolean_parsing(text, value):
    parsed = parse_boolean(text)
    assert (None if parsed is MISSING else parsed) == value


# --------------------------------------------------------------------------- refusals


class Node(BaseModel):
    name: str
    child: Optional["Node"] = None


class Geo(BaseModel):
    lat: float


class DeepAddress(BaseModel):
    city: str
    geo: Geo


class DeepPerson(BaseModel):
    address: DeepAddress


class Tag(BaseModel):
    label: str


class TaggedAddress(BaseModel):
    tags: list[Tag]


class TaggedPerson(BaseModel):
    address: TaggedAddress


def obj(**properties) -> dict:
    return {"type": "object", "properties": properties}


S = {"type": "string"}

REFUSALS = [
    # (schema, the path named in the message, what the message says)
    (DeepPerson.model_json_schema(), ".properties.address.properties.geo", "nested objects deeper than one level"),
    (TaggedPerson.model_json_schema(), ".properties.address.properties.tags", "nested objects deeper"),
    (obj(a=obj(b={"type": "array", "items": obj(c=S)})), ".properties.a.properties.b", "nested objects deeper"),
    (Node.model_json_schema(), ".properties.child", "$ref cycle"),
    ({**obj(a={"$ref": "#/$defs/A"}), "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}},
     ".properties.a", "$ref cycle"),
    (obj(a={"$ref": "https://example.com/schema.json"}), ".properties.a", "remote $ref"),
    (obj(a={"$ref": "other.json#/A"}), ".properties.a", "remote $ref"),
    (obj(a={"$ref": "#anchor"}), ".properties.a", "only JSON pointers"),
    (obj(a={"$ref": "#/$defs/Missing"}), ".properties.a", "does not resolve"),
    (obj(a={"$ref": "#/properties/a/x/99999999999"}), ".properties.a", "does not resolve"),
    (obj(a={"$ref": 5}), ".properties.a", "$ref must be a string"),
    (obj(a={"anyOf": [S, {"type": "number"}]}), ".properties.a", "anyOf unions of 2 schemas"),
    (obj(a={"oneOf": [S, {"type": "integer"}, {"type": "null"}]}), ".properties.a", "oneOf unions of 2"),
    (obj(a={"anyOf": [{"type": "null"}]}), ".properties.a", "only be null"),
    (obj(a={"anyOf": []}), ".properties.a", "non-empty list"),
    (obj(a={"anyOf": [S], "oneOf": [S]}), ".properties.a", "anyOf and oneOf together"),
    (obj(a={"allOf": [S, {"minLength": 1}]}), ".properties.a", "allOf is only supported with exactly one"),
    (obj(a={"type": ["string", "number"]}), ".properties.a", "multi-type unions"),
    (obj(a={"type": ["string", "number", "null"]}), ".properties.a", "multi-type unions"),
    (obj(a={"type": []}), ".properties.a", "type must be"),
    (obj(a={"type": "null"}), ".properties.a", "only be null"),
    (obj(a={"type": "foo"}), ".properties.a", "unsupported type 'foo'"),
    (obj(a={"type": 3}), ".properties.a", "unsupported type 3"),
    (obj(a="junk"), ".properties.a", "expected a schema object"),
    (obj(a=None), ".properties.a", "expected a schema object"),
    (obj(a=False), ".properties.a", "accepts no value"),
    (obj(a={"type": "array", "items": {"type": "array"}}), ".properties.a.items", "arrays of arrays"),
    (obj(a={"type": "array", "prefixItems": [S, S]}), ".properties.a", "tuple arrays"),
    (obj(a={"type": "array", "items": [S]}), ".properties.a", "tuple arrays"),
    (obj(a={"type": "object"}), ".properties.a", "objects without properties"),
    (obj(a={"type": "object", "additionalProperties": S}), ".properties.a", "objects without properties"),
    (obj(a={"type": "object", "properties": []}), ".properties.a.properties", "expected an object"),
    (obj(a={"enum": []}), ".properties.a", "non-empty list"),
    (obj(a={"enum": "abc"}), ".properties.a", "non-empty list"),
    (obj(a={"enum": [None]}), ".properties.a", "only be null"),
    (obj(a={"const": None}), ".properties.a", "only be null"),
    (obj(a={"enum": [{"x": 1}]}), ".properties.a", "enum values must be strings"),
    (obj(a={"enum": [float("nan")]}), ".properties.a", "enum values must be strings"),
    (obj(a={"enum": ["", "x"]}), ".properties.a", "must not be empty"),
    (obj(a={"enum": ["1", 1]}), ".properties.a", "would share the label '1'"),
    (obj(**{"": S}), ".properties..name", "non-empty"),
    ({**obj(a=S), "required": "a"}, ".required", "expected a list of property names"),
    ({**obj(a=S), "required": ["b"]}, ".required", "'b' is not one of the properties"),
    ({"type": "object", "properties": {1: S}}, ".properties", "property names must be strings"),
    ({"type": "string"}, "", "the schema must be an object"),
    ({"type": "array", "items": obj(a=S)}, "", "the schema must be an object"),
    ({"type": "object", "properties": {}}, "", "objects without properties"),
    ({"type": "object"}, "", "objects without properties"),
    ({}, "", "the schema must be an object"),
    ([], "", "expected a schema object"),
    ("junk", "", "expected a schema object"),
    (None, "", "expected a schema object"),
    ({"type": "object", "properties": "junk"}, ".properties", "expected an object"),
]


@pytest.mark.parametrize("schema, path, message", REFUSALS)
def test_refusals_name_the_path(schema, path, message):
    with pytest.raises(ServiceError) as caught:
        plan_from_json_schema(schema, name="t", where=WHERE)
    error = caught.value
    assert error.kind is ErrorKind.INVALID_REQUEST and error.kind.http_status == 400
    assert error.field == "response_format"
    assert error.message.startswith(f"Invalid {WHERE}{path}: "), error.message
    assert message in error.message, error.message


def test_refusal_field_is_the_first_segment_of_where():
    with pytest.raises(ServiceError) as caught:
        plan_from_json_schema({"type": "string"}, name="get_weather", where="tools[0].function.parameters")
    assert caught.value.field == "tools"
    assert caught.value.message.startswith("Invalid tools[0].function.parameters: ")
    for name in ("", "  ", None, 3):
        with pytest.raises(ServiceError, match="name must be a non-empty string"):
            plan_from_json_schema(obj(a=S), name=name, where=WHERE)


def nested(depth: int, wrap) -> Any:
    value: Any = S
    for _ in range(depth):
        value = wrap(value)
    return value


DEEP = [
    obj(a=nested(5000, lambda v: {"allOf": [v]})),
    obj(a=nested(5000, lambda v: {"anyOf": [v, {"type": "null"}]})),
    obj(a=nested(5000, lambda v: obj(a=v))),
    obj(a=nested(5000, lambda v: {"type": "array", "items": v})),
    nested(5000, lambda v: {"allOf": [v]}),
    nested(5000, lambda v: obj(a=v)),
    {**obj(a={"$ref": "#/$defs/d0"}), "$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(1000)}},
    obj(a={"type": nested(100_000, lambda v: [v])}),
    obj(a={"enum": [nested(100_000, lambda v: [v])]}),
    obj(a=S, b={"type": "integer", "default": nested(100_000, lambda v: [v])}),
]


@pytest.mark.parametrize("schema", DEEP)
def test_deeply_nested_schemas_are_refused_or_planned(schema):
    try:
        plan = plan_from_json_schema(schema, name="t", where=WHERE)
    except ServiceError as error:
        assert error.kind is ErrorKind.INVALID_REQUEST
        assert error.message.startswith(f"Invalid {WHERE}")
    else:
        json.dumps(plan.assemble({"t": [{"a": "1", "b": "2"}]}))


# --------------------------------------------------------------------------- fuzzing

KEYWORDS = ["type", "properties", "items", "required", "enum", "const", "$ref", "anyOf", "oneOf", "allOf",
            "description", "default", "prefixItems", "nullable", "$defs", "additionalProperties", "a", "b"]
TYPES = st.sampled_from(["string", "number", "integer", "boolean", "object", "array", "null", "foo"])
REFS = st.sampled_from(["#", "#/$defs/a", "#/$defs/b", "#/properties/a", "#/properties/a/items", "#/x",
                        "http://x", "#anchor", "#/$defs/a/properties/b"])
scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=6)
junk = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                   max_size=3), max_leaves=8)


def schema_values(children):
    return st.one_of(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3),   # properties, $defs
        st.lists(children, max_size=3),                                            # anyOf, items, enum
        TYPES, st.lists(TYPES, max_size=3), REFS, st.lists(st.sampled_from(["a", "b", "x"]), max_size=3),
        junk,
    )


schemas = st.recursive(
    st.booleans() | st.dictionaries(st.sampled_from(KEYWORDS), TYPES | REFS | junk, max_size=3),
    lambda children: st.dictionaries(st.sampled_from(KEYWORDS), schema_values(children) | children, max_size=5),
    max_leaves=25,
)
records = st.dictionaries(st.sampled_from(["a", "b", "c"]),
                          st.none() | st.text(max_size=8) | st.lists(st.text(max_size=5) | junk, max_size=3)
                          | st.dictionaries(st.sampled_from(["text", "confidence"]), scalars) | junk)
results = st.dictionaries(st.sampled_from(["t", "a", "b", "c", "t_a", "t_b"]),
                          st.lists(records | junk, max_size=3) | junk, max_size=4) | junk

# Plausible schemas: mostly valid ones (scalars, Optional, arrays, objects, refs), junk now and then.
NAMES = st.sampled_from(["a", "b", "c", "t"])
scalar_schemas = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "number", "integer", "boolean"])},
    optional={"description": st.text(max_size=5), "default": scalars, "nullable": st.booleans(),
              "enum": st.lists(scalars, min_size=1, max_size=3)})


def optional_or_not(schema):
    return st.one_of(schema, st.builds(lambda s: {"anyOf": [s, {"type": "null"}]}, schema),
                     st.builds(lambda s: {"allOf": [s], "description": "d"}, schema))


def array_of(schema):
    return st.builds(lambda s: {"type": "array", "items": s}, schema)


def object_of(schema):
    return st.builds(lambda p, r: {"type": "object", "properties": p, "required": [k for k in p if k in r]},
                     st.dictionaries(NAMES, schema, min_size=1, max_size=3), st.lists(NAMES, max_size=3))


leaf_schemas = optional_or_not(scalar_schemas | array_of(scalar_schemas) | st.just({"$ref": "#/$defs/a"})) | junk
nested_schemas = optional_or_not(object_of(leaf_schemas) | array_of(object_of(leaf_schemas))
                                 | object_of(object_of(leaf_schemas)))
plausible = st.builds(lambda root, defs: {**root, "$defs": defs}, object_of(leaf_schemas | nested_schemas),
                      st.dictionaries(NAMES, leaf_schemas | nested_schemas, max_size=2))

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(schema=schemas, typed=st.booleans(), result=results)
def test_fuzz_any_schema_is_planned_or_refused(schema, typed, result):
    schema = {"type": "object", **schema} if isinstance(schema, dict) and typed else schema
    try:
        plan = plan_from_json_schema(schema, name="t", where=WHERE)
    except ServiceError as error:
        assert error.kind is ErrorKind.INVALID_REQUEST and error.field == "response_format"
        return
    output = plan.assemble(result)
    assert isinstance(output, dict)
    json.dumps(output, allow_nan=False)


@FUZZ
@given(schema=plausible,
       result=results | st.fixed_dictionaries({k: st.lists(records, max_size=3) for k in "tabc"}))
def test_fuzz_plausible_schemas_plan_and_assemble(schema, result):
    try:
        plan = plan_from_json_schema(schema, name="t", where=WHERE)
    except ServiceError as error:
        assert error.kind is ErrorKind.INVALID_REQUEST and error.message.startswith(f"Invalid {WHERE}")
        return
    output = plan.assemble(result)
    assert list(output) == [k for k in schema["properties"] if k in output]
    json.dumps(output, allow_nan=False)


@FUZZ
@given(result=results)
def test_fuzz_any_result_assembles_to_a_valid_object(result):
    plan = plan_from_json_schema(STRICT_CONTACT, name="contact", where=WHERE)
    output = plan.assemble(result)
    check_valid({**output, "kind": output["kind"] or "person"}, STRICT_CONTACT, Contact)


@FUZZ
@given(contact=st.fixed_dictionaries({k: records for k in ("contact", "address", "offices")}),
       values=st.lists(st.text(max_size=10) | st.sampled_from(["1,234", "yes", "no", "person", "2", "red"]),
                       min_size=12, max_size=12))
def test_fuzz_library_shaped_results_validate(contact, values):
    names = ["name", "age", "salary", "active", "kind", "priority", "street", "city", "zip_code"]
    record = dict(zip(names, values)) | {"tags": values[:3], "scores": values[3:6], "colors": values[6:]}
    result = {"contact": [record, contact["contact"]], "address": [record], "offices": [record, record]}
    for schema in CONTACT_SCHEMAS.values():
        output = plan_from_json_schema(schema, name="contact", where=WHERE).assemble(result)
        check_valid({**output, "kind": output["kind"] or "company"}, schema, Contact)


# --------------------------------------------------------------------------- end to end


class Invoice(BaseModel):
    number: Optional[str] = Field(None, description="invoice number")
    total: Optional[float] = None
    items_count: Optional[int] = None
    paid: Optional[bool] = None
    currency: Optional[Literal["EUR", "USD"]] = None
    notes: list[str] = []
    seller: Optional[Address] = None
    lines: list[Address] = []


@pytest.fixture(scope="module")
def tiny_model(span_checkpoint):
    from gliner2 import GLiNER2

    return GLiNER2.from_pretrained(str(span_checkpoint))


@pytest.mark.parametrize("form", ["pydantic", "strict"])
def test_end_to_end_on_a_tiny_checkpoint(tiny_model, form):
    schema = Invoice.model_json_schema()
    if form == "strict":
        schema = json.loads(json.dumps(schema))
        schema["required"] = list(schema["properties"])
    plan = plan_from_json_schema(schema, name="invoice", where=WHERE)
    library_schema = to_library_schema(plan.schema, tiny_model)
    text = "Invoice INV-7 from Acme, 1 Main St, Leeds: 3 items, total 1,234.50 EUR, paid: yes."
    for threshold in (0.0, 0.5, 0.99):
        result = tiny_model.extract(text, library_schema, threshold=threshold, format_results=True,
                                    include_confidence=False, include_spans=False)
        assert set(result) <= {"invoice", "seller", "lines"}
        output = plan.assemble(result)
        check_valid(output, schema, Invoice)
