"""Native gRPC through Envoy's port: typed Extract, Gliner2, health, reflection, auth, errors."""
from __future__ import annotations

import grpc
import pytest
import requests
from gliner_client import GlinerClient, GlinerError, build_schema
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import API_KEY, SEED_TEXT
from helpers import SCORE_TOLERANCE
from test_rest_api import SEED_ENTITIES, same_json

SCHEMA = dict(entities={"person": "A human", "company": ""},
              classifications={"sentiment": ["positive", "negative"]},
              structures={"meeting": [{"name": "who", "dtype": "list"}, {"name": "where", "dtype": "str"}]},
              relations=["works_for"])
TEXT = "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday."


@pytest.fixture(scope="module")
def client(stack):
    with GlinerClient(f"127.0.0.1:{stack.port}", api_key=API_KEY) as client:
        yield client


def local_schema(reference):
    schema = (reference.create_schema().entities({"person": "A human", "company": {}})
              .classification("sentiment", ["positive", "negative"]).relations(["works_for"]))
    schema.structure("meeting").field("who", dtype="list").field("where", dtype="str")
    return schema


def test_extract_typed_matches_library(client, reference):
    response = client.extract(TEXT, build_schema(**SCHEMA), threshold=0.4)
    want = reference.extract(TEXT, local_schema(reference), threshold=0.4, include_confidence=True,
                             include_spans=True)
    result = response.result
    got_entities = [(m.label, m.text, m.start, m.end) for m in result.entities]
    assert got_entities == [(label, m["text"], m["start"], m["end"])
                            for label, ms in want["entities"].items() for m in ms]
    for mention in result.entities:
        assert TEXT[mention.start:mention.end] == mention.text
    assert [(c.task, [l.label for l in c.labels]) for c in result.classifications] == [
        ("sentiment", [want["sentiment"]["label"]])]
    assert abs(result.classifications[0].labels[0].score - want["sentiment"]["confidence"]) < SCORE_TOLERANCE
    assert [s.name for s in result.structures] == ["meeting"]
    assert len(result.structures[0].records) == len(want["meeting"])
    assert [(r.head.text, r.tail.text) for r in result.relations] == [
        (p["head"]["text"], p["tail"]["text"]) for p in want["relation_extraction"]["works_for"]]
    assert response.model_id and response.latency_ms > 0


def test_batch_extract(client):
    texts = [SEED_TEXT, TEXT]
    response = client.batch_extract(texts, build_schema(entities=["person"]))
    assert len(response.results) == 2
    singles = [client.extract(t, build_schema(entities=["person"])).result for t in texts]
    assert [[(m.text, m.start) for m in r.entities] for r in response.results] == [
        [(m.text, m.start) for m in r.entities] for r in singles]


def test_gliner2_over_grpc_equals_rest(client, stack):
    rest = requests.post(stack.base_url + "/gliner-2", json=SEED_ENTITIES, headers={"X-API-Key": API_KEY},
                         timeout=30).json()
    same_json(client.gliner2(SEED_ENTITIES), rest)


def test_health_is_open_and_serving(stack):
    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "gliner.v1.GlinerService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(stack):
    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as channel:
        channel = grpc.intercept_channel(channel, _Metadata(("x-api-key", API_KEY)))
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"gliner.v1.GlinerService", "grpc.health.v1.Health"} <= services
        descriptor = database.FindFileContainingSymbol("gliner.v1.GlinerService")
        assert descriptor.package == "gliner.v1"


def test_authentication_and_status_details(stack):
    with GlinerClient(f"127.0.0.1:{stack.port}") as anonymous:
        with pytest.raises(GlinerError) as caught:
            anonymous.extract(TEXT, build_schema(entities=["person"]))
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED and caught.value.reason == "UNAUTHORIZED"
    with GlinerClient(f"127.0.0.1:{stack.port}", api_key="wrong") as wrong:
        with pytest.raises(GlinerError) as caught:
            wrong.extract(TEXT, build_schema(entities=["person"]))
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED and caught.value.message == "Invalid API key"


@pytest.mark.parametrize("call, code, reason, field", [
    (lambda c: c.extract(TEXT, build_schema()), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "schema"),
    (lambda c: c.extract("", build_schema(entities=["a"])), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "text"),
    (lambda c: c.extract(TEXT, build_schema(entities=["a"]), threshold=2.0), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_REQUEST", "threshold"),
    (lambda c: c.extract(TEXT, build_schema(classifications={"s": ["only"]})), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_REQUEST", "schema"),
    (lambda c: c.extract(TEXT, build_schema(entities=["a"]), model_id="no/such-model"), grpc.StatusCode.NOT_FOUND,
     "NOT_FOUND", None),
    (lambda c: c.gliner2({"labels": ["a"]}), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "text"),
])
def test_errors_carry_status_details(client, call, code, reason, field):
    with pytest.raises(GlinerError) as caught:
        call(client)
    assert caught.value.code == code and caught.value.reason == reason and caught.value.field == field
    assert caught.value.message


def _with_kind(kind: int, where: str):
    schema = build_schema(entities=["person"], structures={"s": [{"name": "f"}]})
    if where == "entity":
        schema.entities[0].kind = kind
    else:
        schema.structures[0].fields[0].kind = kind
    return schema


@pytest.mark.parametrize("where, field", [("entity", "schema.entities[0].kind"),
                                          ("field", "schema.structures[0].fields[0].kind")])
def test_an_enum_value_no_version_defines_is_a_client_error(client, where, field):
    """proto3 enums are open: a newer client (or a bad one) may send any number. That is INVALID_ARGUMENT
    naming the field, not an internal error."""
    with pytest.raises(GlinerError) as caught:
        client.extract(TEXT, _with_kind(99, where))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.reason == "INVALID_REQUEST"
    assert caught.value.field == field and "unknown kind 99" in caught.value.message
    assert client.extract(TEXT, _with_kind(2, where)).result is not None   # a defined value still works


def test_malformed_protobuf_is_rejected(stack):
    """Bytes that are not a valid ExtractRequest: a clean error, and the server stays up."""
    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as channel:
        raw = channel.unary_unary("/gliner.v1.GlinerService/Extract")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\x0a\xff\xff\xff\xff\x0f", metadata=(("x-api-key", API_KEY),), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in caught.value.details()
    assert requests.get(stack.base_url + "/healthz", timeout=5).status_code == 200


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, *pairs):
        self.pairs = pairs

    def _with(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self.pairs)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with(details), request)

    def intercept_stream_stream(self, continuation, details, requests_):
        return continuation(self._with(details), requests_)


def test_a_call_whose_caller_left_is_logged_as_such_not_as_a_server_failure(stack):
    """A deadline that passes while the model runs: the caller gets DEADLINE_EXCEEDED, and the server logs the
    call as ended by its caller (no traceback, no INTERNAL), once it finds no one to answer."""
    import time

    text = "Tim Cook met Sundar Pichai in Paris. " * 300
    before = stack.log_path.read_text(errors="replace")
    with GlinerClient(f"127.0.0.1:{stack.port}", api_key=API_KEY, timeout=0.05) as quick:
        with pytest.raises(GlinerError) as caught:
            quick.extract(text, build_schema(entities=["person", "company", "location"]))
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = stack.log_path.read_text(errors="replace")[len(before):]
        lines = [line for line in new.splitlines() if "gliner2.access" in line and "method=Extract" in line]
        if lines:
            break
        time.sleep(0.1)
    assert lines, new[-2000:]
    assert "status=DEADLINE_EXCEEDED" in lines[-1] or "status=CANCELLED" in lines[-1], lines[-1]
    assert "unexpected failure in Extract" not in new, new[-3000:]
