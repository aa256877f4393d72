"""The Envoy layer against a real Envoy and a fake in-process gRPC servicer.

The fake ``gliner.v1.GlinerService`` echoes the ``POST /gliner-2`` body, and
fails on demand: a JSON body ``{"text": "fail:NOT_FOUND"}`` aborts with that
gRPC status (trailers-only), ``"failmd:..."`` sends headers first, ``"details"``
attaches a ``google.rpc.ErrorInfo``, ``"sleep:S"`` stalls, ``"big:N"`` answers
N bytes. Every check is on the wire: HTTP status, content type, exact body.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import requests

try:
    import gliner_server  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from google.api import httpbody_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gliner_client.v1 import gliner_service_pb2 as pb
from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
from gliner_server.envoy import (
    EnvoyProcess, EnvoySettings, EnvoyStartError, config_dict, descriptor_set, descriptor_set_bytes,
    free_port, http_rules, render_config,
)
from gliner_server.envoy.routes import template_regex
from gliner_server.errors import ErrorKind
from gliner_server.grpc_api.status import http_mapping_by_grpc_code
from helpers import wait_for

SERVICE = "gliner.v1.GlinerService"
NASTY = 'boom "quoted" \\ back\nnewline é 100% ✓ \t\x01'
MAX_REQUEST = 64 * 1024
SECRET = "do-not-log-this-body-4711"


# --------------------------------------------------------------------------- fake upstream


class FakeGliner(pb_grpc.GlinerServiceServicer):
    def __init__(self, name: str = "fake"):
        self.name = name

    def Gliner2(self, request, context):
        try:
            body = json.loads(request.body.data or b"{}")
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON: {error}")
        text = body.get("text") if isinstance(body, dict) else None
        if isinstance(text, str):
            verb, _, arg = text.partition(":")
            if verb == "fail":
                context.abort(grpc.StatusCode[arg], NASTY)
            if verb == "failmd":
                context.send_initial_metadata((("x-fake", "1"),))
                context.abort(grpc.StatusCode[arg], NASTY)
            if verb in ("details", "detailsmd"):
                if verb == "detailsmd":
                    context.send_initial_metadata((("x-fake", "1"),))
                status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad \"text\"")
                status.details.add().Pack(error_details_pb2.ErrorInfo(
                    reason="INVALID_REQUEST", domain="gliner.v1", metadata={"field": "text"}))
                context.abort_with_status(rpc_status.to_status(status))
            if verb == "sleep":
                time.sleep(float(arg))
            if verb == "big":
                return httpbody_pb2.HttpBody(content_type="application/json",
                                             data=json.dumps("x" * int(arg)).encode())
            if verb == "raise":
                raise RuntimeError("kaput")
        if isinstance(text, list):  # the hosted API answers a list of texts with an array
            return httpbody_pb2.HttpBody(content_type="application/json",
                                         data=json.dumps([{"text": t} for t in text]).encode())
        return httpbody_pb2.HttpBody(content_type="application/json", data=request.body.data)

    def Extract(self, request, context):
        if request.text.startswith("big:"):
            return pb.ExtractResponse(model_id="x" * int(request.text[4:]))
        return pb.ExtractResponse(model_id=self.name, latency_ms=1.5)


class FakeServer:
    """grpcio server: GlinerService, grpc.health.v1, reflection v1alpha and v1."""

    def __init__(self, name: str = "fake"):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_GlinerServiceServicer_to_server(FakeGliner(name), self.server)
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [SERVICE, "grpc.health.v1.Health", reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        # grpcio-reflection only ships v1alpha; v1 is wire-identical.
        v1 = reflection.ReflectionServicer(names)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "grpc.reflection.v1.ServerReflection",
            {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                v1.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait()


def start_envoy(run_dir: Path, upstream_ports: list[int], **overrides) -> EnvoyProcess:
    settings = EnvoySettings(**{
        "listen_host": "127.0.0.1", "listen_port": 0, "admin_port": 0,
        "upstreams": [("127.0.0.1", p) for p in upstream_ports], "services": [SERVICE],
        "max_request_bytes": MAX_REQUEST, "health_check_interval_s": 0.2, "health_check_timeout_s": 0.5,
        **overrides,
    })
    return EnvoyProcess(settings, run_dir, descriptor=descriptor_set_bytes([pb]), concurrency=1,
                        file_flush_interval_ms=100).start()


@pytest.fixture(scope="module")
def upstream():
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def envoy(upstream, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("envoy")
    proc = start_envoy(run_dir, [upstream.port], access_log=str(run_dir / "access.log"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def base(envoy) -> str:
    return f"http://127.0.0.1:{envoy.port}"


@pytest.fixture(scope="module")
def channel(envoy):
    with grpc.insecure_channel(f"127.0.0.1:{envoy.port}") as ch:
        yield ch


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None):
    """The provider's error shape, exactly."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["detail"] == body["error"]["message"]
    assert body["detail"].strip()
    if message is not None:
        assert body["detail"] == message
    assert not any(h.startswith("grpc-") for h in response.headers), response.headers
    return body


def gliner2(base: str, body, **kwargs) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{base}/gliner-2", data=data, headers={"content-type": "application/json"},
                         timeout=10, **kwargs)


# --------------------------------------------------------------------------- pure functions


def test_descriptor_set_holds_transitive_imports_in_dependency_order():
    fds = descriptor_set([pb])
    names = [f.name for f in fds.file]
    for needed in ("google/api/http.proto", "google/api/annotations.proto", "google/api/httpbody.proto",
                   "google/protobuf/descriptor.proto", "google/protobuf/any.proto",
                   "gliner/v1/schema.proto", "gliner/v1/results.proto", "gliner/v1/gliner_service.proto",
                   "google/rpc/status.proto", "google/rpc/error_details.proto"):
        assert needed in names
    assert len(names) == len(set(names))
    for index, file in enumerate(fds.file):
        for dep in file.dependency:
            assert names.index(dep) < index, (file.name, dep)
    assert [f.name for f in descriptor_set([pb], with_status_details=False).file][-1] == \
        "gliner/v1/gliner_service.proto"


def test_http_rules_come_from_the_proto():
    rules = http_rules(descriptor_set([pb]), [SERVICE])
    assert ("POST", "/gliner-2") in rules and ("POST", "/v1/extract:batch") in rules
    assert http_rules(descriptor_set([pb]), ["other.Service"]) == []


@pytest.mark.parametrize("template, regex", [
    ("/gliner-2", "/gliner-2"),
    ("/v1/extract:batch", "/v1/extract:batch"),
    ("/v1/inferences/{id}", "/v1/inferences/[^/]+"),
    ("/v1/{name=items/*}:cancel", "/v1/items/[^/]+:cancel"),
    ("/v1/files/{path=**}", "/v1/files/.*"),
    ("/a.b/*", "/a\\.b/[^/]+"),
])
def test_path_template_regex(template, regex):
    assert template_regex(template) == regex


def test_lua_is_rendered_from_the_error_table():
    settings = EnvoySettings(listen_port=1, admin_port=2, upstreams=[("127.0.0.1", 3)], services=[SERVICE])
    config = config_dict(settings, descriptor_set_bytes([pb]))
    assert json.loads(render_config(settings, descriptor_set_bytes([pb]))) == config
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    lua = hcm["http_filters"][0]["typed_config"]["default_source_code"]["inline_string"]
    for grpc_code, (http_status, provider_code) in http_mapping_by_grpc_code().items():
        assert f'[{grpc_code}] = {{{http_status}, "{provider_code}"}},' in lua
    assert len(config["static_resources"]["listeners"]) == 1


# --------------------------------------------------------------------------- REST success


def test_gliner2_returns_the_upstream_json_exactly(base):
    raw = '{"text":"Apple hired Tim","labels":["person","company"],"zeta":1,"alpha":{"b":2,"a":1}}'
    response = gliner2(base, raw)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == raw  # byte for byte: key order and unknown fields kept
    assert not any(h.startswith("grpc-") for h in response.headers)


def test_gliner2_top_level_array(base):
    response = gliner2(base, {"text": ["a", "b"]})
    assert response.status_code == 200
    assert response.json() == [{"text": "a"}, {"text": "b"}]


def test_typed_endpoint_prints_proto_names_and_defaults(base):
    response = requests.post(f"{base}/v1/extract", json={"text": "x", "unknown_field": 1}, timeout=10)
    assert response.status_code == 200, response.text  # unknown body fields are dropped
    # Fields with presence (messages) stay out when unset; scalars are printed.
    assert response.json() == {"model_id": "fake", "latency_ms": 1.5, "inference_id": "", "chunks": 0,
                               "queue_ms": 0}


def test_response_larger_than_a_connection_buffer(base):
    response = gliner2(base, {"text": "big:3000000"})
    assert response.status_code == 200
    assert len(response.json()) == 3_000_000
    typed = requests.post(f"{base}/v1/extract", json={"text": "big:3000000"}, timeout=10)
    assert typed.status_code == 200  # buffered whole over HTTP/1.1: max_response_bytes
    assert len(typed.json()["model_id"]) == 3_000_000


# --------------------------------------------------------------------------- upstream gRPC errors


def _expected(code: grpc.StatusCode) -> tuple[int, str]:
    fallback = (ErrorKind.SERVER_ERROR.http_status, ErrorKind.SERVER_ERROR.provider_code)
    return http_mapping_by_grpc_code().get(code.value[0], fallback)


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK],
                         ids=lambda c: c.name)
def test_grpc_status_maps_through_the_error_table(base, code):
    status, provider_code = _expected(code)
    assert_error(gliner2(base, {"text": f"fail:{code.name}"}), status, provider_code, NASTY)


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED],
                         ids=lambda c: c.name)
def test_grpc_error_after_response_headers(base, code):
    status, provider_code = _expected(code)
    assert_error(gliner2(base, {"text": f"failmd:{code.name}"}), status, provider_code, NASTY)


def test_grpc_error_with_details_over_rest(base):
    for verb in ("details", "detailsmd"):
        assert_error(gliner2(base, {"text": verb}), 400, "INVALID_REQUEST", 'bad "text"')


def test_servicer_exception_is_a_server_error(base):
    assert_error(gliner2(base, {"text": "raise"}), 500, "SERVER_ERROR")


def test_invalid_json_rejected_by_server_for_raw_body_endpoint(base):
    body = assert_error(gliner2(base, '{"text": '), 400, "INVALID_REQUEST")
    assert "invalid JSON" in body["detail"]


# --------------------------------------------------------------------------- Envoy's own errors


@pytest.mark.parametrize("payload, needle", [
    ('{"text": ', ""),
    ('not json', ""),
    ('{"text": "x", "threshold": "high"}', "threshold"),
    ('{"text": 5}', "text"),
    ('{"schema": []}', "not repeating"),
    ('[1, 2]', ""),
])
def test_transcoder_rejects_malformed_or_mistyped_json(base, payload, needle):
    response = requests.post(f"{base}/v1/extract", data=payload,
                             headers={"content-type": "application/json"}, timeout=10)
    body = assert_error(response, 400, "INVALID_REQUEST")
    assert needle in body["detail"]


def test_unknown_query_parameter_is_rejected(base):
    response = requests.post(f"{base}/v1/extract?bogus=1", json={"text": "x"}, timeout=10)
    assert "bogus" in assert_error(response, 400, "INVALID_REQUEST")["detail"]


@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("POST", "/v2/extract"), ("GET", "/")])
def test_unknown_route_is_404(base, method, path):
    assert_error(requests.request(method, base + path, timeout=10), 404, "NOT_FOUND")


@pytest.mark.parametrize("method, path", [("GET", "/gliner-2"), ("PUT", "/v1/extract"),
                                          ("DELETE", "/v1/extract:batch")])
def test_wrong_method_on_known_path_is_405(base, method, path):
    response = requests.request(method, base + path, timeout=10)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


def test_oversized_body_is_413(base):
    big = json.dumps({"text": "x" * (MAX_REQUEST + 10)})
    assert_error(gliner2(base, big), 413, "PAYLOAD_TOO_LARGE")
    chunks = (big[i:i + 4096].encode() for i in range(0, len(big), 4096))  # no content-length
    assert_error(requests.post(f"{base}/gliner-2", data=chunks, timeout=10), 413, "PAYLOAD_TOO_LARGE")


def test_malformed_http_is_json_too(envoy):
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head
    assert json.loads(body)["error"]["code"] == "INVALID_REQUEST"


def test_healthz_is_answered_by_envoy(base):
    response = requests.get(f"{base}/healthz", timeout=10)
    assert response.status_code == 200


def test_access_log_has_no_bodies(base, envoy):
    gliner2(base, {"text": SECRET})
    log = Path(envoy.settings.access_log)
    # Flushed every 100 ms (file_flush_interval_ms).
    assert wait_for(lambda: log.exists() and "POST /gliner-2" in log.read_text())
    assert SECRET not in log.read_text()


# --------------------------------------------------------------------------- native gRPC through Envoy


def test_native_grpc_calls(channel):
    stub = pb_grpc.GlinerServiceStub(channel)
    assert stub.Extract(pb.ExtractRequest(text="x"), timeout=5).model_id == "fake"
    reply = stub.Gliner2(pb.Gliner2Request(body=httpbody_pb2.HttpBody(
        content_type="application/json", data=b'{"text":"hi","b":1,"a":2}')), timeout=5)
    assert reply.data == b'{"text":"hi","b":1,"a":2}'
    check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_streams_through_envoy(channel, version):
    """Interactive bidi stream: the second request is only sent once the first
    answer arrived, which would deadlock if Envoy buffered gRPC requests."""
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    answered = threading.Event()

    def outgoing():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        assert answered.wait(5)
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)

    responses = call(outgoing(), timeout=10)
    listed = next(responses)
    answered.set()
    assert SERVICE in [s.name for s in listed.list_services_response.service]
    assert next(responses).file_descriptor_response.file_descriptor_proto
    assert reflection_pb2_grpc  # the generated stub module is importable too


def test_native_grpc_errors_pass_untouched(channel):
    stub = pb_grpc.GlinerServiceStub(channel)
    for verb in ("fail", "failmd"):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Gliner2(pb.Gliner2Request(body=httpbody_pb2.HttpBody(
                data=json.dumps({"text": f"{verb}:NOT_FOUND"}).encode())), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == NASTY


def test_native_grpc_error_details_arrive_intact(channel):
    stub = pb_grpc.GlinerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Gliner2(pb.Gliner2Request(body=httpbody_pb2.HttpBody(data=b'{"text":"details"}')), timeout=5)
    status = rpc_status.from_call(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status.message == 'bad "text"'
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("INVALID_REQUEST", "gliner.v1", {"field": "text"})


# --------------------------------------------------------------------------- upstream trouble


def test_upstream_down_is_a_fast_503(tmp_path):
    proc = start_envoy(tmp_path, [free_port()])
    try:
        base = f"http://127.0.0.1:{proc.port}"
        started = time.monotonic()
        assert_error(gliner2(base, {"text": "x"}), 503, "UNAVAILABLE")
        assert_error(requests.post(f"{base}/v1/extract", json={}, timeout=10), 503, "UNAVAILABLE")
        assert_error(requests.get(f"{base}/healthz", timeout=10), 503, "UNAVAILABLE")
        assert time.monotonic() - started < 2
        with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.GlinerServiceStub(ch).Extract(pb.ExtractRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not caught.value.details().startswith("{")  # gRPC local replies are not JSON-shaped
    finally:
        proc.stop()


def test_health_checks_take_a_not_serving_replica_out(tmp_path):
    server = FakeServer()
    proc = start_envoy(tmp_path, [server.port], unhealthy_threshold=1)
    try:
        base = f"http://127.0.0.1:{proc.port}"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert wait_for(lambda: requests.get(f"{base}/healthz", timeout=5).status_code == 503)
        assert_error(gliner2(base, {"text": "x"}), 503, "UNAVAILABLE")
        server.health.set("", health_pb2.HealthCheckResponse.SERVING)
        assert wait_for(lambda: requests.get(f"{base}/healthz", timeout=5).status_code == 200)
        # Workers see the new host state a moment after /healthz does.
        assert wait_for(lambda: gliner2(base, {"text": "x"}).status_code == 200)
    finally:
        proc.stop()
        server.stop()


def test_replicas_share_load_and_survive_one_going_away(tmp_path):
    first, second = FakeServer("first"), FakeServer("second")
    proc = start_envoy(tmp_path, [first.port, second.port])
    try:
        url = f"http://127.0.0.1:{proc.port}/v1/extract"
        seen = {requests.post(url, json={}, timeout=5).json()["model_id"] for _ in range(20)}
        assert seen == {"first", "second"}
        first.stop()
        for _ in range(10):  # connect failures are retried on the other replica
            response = requests.post(url, json={}, timeout=5)
            assert response.status_code == 200, response.text
            assert response.json()["model_id"] == "second"
    finally:
        proc.stop()
        second.stop()


def test_route_timeout_is_a_504(tmp_path, upstream):
    proc = start_envoy(tmp_path, [upstream.port], route_timeout_s=0.3)
    try:
        response = gliner2(f"http://127.0.0.1:{proc.port}", {"text": "sleep:1"})
        assert_error(response, 504, "TIMEOUT")
    finally:
        proc.stop()


def test_response_over_the_limit_is_a_shaped_500(tmp_path, upstream):
    """The transcoder refuses a big typed response while *encoding*: a local
    reply that skips the Lua filter, shaped by local_reply_config alone.
    (HttpBody answers, POST /gliner-2, are passed through unbuffered.)"""
    proc = start_envoy(tmp_path, [upstream.port], max_response_bytes=1000)
    try:
        url = f"http://127.0.0.1:{proc.port}/v1/extract"
        assert_error(requests.post(url, json={"text": "big:5000"}, timeout=10), 500, "SERVER_ERROR")
        assert gliner2(f"http://127.0.0.1:{proc.port}", {"text": "big:5000"}).status_code == 200
    finally:
        proc.stop()


# --------------------------------------------------------------------------- the process wrapper


def test_start_failure_raises_with_the_log(tmp_path, upstream):
    settings = EnvoySettings(listen_port=0, admin_port=0, upstreams=[("127.0.0.1", upstream.port)],
                             services=["gliner.v1.NoSuchService"])
    proc = EnvoyProcess(settings, tmp_path, descriptor=descriptor_set_bytes([pb]))
    with pytest.raises(EnvoyStartError, match="NoSuchService"):
        proc.start()
    assert not proc.is_running()


def test_stop_terminates_envoy_and_frees_the_port(tmp_path, upstream):
    assert start_envoy(tmp_path / "a", [upstream.port]).stop() == 0
    port = free_port()
    proc = EnvoyProcess(EnvoySettings(listen_host="127.0.0.1", listen_port=port, admin_port=0,
                                      upstreams=[("127.0.0.1", upstream.port)], services=[SERVICE]),
                        tmp_path / "b", descriptor=descriptor_set_bytes([pb]), concurrency=1)
    with proc:
        assert proc.port == port and proc.is_running()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert not proc.is_running()
    with socket.socket() as s:  # the listener is gone
        s.bind(("127.0.0.1", port))


def _process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_envoy_dies_with_its_parent(tmp_path, upstream):
    script = textwrap.dedent(f"""
        import sys, time
        from gliner_client.v1 import gliner_service_pb2 as pb
        from gliner_server.envoy import EnvoyProcess, EnvoySettings, descriptor_set_bytes
        settings = EnvoySettings(listen_host="127.0.0.1", listen_port=0, admin_port=0,
                                 upstreams=[("127.0.0.1", {upstream.port})], services=["{SERVICE}"])
        proc = EnvoyProcess(settings, {str(tmp_path)!r}, descriptor=descriptor_set_bytes([pb]), concurrency=1)
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        envoy_pid = int(parent.stdout.readline())
        assert _process_state(envoy_pid) not in (None, "Z")
        parent.kill()
        parent.wait()
        assert wait_for(lambda: _process_state(envoy_pid) in (None, "Z"), timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_replica_that_turns_serving_is_seen_healthy_at_once(tmp_path):
    """gliner2-serve starts Envoy while the model loads, NOT_SERVING, and waits for this before SERVING."""
    server = FakeServer()
    server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    proc = start_envoy(tmp_path, [server.port], health_check_interval_s=5.0, unhealthy_check_interval_s=0.1)
    try:
        base = f"http://127.0.0.1:{proc.port}"
        assert proc.healthy_upstreams() == 0
        assert not proc.wait_for_healthy_upstream(timeout_s=0.5)
        assert_error(gliner2(base, {"text": "x"}), 503, "UNAVAILABLE")  # while loading: a shaped 503
        server.health.set("", health_pb2.HealthCheckResponse.SERVING)
        began = time.monotonic()
        assert proc.wait_for_healthy_upstream(timeout_s=5.0)
        assert time.monotonic() - began < 2.0  # the unhealthy interval, not the 5 s healthy one
        assert proc.healthy_upstreams() == 1
        assert wait_for(lambda: gliner2(base, {"text": "x"}).status_code == 200)
    finally:
        proc.stop()
        server.stop()


def test_headers_that_cannot_be_grpc_metadata_are_dropped_not_a_server_error(base):
    """HTTP allows header names such as ``a$%b`` and non-ASCII values; gRPC metadata does not (its core fails the
    call), so Envoy drops them before transcoding."""
    body = {"text": "hello"}
    for headers in ({"pc$%4slly_x": "v", "x-fine": "yes"}, {"x-ok": "caf\u00e9".encode("latin-1")}):
        response = requests.post(f"{base}/gliner-2", data=json.dumps(body), timeout=10,
                                 headers={"content-type": "application/json", **headers})
        assert response.status_code == 200, (headers, response.text)
        assert response.json() == body
    # a name HTTP itself forbids is the codec's 400, in the provider shape
    response = requests.post(f"{base}/gliner-2", data=json.dumps(body), timeout=10,
                             headers={"content-type": "application/json", "a;b": "1"})
    assert_error(response, 400, "INVALID_REQUEST")
