"""Input limits and long texts: every limit is a clear 400/413, and long texts are chunked like the library's.

The engine-level tests run the served model in-process against the gliner2
library's own ``batch_extract_long``; the last ones go through the real
``gliner2-serve`` + Envoy and check how each route says a text was chunked.
"""
from __future__ import annotations

import json

import grpc
import pytest
import requests

from conftest import API_KEY, SEED_TEXT, loaded, start_stack, stop_stack
from helpers import assert_match

from gliner_server.core.engine import ExtractionRequest, InferenceEngine, OutputOptions
from gliner_server.core.limits import Limits
from gliner_server.core.schema import EntitySpec, build_schema, to_library_schema
from gliner_server.errors import ErrorKind, ServiceError

SENTENCES = ["Tim Cook leads Apple in Cupertino.", "Satya Nadella runs Microsoft from Redmond.",
             "Anna Weber opened a lab in Zurich for Google.", "Sundar Pichai met reporters in Paris."]
LONG_TEXT = " ".join(SENTENCES[i % 4] for i in range(24))          # ~150 words
LABELS = ["person", "company", "city"]
FULL = OutputOptions(include_confidence=True, include_spans=True)
WINDOW = dict(window_words=40, window_overlap_words=8)


@pytest.fixture(scope="module")
def served(span_checkpoint, cache_dir):
    return loaded(span_checkpoint, "f32", cache_dir)


@pytest.fixture(scope="module")
def reference(span_checkpoint, cache_dir):
    return loaded(span_checkpoint, "torch", cache_dir).model


def engine(model, **limits) -> InferenceEngine:
    return InferenceEngine.of(model, limits=Limits(**limits))


def request(*texts, labels=LABELS, output=FULL, threshold=0.3) -> ExtractionRequest:
    schema = build_schema(entities=tuple(EntitySpec(name=label) for label in labels))
    return ExtractionRequest(texts=texts, schema=schema, threshold=threshold, output=output)


def raises(kind: ErrorKind, call, match: str):
    with pytest.raises(ServiceError) as caught:
        call()
    assert caught.value.kind is kind and match in caught.value.message, caught.value.message
    return caught.value


@pytest.mark.parametrize("output", [FULL, OutputOptions()], ids=["scores+spans", "plain"])
def test_long_text_is_chunked_as_the_library_does(served, reference, output):
    """Every text of such a request goes the library's batch_extract_long way, short ones as one chunk."""
    outcome = engine(served, **WINDOW).run(request(LONG_TEXT, SEED_TEXT, output=output))
    assert outcome.chunks[0] > 1 and outcome.chunks[1] == 1 and outcome.chunked
    schema = to_library_schema(request(SEED_TEXT).schema, reference)
    # batch_size 16: the chunks padded together as the service's batcher runs them (--batch-size 16)
    expected = reference.batch_extract_long([LONG_TEXT, SEED_TEXT], schema, chunk_size=40, chunk_overlap=8, batch_size=16,
                                            threshold=0.3, include_confidence=output.include_confidence,
                                            include_spans=output.include_spans)
    assert_match(outcome.results, expected)
    if output.include_spans:  # offsets index the whole text
        mentions = [m for ms in outcome.results[0]["entities"].values() for m in ms]
        assert mentions and all(LONG_TEXT[m["start"]:m["end"]] == m["text"] for m in mentions)
        assert max(m["start"] for m in mentions) > len(" ".join(LONG_TEXT.split()[:40]))  # found past window 1


def test_texts_within_the_window_take_the_usual_path(served, reference):
    outcome = engine(served, **WINDOW).run(request(SEED_TEXT))
    assert outcome.chunks == (1,) and not outcome.chunked
    expected = reference.extract_entities(SEED_TEXT, LABELS, threshold=0.3, include_confidence=True,
                                          include_spans=True)
    assert_match(outcome.results[0], expected)


def test_long_texts_are_rejected_when_the_policy_says_so(served):
    error = raises(ErrorKind.PAYLOAD_TOO_LARGE, lambda: engine(served, long_text="reject", **WINDOW).run(
        request(SEED_TEXT, LONG_TEXT)), "longer than the model's window of 40 words")
    assert error.field == "text" and "text[1]" in error.message


def test_format_results_false_is_refused_for_long_texts(served):
    raises(ErrorKind.INVALID_REQUEST, lambda: engine(served, **WINDOW).run(
        request(LONG_TEXT, output=OutputOptions(format_results=False))), "format_results=false")


def test_a_pass_over_the_token_limit_is_413_not_an_out_of_memory(served):
    """One 'word' of 3000 letters: within the word window, far over the subword budget of one pass."""
    raises(ErrorKind.PAYLOAD_TOO_LARGE, lambda: engine(served, max_pass_tokens=512).run(
        request("x" * 3000)), "subword tokens")
    engine(served, max_pass_tokens=512).run(request(SEED_TEXT))  # ordinary texts never count tokens


@pytest.mark.parametrize("limits, build, kind, match", [
    ({"max_text_chars": 50}, lambda: request(SEED_TEXT + " " * 10), ErrorKind.PAYLOAD_TOO_LARGE,
     "characters; at most 50"),
    ({"max_texts": 2}, lambda: request(SEED_TEXT, SEED_TEXT, SEED_TEXT), ErrorKind.INVALID_REQUEST,
     "Too many texts: 3"),
    ({"max_schema_items": 3}, lambda: request(SEED_TEXT, labels=["a", "b", "c", "d"]), ErrorKind.INVALID_REQUEST,
     "4 items"),
    ({"max_schema_chars": 10}, lambda: request(SEED_TEXT, labels=["organisation", "person"]),
     ErrorKind.PAYLOAD_TOO_LARGE, "characters of names"),
])
def test_every_limit_is_a_clear_client_error(served, limits, build, kind, match):
    raises(kind, lambda: engine(served, **limits).run(build()), match)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="window_overlap_words"):
        Limits(window_words=10, window_overlap_words=10)
    with pytest.raises(ValueError, match="long_text"):
        Limits(long_text="truncate")


# --- through Envoy ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_window_stack(span_checkpoint, cache_dir, work_dir):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "limits-stack", "--api-key", API_KEY,
                        "--window-words", "40", "--max-text-chars", "5000", "--max-request-bytes", "65536")
    yield stack
    assert stop_stack(stack) == 0, stack.log()


def post(stack, path, body, **kwargs):
    return requests.post(stack.base_url + path, json=body, headers={"X-API-Key": API_KEY}, timeout=60, **kwargs)


def test_each_route_says_when_a_text_was_chunked(small_window_stack):
    stack = small_window_stack
    plain = post(stack, "/gliner-2", {"text": SEED_TEXT, "labels": LABELS})
    assert plain.status_code == 200 and "x-gliner-chunks" not in plain.headers
    chunked = post(stack, "/gliner-2", {"text": [LONG_TEXT, SEED_TEXT], "labels": LABELS})
    assert chunked.status_code == 200, chunked.text
    counts = [int(n) for n in chunked.headers["x-gliner-chunks"].split(",")]
    assert counts[0] > 1 and counts[1] == 1 and set(chunked.json()) == {"result"}
    inference = post(stack, "/inference", {"text": LONG_TEXT, "schema": {"entities": LABELS}}).json()
    assert inference["chunks"] == counts[0] and "chunks" not in post(
        stack, "/inference", {"text": SEED_TEXT, "schema": {"entities": LABELS}}).json()
    run = post(stack, "/run", {"input": [{"text": LONG_TEXT, "parameters": {"entity_types": LABELS}},
                                         {"text": SEED_TEXT, "parameters": {"entity_types": LABELS}}]}).json()
    assert run[0]["chunks"] == counts[0] and "chunks" not in run[1]
    typed = post(stack, "/v1/extract", {"text": LONG_TEXT, "schema": {"entities": [{"name": "person"}]}}).json()
    assert typed["chunks"] == counts[0]
    assert post(stack, "/v1/extract", {"text": SEED_TEXT, "schema": {"entities": [{"name": "person"}]}}
                ).json()["chunks"] == 1


def test_native_grpc_reports_chunks_too(small_window_stack):
    from gliner_client import GlinerClient
    from gliner_client import build_schema as proto_schema

    from gliner_client.v1 import gliner_service_pb2

    with GlinerClient(f"127.0.0.1:{small_window_stack.port}", api_key=API_KEY) as client:
        request = gliner_service_pb2.ExtractRequest(text=LONG_TEXT, schema=proto_schema(entities=LABELS))
        response, rpc = client.stub.Extract.with_call(request, metadata=client.metadata, timeout=60)
        assert response.chunks > 1
        assert dict(rpc.initial_metadata())["x-gliner-chunks"] == str(response.chunks)


@pytest.mark.parametrize("path, body, status, code", [
    ("/gliner-2", {"text": "y" * 5001, "labels": ["a"]}, 413, "PAYLOAD_TOO_LARGE"),             # server's limit
    ("/gliner-2", {"text": "y" * 70000, "labels": ["a"]}, 413, "PAYLOAD_TOO_LARGE"),            # Envoy's body limit
    ("/gliner-2", {"text": ["a"] * 65, "labels": ["a"]}, 400, "INVALID_REQUEST"),
    ("/gliner-2", {"text": "a", "labels": [f"l{i}" for i in range(300)]}, 400, "INVALID_REQUEST"),
    ("/inference", {"text": "y" * 5001, "schema": {"entities": ["a"]}}, 413, "PAYLOAD_TOO_LARGE"),
])
def test_limits_through_envoy_have_the_provider_shape(small_window_stack, path, body, status, code):
    response = post(small_window_stack, path, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["detail"]


def test_native_grpc_messages_over_the_limit_are_refused(small_window_stack):
    from gliner_client import GlinerClient, GlinerError
    from gliner_client import build_schema as proto_schema

    with GlinerClient(f"127.0.0.1:{small_window_stack.port}", api_key=API_KEY) as client:
        with pytest.raises(GlinerError) as caught:   # over --max-request-bytes plus the 64 KiB of headroom
            client.extract("z" * 140000, proto_schema(entities=["a"]))
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(GlinerError) as within:    # within it: the server's own text limit, 413
            client.extract("z" * 70000, proto_schema(entities=["a"]))
        assert within.value.code == grpc.StatusCode.OUT_OF_RANGE and "at most 5000" in within.value.message
        assert client.extract(SEED_TEXT, proto_schema(entities=["person"])).chunks == 1  # and it still serves


@pytest.mark.parametrize("padding", [0, 1, 8, 64])
def test_a_body_at_the_byte_limit_is_served_not_refused_as_busy(small_window_stack, padding):
    """A REST body just within --max-request-bytes becomes a gRPC message a few bytes larger: the server takes
    it (Envoy's 413 is the one bound), instead of refusing it as RESOURCE_EXHAUSTED, a 429 that says "retry"."""
    body = json.dumps({"text": SEED_TEXT, "labels": ["person"]}).encode()
    exact = body[:-1] + b" " * (65536 - len(body) - padding) + b"}"
    assert len(exact) == 65536 - padding
    response = requests.post(small_window_stack.base_url + "/gliner-2", data=exact, timeout=60,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    over = requests.post(small_window_stack.base_url + "/gliner-2", data=exact + b" " * (padding + 1), timeout=60,
                         headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert over.status_code == 413 and over.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


DEEP = 20_000


@pytest.mark.parametrize("path, template", [
    ("/gliner-2", '{"text": "x", "labels": %s}'),
    ("/inference", '{"text": "x", "schema": {"entities": %s}}'),
    ("/run", '{"input": %s}'),
    ("/v1/extract", '{"text": "x", "schema": {"entities": %s}}'),
    ("/v1/extract:batch", '{"texts": %s}'),
    ("/inferences/inf_00000000000000000000000000/feedback", '{"verdict": "incorrect", "corrected_output": {"a": %s}}'),
    ("/v1/feedback:export", '{"x": %s}'),
])
def test_a_body_nested_thousands_of_levels_deep_is_a_clear_400(small_window_stack, path, template):
    data = (template % ("[" * DEEP + "]" * DEEP)).encode()
    response = requests.post(small_window_stack.base_url + path, data=data, timeout=60,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 400, (path, response.status_code, response.text[:300])
    body = response.json()
    assert body["error"]["code"] == "INVALID_REQUEST" and body["detail"], body


@pytest.mark.parametrize("path", ["/inferences/%00", "/inferences/a%00b", "/gliner-2%00"])
def test_malformed_paths_get_a_message_saying_what_is_wrong(small_window_stack, path):
    response = requests.get(small_window_stack.base_url + path, headers={"X-API-Key": API_KEY}, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["error"]["code"] and body["detail"] and body["detail"] == body["error"]["message"], body
