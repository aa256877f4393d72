"""The shared conformance vectors (clients/conformance), sent through the Python client to a live server.

The TypeScript and Go clients' tests run the same vectors (clients/typescript, clients/go).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from google.protobuf import json_format

from gliner_client import GlinerClient, GlinerError
from gliner_client.v1 import gliner_service_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "clients" / "conformance" / "vectors.json").read_text())
SCORE_KEYS = {"score"}


@pytest.fixture(scope="module")
def conformance_server(work_dir):
    import sys

    sys.path.insert(0, str(ROOT / "clients" / "conformance"))
    from generate import start_server

    from gliner_server.envoy import free_port
    from gliner_server.random_checkpoint import main as build_checkpoint

    checkpoint = work_dir / "conformance-ckpt"
    build_checkpoint([str(checkpoint), "--seed", "1"])
    port = free_port()
    server = start_server(checkpoint, work_dir / "cache", work_dir / "conformance-run", port)
    yield f"127.0.0.1:{port}"
    server.terminate()
    assert server.wait(30) == 0


def same(actual, expected, tolerance, where="response"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: {actual} != {expected}"
        for key in expected:
            if key in SCORE_KEYS:
                assert math.isclose(actual[key], expected[key], abs_tol=tolerance), f"{where}.{key}"
            else:
                same(actual[key], expected[key], tolerance, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} != {expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            same(a, e, tolerance, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def mentions(response: dict, request: dict):
    """(text analysed, mention) for every entity mention of the answer."""
    results = [response.get("result", {})] if "result" in response else response.get("results", [])
    texts = [request["text"]] if "text" in request else request["texts"]
    for text, result in zip(texts, results):
        for mention in result.get("entities", []):
            yield text, mention


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_every_vector_gives_its_answer_through_the_python_client(conformance_server, vector):
    key = vector.get("api_key", VECTORS["api_key"])
    request = json_format.ParseDict(vector["request"], getattr(pb, f"{vector['method']}Request")())
    with GlinerClient(conformance_server, api_key=key) as client:
        try:
            response = client._call(getattr(client.stub, vector["method"]), request)
        except GlinerError as error:
            assert "error" in vector, f"unexpected error {error}"
            assert {"code": error.code.name, "reason": error.reason, "field": error.field} == vector["error"]
            return
    assert "response" in vector, f"expected {vector['error']}, got an answer"
    printed = json_format.MessageToDict(response, preserving_proto_field_name=True)
    printed = {k: v for k, v in printed.items() if k not in VECTORS["volatile"]}
    same(printed, vector["response"], VECTORS["score_tolerance"])
    for text, mention in mentions(printed, vector["request"]):   # Python strings index code points, as offsets do
        assert text[mention.get("start", 0):mention["end"]] == mention["text"]


def test_the_vectors_cover_every_kind_of_answer():
    names = {v["name"] for v in VECTORS["vectors"]}
    answers = [v["response"] for v in VECTORS["vectors"] if "response" in v]
    kinds = {kind for a in answers for r in ([a.get("result", {})] + a.get("results", [])) for kind in r}
    assert {"entities", "classifications", "structures", "relations"} <= kinds, kinds
    assert any(ord(c) > 0xFFFF for v in VECTORS["vectors"] for c in json.dumps(v["request"], ensure_ascii=False))
    assert {"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED"} <= {
        v["error"]["code"] for v in VECTORS["vectors"] if "error" in v}
    assert "batch" in names and "unicode_offsets" in names
