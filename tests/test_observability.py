"""What operators see and what a retried call does: request ids, one log line per call, Envoy's access log,
histograms and refusals in the metrics, ``/run`` as one batched call, and idempotent retries in the history."""
from __future__ import annotations

import re
import time

import pytest
import requests

from conftest import API_KEY, SEED_TEXT
from helpers import wait_for
from test_backpressure import counter, stack_with_metrics

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def observed(span_checkpoint, cache_dir, work_dir):
    yield from stack_with_metrics(span_checkpoint, cache_dir, work_dir / "observed-stack")


def metric_lines(stack, name: str) -> list[str]:
    text = requests.get(stack.metrics_url, timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name)]


def test_the_request_id_is_echoed_logged_once_and_recorded(observed):
    request_id = f"trace-{time.time_ns()}"
    text = f"Qwzx{time.time_ns()} works for Apple."
    response = requests.post(observed.base_url + "/inference", timeout=30,
                             headers={**HEADERS, "X-Request-Id": request_id},
                             json={"text": text, "schema": {"entities": ["company"]}})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    inference = requests.get(f"{observed.base_url}/inferences/{response.json()['id']}", headers=HEADERS,
                             timeout=30).json()
    assert inference["request_id"] == request_id

    # one line from the server, one from Envoy's access log; the text in neither
    assert wait_for(lambda: observed.log_path.read_text().count(f"request_id={request_id}") == 2, 10), \
        observed.log()
    lines = [line for line in observed.log_path.read_text().splitlines() if f"request_id={request_id}" in line]
    server = next(line for line in lines if "gliner2.access" in line)
    fields = dict(re.findall(r"(\w+)=(\S+)", server))
    assert fields["route"] == "/inference" and fields["method"] == "Inference" and fields["status"] == "OK"
    assert fields["http"] == "200" and fields["model"] != "-" and fields["client"].startswith("key-")
    assert fields["texts"] == "1" and int(fields["tokens"]) > len(text)  # the text and the schema prompt
    assert float(fields["latency_ms"]) >= float(fields["model_ms"]) > 0 and float(fields["queue_ms"]) >= 0
    envoy = next(line for line in lines if "envoy access" in line)
    assert '"POST /inference HTTP/1.1" status=200' in envoy and "attempts=1" in envoy
    assert text.split()[0] not in observed.log_path.read_text()


def test_errors_carry_the_request_id_too(observed):
    generated = requests.post(observed.base_url + "/gliner-2", json={"labels": ["person"]}, headers=HEADERS,
                              timeout=30)
    assert generated.status_code == 400 and re.fullmatch(r"[0-9a-f-]{32,36}", generated.headers["x-request-id"])
    assert wait_for(lambda: f"request_id={generated.headers['x-request-id']} route=/gliner-2 method=Gliner2 "
                            in observed.log_path.read_text(), 10)
    line = next(line for line in observed.log_path.read_text().splitlines()
                if f"request_id={generated.headers['x-request-id']} route=" in line)
    assert "status=INVALID_ARGUMENT http=400" in line


def test_native_grpc_callers_get_their_request_id_back(observed):
    import grpc
    from gliner_client import build_schema
    from gliner_client.v1 import gliner_service_pb2, gliner_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{observed.port}") as channel:
        stub = gliner_service_pb2_grpc.GlinerServiceStub(channel)
        _, call = stub.Extract.with_call(
            gliner_service_pb2.ExtractRequest(text=SEED_TEXT, schema=build_schema(entities=["person"])),
            metadata=(("x-api-key", API_KEY), ("x-request-id", "native-1")), timeout=30)
    assert ("x-request-id", "native-1") in call.initial_metadata()


def test_metrics_have_histograms_per_model_and_refusals_by_reason(observed):
    requests.post(observed.base_url + "/gliner-2", json={"text": SEED_TEXT, "labels": ["person"]}, headers=HEADERS,
                  timeout=30)
    for name in ("gliner_queue_wait_seconds_bucket", "gliner_pass_seconds_bucket", "gliner_pass_texts_bucket",
                 "gliner_history_commit_seconds_bucket", "gliner_model_load_seconds_bucket",
                 "gliner_request_seconds_bucket"):
        assert metric_lines(observed, name), name
    assert any('outcome="ok"' in line for line in metric_lines(observed, "gliner_model_load_seconds_count"))
    assert counter(observed, "gliner_history_commit_seconds_count") >= 1
    assert metric_lines(observed, "gliner_model_loaded")[0].endswith(" 1.0")
    assert metric_lines(observed, "gliner_serving")[0].endswith(" 1.0")


def test_run_sends_its_inputs_to_the_model_together_and_records_them_in_one_commit(observed):
    inputs = [{"text": f"Tim Cook number {i} leads Apple in Cupertino.",
               "parameters": {"entity_types": ["person", "company"], "threshold": 0.3 if i % 2 else 0.5}}
              for i in range(16)]
    inputs[5] = {"parameters": {"entity_types": ["person"]}}                       # no text
    inputs[9] = {"text": "x", "parameters": {"entity_types": 5}}                   # bad parameters
    passes, commits = counter(observed, "gliner_batch_passes_total"), \
        counter(observed, "gliner_history_commit_seconds_count")
    response = requests.post(observed.base_url + "/run", json={"input": inputs}, headers=HEADERS, timeout=60)
    assert response.status_code == 200
    items = response.json()
    assert [item["status"] for item in items] == ["error" if i in (5, 9) else "success" for i in range(16)]
    assert items[5]["message"] == "Missing required field: text" and items[9]["output"] is None
    assert all(item["input"] == inputs[i].get("text") for i, item in enumerate(items))
    # two thresholds: two passes at most (one per set of options), not fourteen; one commit for all
    assert counter(observed, "gliner_batch_passes_total") - passes <= 2
    assert counter(observed, "gliner_history_commit_seconds_count") - commits == 1
    ids = [item["inference_id"] for item in items if item["status"] == "success"]
    assert len(set(ids)) == 14
    assert all(item["latency_ms"] > 0 and item["queue_ms"] >= 0 for item in items if item["status"] == "success")


def test_a_retried_call_is_recorded_once(observed):
    """The same call twice under one request id (as Envoy or a client retries it) is one record; a different
    call that reuses the id is a record of its own."""
    request_id = f"retry-{time.time_ns()}"
    body = {"text": f"Satya Nadella {time.time_ns()} runs Microsoft.", "schema": {"entities": ["person"]}}
    headers = {**HEADERS, "X-Request-Id": request_id}
    first = requests.post(observed.base_url + "/inference", json=body, headers=headers, timeout=30).json()
    again = requests.post(observed.base_url + "/inference", json=body, headers=headers, timeout=30).json()
    other = requests.post(observed.base_url + "/inference", json={**body, "text": body["text"] + " Again."},
                          headers=headers, timeout=30).json()
    assert first["id"] == again["id"] and first["result"] == again["result"] and other["id"] != first["id"]
    listed = requests.get(observed.base_url + "/inferences?limit=1000", headers=HEADERS, timeout=30).json()
    mine = [i for i in listed["inferences"] if i["request_id"] == request_id]
    assert sorted(i["id"] for i in mine) == sorted({first["id"], other["id"]})
