"""Property-based tests (hypothesis) of everything that parses client JSON into a schema.

Any JSON at all, sent to any dialect, either becomes a valid core request or a
ServiceError with a client status (400 or 413): never another exception (a
500), never a schema the library then refuses. Valid bodies keep their labels,
in order.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import loaded

from gliner_server.core.schema import ExtractionSchema, parse_field_spec, to_library_schema
from gliner_server.dialects import gliner2_api, inference_api, run_api, schema_json
from gliner_server.errors import ErrorKind, ServiceError

CLIENT_ERRORS = {ErrorKind.INVALID_REQUEST, ErrorKind.PAYLOAD_TOO_LARGE}
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=12)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20)
keys = st.sampled_from(["text", "labels", "task", "schema", "threshold", "include_confidence", "include_spans",
                        "format_results", "model_id", "entities", "classifications", "structures", "relations",
                        "entity_threshold", "relation_threshold", "categories", "input", "parameters",
                        "entity_types", "multi_label", "privacy_mode", "project_id"])
# Bodies shaped like the real ones (known keys) with anything as values, nested.
bodies = st.recursive(st.dictionaries(keys, json_values, max_size=6),
                      lambda children: st.dictionaries(keys, children | json_values, max_size=6), max_leaves=30)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s.strip() and ":" not in s and s not in ("entities", "relation_extraction"))


def either_valid_or_client_error(parse, value):
    try:
        return parse(value)
    except ServiceError as error:
        assert error.kind in CLIENT_ERRORS, error
        assert error.message and len(error.message) < 2000
        return None


@PROFILE
@given(body=bodies | json_values)
def test_gliner2_bodies(body):
    call = either_valid_or_client_error(gliner2_api.parse, body)
    if call is not None:
        assert isinstance(call.request.schema, ExtractionSchema) and call.request.texts


@PROFILE
@given(body=bodies | json_values)
def test_inference_bodies(body):
    either_valid_or_client_error(lambda b: inference_api.parse_json(json.dumps(b).encode()), body)


@PROFILE
@given(parameters=bodies)
def test_run_parameters(parameters):
    either_valid_or_client_error(run_api.parameters_schema, parameters)


@PROFILE
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_raw_bytes_never_crash_a_parser(raw):
    for parse in (gliner2_api.parse_json, inference_api.parse_json):
        either_valid_or_client_error(parse, raw)


@PROFILE
@given(spec=json_values, where=st.sampled_from(["entities", "classifications", "structures", "relations"]))
def test_schema_pieces(spec, where):
    parse = {"entities": lambda s: schema_json.entity_specs(s, "schema.entities"),
             "classifications": lambda s: schema_json.classification_specs(s, "schema.classifications"),
             "structures": lambda s: schema_json.structure_specs(s, "schema.structures"),
             "relations": lambda s: schema_json.relation_specs(s, "schema.relations")}[where]
    try:
        parse(spec)
    except ServiceError as error:
        assert error.kind in CLIENT_ERRORS


@PROFILE
@given(labels=st.lists(names, min_size=1, max_size=8, unique=True))
def test_valid_labels_keep_their_order(labels):
    call = gliner2_api.parse({"text": "Tim Cook leads Apple.", "labels": labels})
    assert [e.name for e in call.request.schema.entities] == labels


@PROFILE
@given(name=names, dtype=st.sampled_from([None, "str", "list"]),
       choices=st.none() | st.lists(names.filter(lambda s: "|" not in s and "]" not in s and s == s.strip()),
                                    min_size=1, max_size=4, unique=True),
       description=st.none() | names.filter(lambda s: not s.startswith("[") and s not in ("str", "list")))
def test_field_spec_strings_round_trip(name, dtype, choices, description):
    """The library's "name::dtype::[a|b]::description" grammar, as the service reads it."""
    parts = [name] + ([dtype] if dtype else []) + ([f"[{'|'.join(choices)}]"] if choices else []) \
        + ([description] if description else [])
    field = parse_field_spec("::".join(parts))
    assert field.name == name and field.description == description
    assert field.choices == (tuple(choices) if choices else None)
    assert field.dtype == (dtype or ("str" if choices else "list"))


@pytest.fixture(scope="module")
def library_model(span_checkpoint, cache_dir):
    return loaded(span_checkpoint, "torch", cache_dir).model


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_every_accepted_schema_is_one_the_library_builds(library_model, body):
    """A schema the service accepts never fails later inside the library's builder."""
    call = either_valid_or_client_error(gliner2_api.parse, {"text": "x", **body})
    if call is not None:
        to_library_schema(call.request.schema, library_model).build()
