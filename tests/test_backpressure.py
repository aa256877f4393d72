"""Backpressure, deadlines and cancellation through the real stack, and Envoy's per-key rate limit.

A "heavy" request (many long texts) keeps the model busy; requests sent
meanwhile queue behind it. The server's Prometheus counters show what happened
to them: refused at once when the queue is full (429 with Retry-After), or
dropped from the queue when their caller's deadline passed or the caller went
away, never run.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import grpc
import pytest
import requests

from conftest import API_KEY, OTHER_KEY, SEED_TEXT, start_stack, stop_stack
from helpers import wait_for

from gliner_server.envoy import free_port

HEADERS = {"X-API-Key": API_KEY}
SENTENCE = "Tim Cook leads Apple in Cupertino and Satya Nadella runs Microsoft from Redmond. "
HEAVY = {"text": [SENTENCE * 20 + str(i) for i in range(64)], "labels": ["person", "company", "city"]}


def stack_with_metrics(checkpoint, cache_dir, run_dir, *flags):
    """A stack (API key required) whose Prometheus metrics the test reads; yields it, then stops it cleanly."""
    metrics = free_port()
    stack = start_stack(checkpoint, cache_dir, run_dir, "--api-key", API_KEY, "--metrics-port", str(metrics), *flags)
    stack.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    yield stack
    assert stop_stack(stack) == 0, stack.log()


@pytest.fixture(scope="module")
def busy_stack(span_checkpoint, cache_dir, work_dir):
    yield from stack_with_metrics(span_checkpoint, cache_dir, work_dir / "busy-stack",
                                  "--max-queued-texts", "4", "--batch-size", "8")


def counter(stack, name: str) -> float:
    text = requests.get(stack.metrics_url, timeout=10).text
    values = [float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values)


class Heavy:
    """One heavy request in a thread: the model is busy until it returns."""

    def __init__(self, stack):
        self.stack, self.response, self.seconds = stack, None, None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        started = time.monotonic()
        self.response = requests.post(self.stack.base_url + "/gliner-2", json=HEAVY, headers=HEADERS, timeout=300)
        self.seconds = time.monotonic() - started

    def __enter__(self):
        self.thread.start()
        assert wait_for(lambda: counter(self.stack, "gliner_running_texts") == len(HEAVY["text"]), 30)
        return self

    def __exit__(self, *exc):
        self.thread.join(300)
        assert self.response is not None and self.response.status_code == 200, self.response


class Filler:
    """While Heavy runs: a request of 4 texts waits in the queue, filling it (--max-queued-texts 4)."""

    def __init__(self, stack):
        self.stack, self.response = stack, None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        self.response = requests.post(self.stack.base_url + "/gliner-2", headers=HEADERS, timeout=300,
                                      json={"text": [SEED_TEXT] * 4, "labels": ["person"]})

    def __enter__(self):
        self.thread.start()
        assert wait_for(lambda: counter(self.stack, "gliner_queued_texts") == 4, 30)
        return self

    def __exit__(self, *exc):
        self.thread.join(300)
        assert self.response is not None and self.response.status_code == 200, self.response


def test_a_full_queue_answers_429_with_retry_after_at_once(busy_stack):
    with Heavy(busy_stack), Filler(busy_stack):
        started = time.monotonic()
        refused = requests.post(busy_stack.base_url + "/gliner-2", json={"text": SEED_TEXT, "labels": ["person"]},
                                headers=HEADERS, timeout=30)
        assert time.monotonic() - started < 2.0  # refused at once, not after waiting
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "RATE_LIMITED" and refused.json()["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert counter(busy_stack, "gliner_batch_rejected_total") >= 1


def test_native_grpc_gets_resource_exhausted_with_retry_info(busy_stack):
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    from gliner_client import GlinerClient, build_schema

    with Heavy(busy_stack), Filler(busy_stack), GlinerClient(f"127.0.0.1:{busy_stack.port}",
                                                             api_key=API_KEY) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.stub.BatchExtract(_batch([SEED_TEXT] * 2, build_schema(entities=["person"])),
                                     metadata=client.metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(caught.value)
        infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        retry = error_details_pb2.RetryInfo()
        assert infos and infos[0].Unpack(retry) and retry.retry_delay.seconds >= 1


def _batch(texts, schema):
    from gliner_client.v1 import gliner_service_pb2

    return gliner_service_pb2.BatchExtractRequest(texts=texts, schema=schema)


def test_a_grpc_deadline_drops_the_queued_work(busy_stack):
    from gliner_client import GlinerClient, build_schema

    dropped = counter(busy_stack, "gliner_batch_dropped_total")
    with Heavy(busy_stack) as heavy, GlinerClient(f"127.0.0.1:{busy_stack.port}", api_key=API_KEY) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.stub.Extract(_extract(SEED_TEXT, build_schema(entities=["person"])),
                                metadata=client.metadata, timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_for(lambda: counter(busy_stack, "gliner_batch_dropped_total") == dropped + 1, 10)
    assert heavy.seconds > 1.0  # the queue really was busy for longer than the deadline


def _extract(text, schema):
    from gliner_client.v1 import gliner_service_pb2

    return gliner_service_pb2.ExtractRequest(text=text, schema=schema)


def test_a_rest_client_that_disconnects_has_its_queued_work_dropped(busy_stack):
    """The client closes its connection while queued: Envoy resets the upstream call, the server drops the job."""
    dropped = counter(busy_stack, "gliner_batch_dropped_total")
    marker = f"disconnected-client-{time.time_ns()}"
    with Heavy(busy_stack):
        body = json.dumps({"text": f"{marker} {SEED_TEXT}", "labels": ["person"]}).encode()
        with socket.create_connection(("127.0.0.1", busy_stack.port), timeout=10) as raw:
            raw.sendall(b"POST /gliner-2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + f"X-API-Key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            assert wait_for(lambda: counter(busy_stack, "gliner_queued_texts") >= 1, 10)
        assert wait_for(lambda: counter(busy_stack, "gliner_batch_dropped_total") == dropped + 1, 10)
    history = requests.get(busy_stack.base_url + "/inferences?limit=1000", headers=HEADERS, timeout=30).json()
    assert not [i for i in history["inferences"] if marker in (i.get("text") or "")]  # never run, never recorded


# --- Envoy's per-API-key rate limit ---------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_stack(span_checkpoint, cache_dir, work_dir):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "limited-stack", "--api-key", API_KEY,
                        "--api-key", OTHER_KEY, *(a for key in RATE_KEYS for a in ("--api-key", key)),
                        "--rate-limit", "2", "--rate-limit-burst", "3")
    yield stack
    assert stop_stack(stack) == 0, stack.log()


# Each test drains buckets of keys of its own: a bucket another test emptied would decide its outcome.
RATE_KEYS = ("rate-rest-key-1", "rate-rest-key-2", "rate-grpc-key-1")


def test_each_api_key_has_its_own_rate_limit(limited_stack):
    body = {"text": SEED_TEXT, "labels": ["person"]}

    def burst(key, n):
        return [requests.post(limited_stack.base_url + "/gliner-2", json=body, headers={"X-API-Key": key},
                              timeout=30) for _ in range(n)]

    first = burst(RATE_KEYS[0], 6)
    assert [r.status_code for r in first[:3]] == [200, 200, 200]
    limited = [r for r in first if r.status_code == 429]
    assert limited, [r.status_code for r in first]
    assert limited[0].json()["error"]["code"] == "RATE_LIMITED" and "API key" in limited[0].json()["detail"]
    assert limited[0].headers["retry-after"] == "1"
    assert burst(RATE_KEYS[1], 1)[0].status_code == 200     # another key has its own bucket
    bearer = requests.post(limited_stack.base_url + "/gliner-2", json=body, timeout=30,
                           headers={"Authorization": f"Bearer {RATE_KEYS[1]}-x"})
    assert bearer.status_code == 401                          # a wrong key is refused by the server, not counted
    time.sleep(1.2)
    assert burst(RATE_KEYS[0], 1)[0].status_code == 200      # refilled


def test_native_grpc_callers_are_limited_with_resource_exhausted(limited_stack):
    from gliner_client import GlinerClient, GlinerError, build_schema

    with GlinerClient(f"127.0.0.1:{limited_stack.port}", api_key=RATE_KEYS[2]) as client:
        codes = []
        for _ in range(8):
            try:
                client.extract(SEED_TEXT, build_schema(entities=["person"]))
                codes.append("OK")
            except GlinerError as error:
                codes.append(error.code.name)
        assert "RESOURCE_EXHAUSTED" in codes and codes[0] == "OK", codes


@pytest.fixture(scope="module")
def narrow_stack(span_checkpoint, cache_dir, work_dir):
    """Nine gRPC threads: one for model calls (the other eight are reserved), a long queue."""
    yield from stack_with_metrics(span_checkpoint, cache_dir, work_dir / "narrow-stack",
                                  "--workers", "9", "--max-queued-texts", "1000")


def test_calls_past_the_admission_limit_are_refused_and_health_stays_up(narrow_stack):
    """The model calls may not take every thread: past the limit a call is refused at once, and health checks,
    listings and the load balancer's view of the server are unaffected."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with Heavy(narrow_stack):
        started = time.monotonic()
        refused = requests.post(narrow_stack.base_url + "/gliner-2", json={"text": SEED_TEXT, "labels": ["person"]},
                                headers=HEADERS, timeout=30)
        assert time.monotonic() - started < 2.0
        assert refused.status_code == 429 and "model calls in flight" in refused.json()["detail"], refused.text
        assert refused.headers["retry-after"] == "1"
        for _ in range(5):  # Envoy keeps routing to it: /healthz and gRPC health through Envoy
            assert requests.get(narrow_stack.base_url + "/healthz", timeout=5).status_code == 200
            with grpc.insecure_channel(f"127.0.0.1:{narrow_stack.port}") as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert status.status == health_pb2.HealthCheckResponse.SERVING
            assert requests.get(narrow_stack.base_url + "/v1/models", headers=HEADERS, timeout=5).status_code == 200
            time.sleep(0.3)
