"""``gliner2-serve --log-format json``: every line on the command's output is one JSON object; the request line
carries the per-request fields and never the text."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests

from conftest import start_stack, stop_stack
from gliner_client import build_schema
from gliner_client.v1 import gliner_service_pb2 as pb
from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
from gliner_server.envoy import free_port
from gliner_server.logs import JsonLines

KEY = "json-logs-key-0123456789"
SECRET_TEXT = "Zebulon Quartermaine visited Xanadu Holdings in Ulaanbaatar."   # must never reach the log
REQUEST_FIELDS = {"request_id", "route", "method", "model", "client", "status", "http_status", "latency_ms",
                  "queue_ms", "model_ms", "texts", "tokens"}


def test_a_record_becomes_one_json_line_with_its_request_fields():
    formatter = JsonLines(replica="2")
    record = logging.LogRecord("gliner2.access", logging.INFO, __file__, 1, 'said "%s"\nand more', ("hi",), None)
    record.request = {"request_id": "r-1", "latency_ms": 1.5, "level": "overridden?"}
    line = formatter.format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == 'said "hi"\nand more' and parsed["level"] == "INFO"
    assert parsed["request_id"] == "r-1" and parsed["latency_ms"] == 1.5 and parsed["replica"] == "2"
    assert parsed["logger"] == "gliner2.access" and parsed["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(failed))["error"]


@pytest.fixture(scope="module")
def json_stack(span_checkpoint, work_dir):
    # A converted bundle, so that the server's output is its own (a first-use conversion relays its child's
    # lines through the log too, but takes a minute).
    bundle = work_dir / "json-logs-bundle"
    if not (bundle / "manifest.json").is_file():
        done = subprocess.run([str(Path(sys.executable).parent / "gliner2-convert"), str(span_checkpoint),
                               str(bundle)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    grpc_port = free_port()
    stack = start_stack(bundle, work_dir / "json-logs-cache", work_dir / "json-logs-stack", "--api-key", KEY,
                        "--grpc-port", str(grpc_port), "--log-format", "json", "--no-train-worker")
    stack.grpc_address = f"127.0.0.1:{grpc_port}"
    yield stack
    assert stop_stack(stack) == 0, stack.log_path.read_text()[-3000:]


def lines(stack) -> list[dict]:
    text = stack.log_path.read_text()
    parsed = []
    for raw in text.splitlines():
        if raw.strip():
            try:
                parsed.append(json.loads(raw))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON line: {raw!r}") from None
    return parsed


def test_every_line_is_json_and_requests_are_logged_with_their_fields(json_stack):
    rest = requests.post(json_stack.base_url + "/gliner-2", json={"text": SECRET_TEXT, "labels": ["person"]},
                         headers={"X-API-Key": KEY, "X-Request-Id": "json-rest-1"}, timeout=60)
    assert rest.status_code == 200, rest.text
    refused = requests.post(json_stack.base_url + "/gliner-2", json={"text": SECRET_TEXT, "labels": ["person"]},
                            headers={"X-API-Key": "wrong-key", "X-Request-Id": "json-rest-401"}, timeout=60)
    assert refused.status_code == 401
    with grpc.insecure_channel(json_stack.grpc_address) as channel:
        pb_grpc.GlinerServiceStub(channel).Extract(
            pb.ExtractRequest(text=SECRET_TEXT, schema=build_schema(entities=["person", "place"])),
            metadata=(("x-api-key", KEY), ("x-request-id", "json-grpc-1")), timeout=60)
    deadline = time.monotonic() + 10   # Envoy flushes its access log within a second
    while True:
        logged = lines(json_stack)
        flushed = {line.get("request_id") for line in logged if line.get("logger") == "envoy.access"}
        if {"json-rest-1", "json-rest-401"} <= flushed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert SECRET_TEXT.split()[0] not in json_stack.log_path.read_text()
    assert KEY not in json_stack.log_path.read_text()
    assert any(line["logger"] == "gliner2-serve" and line["message"].startswith("gliner2-serve: SERVING ")
               for line in logged)
    for line in logged:
        assert {"time", "level", "logger", "message"} <= set(line), line

    served = {line["request_id"]: line for line in logged if line["logger"] == "gliner2.access"}
    rest_line, grpc_line = served["json-rest-1"], served["json-grpc-1"]
    assert REQUEST_FIELDS <= set(rest_line) and REQUEST_FIELDS <= set(grpc_line)
    assert rest_line["route"] == "/gliner-2" and rest_line["status"] == "OK" and rest_line["http_status"] == 200
    assert grpc_line["route"] == "grpc:Extract" and grpc_line["texts"] == 1 and grpc_line["tokens"] > 0
    assert isinstance(grpc_line["latency_ms"], float) and grpc_line["model_ms"] > 0
    assert grpc_line["model"] != "-" and grpc_line["client"].startswith("key-")

    envoy = {line["request_id"]: line for line in logged if line["logger"] == "envoy.access"}
    assert envoy["json-rest-1"]["http_status"] == 200 and envoy["json-rest-1"]["route"] == "/gliner-2"
    assert envoy["json-rest-401"]["http_status"] == 401
    assert isinstance(envoy["json-rest-1"]["latency_ms"], (int, float))


def test_a_start_up_failure_is_told_as_json_too(tmp_path):
    """What ends the command (here a model directory that does not exist) comes as a JSON line, level ERROR."""
    done = subprocess.run([sys.executable, "-m", "gliner_server.cli", "--model", str(tmp_path / "nope"),
                           "--cache-dir", str(tmp_path), "--log-format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    parsed = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    last = parsed[-1]
    assert last["level"] == "ERROR" and last["logger"] == "gliner2-serve"
    assert last["message"].startswith("gliner2-serve: No checkpoint directory")
