"""POST /gliner-2 through the real Envoy in front of the real server."""
from __future__ import annotations

import pytest
import requests

from conftest import API_KEY, SEED_TEXT
from helpers import SCORE_TOLERANCE, jsonable

SEED_ENTITIES = {"text": SEED_TEXT, "labels": ["company", "person", "product", "location"]}
SEED_CLASSIFICATION = {"text": "This laptop has great performance but poor battery life.",
                       "labels": {"sentiment": ["positive", "neutral", "negative"]}}
SEED_JSON = {"task": "extract_json", "text": "iPhone 15 Pro Max with 256GB storage priced at $1199.",
             "schema": {"product": ["name::str::Product name", "storage::str::Storage capacity",
                                    "price::str::Price with currency"]}}


def post(stack, body=None, *, key=API_KEY, path="/gliner-2", data=None, method="POST"):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    return requests.request(method, stack.base_url + path, json=body if data is None else None,
                            data=data, headers=headers, timeout=30)


def same_json(actual, expected):
    """JSON equality (object key order is not significant), scores within tolerance."""
    actual, expected = jsonable(actual), jsonable(expected)
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{actual} != {expected}"
        for k in expected:
            same_json(actual[k], expected[k])
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{actual} != {expected}"
        for a, e in zip(actual, expected):
            same_json(a, e)
    elif isinstance(expected, float):
        assert abs(actual - expected) <= SCORE_TOLERANCE, f"{actual} != {expected}"
    else:
        assert actual == expected, f"{actual!r} != {expected!r}"


def test_seed_entities(stack, reference):
    response = post(stack, SEED_ENTITIES)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"entities"}
    assert set(body["entities"]) == set(SEED_ENTITIES["labels"])
    assert all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in body["entities"].values())
    same_json(body, reference.extract_entities(SEED_TEXT, SEED_ENTITIES["labels"]))


def test_seed_classification(stack, reference):
    body = post(stack, SEED_CLASSIFICATION).json()
    assert set(body) == {"sentiment"} and body["sentiment"] in ("positive", "neutral", "negative")
    same_json(body, reference.classify_text(SEED_CLASSIFICATION["text"], SEED_CLASSIFICATION["labels"]))


def test_seed_extract_json(stack, reference):
    body = post(stack, SEED_JSON).json()
    assert set(body) == {"product"} and isinstance(body["product"], list)
    for record in body["product"]:
        assert set(record) == {"name", "storage", "price"}
    same_json(body, reference.extract_json(SEED_JSON["text"], SEED_JSON["schema"]))


def test_threshold_defaults_to_half(stack):
    labels = SEED_ENTITIES["labels"]
    default = post(stack, {"text": SEED_TEXT, "labels": labels}).json()
    assert default == post(stack, {"text": SEED_TEXT, "labels": labels, "threshold": 0.5}).json()
    assert default != post(stack, {"text": SEED_TEXT, "labels": labels, "threshold": 0.3}).json()


def test_list_of_texts_returns_list(stack, reference):
    texts = [SEED_TEXT, SEED_CLASSIFICATION["text"]]
    body = post(stack, {"task": "extract_entities", "text": texts, "schema": ["company", "person"]}).json()
    assert list(body) == ["result"] and len(body["result"]) == 2
    same_json(body["result"], reference.batch_extract_entities(texts, ["company", "person"]))


def test_unknown_body_fields_are_ignored(stack):
    assert post(stack, {**SEED_ENTITIES, "client_version": "1.2"}).status_code == 200


def _error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["detail"] == body["error"]["message"] and body["detail"]
    return body["detail"]


def test_missing_text_is_the_documented_error(stack):
    response = post(stack, {"labels": ["company"]})
    assert response.json()["error"] == {"code": "INVALID_REQUEST", "message": "Missing required field: text"}
    _error(response, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("body, fragment", [
    ({"text": SEED_TEXT}, "Missing required field: labels"),
    ({"text": "", "labels": ["a"]}, "must not be empty"),
    ({"text": 7, "labels": ["a"]}, "text must be"),
    ({"text": [SEED_TEXT, 3], "labels": ["a"]}, "text must be"),
    ({"text": SEED_TEXT, "labels": "company"}, "labels"),
    ({"text": SEED_TEXT, "labels": [1, 2]}, "labels"),
    ({"text": SEED_TEXT, "labels": []}, "schema"),
    ({"text": SEED_TEXT, "labels": ["a"], "threshold": 1.5}, "threshold"),
    ({"text": SEED_TEXT, "labels": ["a"], "threshold": "high"}, "threshold"),
    ({"text": SEED_TEXT, "labels": {"sentiment": ["only-one"]}}, "labels"),
    ({"text": SEED_TEXT, "labels": {"sentiment": "pos"}}, "labels"),
    ({"task": "summarise", "text": SEED_TEXT, "labels": ["a"]}, "Unknown task"),
    ({"task": "extract_json", "text": SEED_TEXT}, "Missing required field: schema"),
    ({"task": "extract_json", "text": SEED_TEXT, "schema": {"product": "name"}}, "fields"),
    ({"task": "extract_json", "text": SEED_TEXT, "schema": {"product": [{"name": "x", "dtype": "int"}]}}, "dtype"),
    ({"task": "schema", "text": SEED_TEXT, "schema": {"entities": ["a"], "colour": 1}}, "colour"),
    ({"task": "schema", "text": SEED_TEXT, "schema": {}}, "schema is empty"),
    ({"text": SEED_TEXT, "labels": ["a"], "include_confidence": "yes"}, "include_confidence"),
])
def test_bad_bodies_are_400(stack, body, fragment):
    detail = _error(post(stack, body), 400, "INVALID_REQUEST")
    assert fragment.lower() in detail.lower()


def test_malformed_json_is_400(stack):
    _error(post(stack, data=b'{"text": "x", "labels": '), 400, "INVALID_REQUEST")
    _error(post(stack, data=b"[1, 2]"), 400, "INVALID_REQUEST")
    _error(post(stack, data=b"\xff\xfe"), 400, "INVALID_REQUEST")


def test_authentication(stack):
    _error(post(stack, SEED_ENTITIES, key=None), 401, "UNAUTHORIZED")
    _error(post(stack, SEED_ENTITIES, key="wrong"), 401, "UNAUTHORIZED")
    response = requests.post(stack.base_url + "/gliner-2", json=SEED_ENTITIES,
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert response.status_code == 200


def test_unknown_route_and_wrong_method(stack):
    _error(post(stack, {}, path="/gliner-3"), 404, "NOT_FOUND")
    _error(post(stack, None, method="GET"), 405, "METHOD_NOT_ALLOWED")
    _error(post(stack, None, method="PUT", data=b"{}"), 405, "METHOD_NOT_ALLOWED")


def test_oversized_body_is_413(stack):
    _error(post(stack, {"text": "x" * (2 << 20), "labels": ["a"]}), 413, "PAYLOAD_TOO_LARGE")


def test_healthz(stack):
    assert requests.get(stack.base_url + "/healthz", timeout=5).status_code == 200


def test_typed_rest_route(stack):
    response = post(stack, {"text": SEED_TEXT, "schema": {"entities": [{"name": "person"}]}}, path="/v1/extract")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"result", "model_id", "latency_ms", "queue_ms", "inference_id", "chunks"}
    assert body["chunks"] == 1 and body["latency_ms"] > 0 and body["queue_ms"] >= 0
    assert body["inference_id"].startswith("inf_")
    for mention in body["result"]["entities"]:
        assert SEED_TEXT[mention["start"]:mention["end"]] == mention["text"] and mention["label"] == "person"
