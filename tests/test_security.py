"""Security: a key on every route and RPC (health and the API description stay open), nothing secret in the
logs, and TLS on Envoy's listener with a certificate made here."""
from __future__ import annotations

import datetime
import ipaddress
import time

import grpc
import pytest
import requests

from helpers import wait_for
from conftest import API_KEY, SEED_TEXT, start_stack, stop_stack

from gliner_server.grpc_api.server import PROTO_MODULES, SERVICE_NAMES
from gliner_server.openapi import service_document


def _operations():
    for path, methods in service_document()["paths"].items():
        for method in methods:
            yield method.upper(), path.replace("{id}", "inf_00000000000000000000000000")


@pytest.mark.parametrize("method, path", list(_operations()))
def test_every_rest_route_needs_a_key(stack, method, path):
    for headers in ({}, {"X-API-Key": "wrong-key"}, {"Authorization": "Bearer wrong-key"}):
        response = requests.request(method, stack.base_url + path, headers=headers, timeout=30,
                                    **({"json": {}} if method != "GET" else {}))
        assert response.status_code == 401, (method, path, headers, response.text)
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_health_and_the_api_description_stay_open(stack):
    assert requests.get(stack.base_url + "/healthz", timeout=10).status_code == 200
    described = requests.get(stack.base_url + "/openapi.json", timeout=10)
    assert described.status_code == 200 and described.json() == service_document()


def test_every_native_rpc_needs_a_key(stack):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as channel:
        for module in PROTO_MODULES:
            for service in module.DESCRIPTOR.services_by_name.values():
                if service.full_name not in SERVICE_NAMES:
                    continue
                for method in service.methods:
                    call = channel.unary_unary(f"/{service.full_name}/{method.name}")
                    with pytest.raises(grpc.RpcError) as caught:
                        call(b"", timeout=10)
                    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, method.full_name
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_texts_and_keys_never_reach_the_logs(stack, work_dir):
    """Every route, successes and failures, privacy mode on and off: the run directory's logs hold neither."""
    marker = f"Zyxwv{time.time_ns()} Tim Cook"
    headers = {"X-API-Key": API_KEY}
    calls = [  # (path, body, the status it must get: so the logs below really saw these calls)
        ("/gliner-2", {"text": marker, "labels": ["person"]}, 200),
        ("/gliner-2", {"text": marker, "labels": ["person"], "privacy_mode": True}, 200),
        ("/gliner-2", {"text": marker, "labels": "not-a-list"}, 400),
        ("/gliner-2", {"text": [marker] * 100, "labels": ["person"]}, 400),
        ("/inference", {"text": marker, "schema": {"entities": ["person"]}}, 200),
        ("/inference", {"text": marker, "schema": {"unknown": ["x"]}}, 400),
        ("/run", {"input": [{"text": marker, "parameters": {"entity_types": ["person"]}}]}, 200),
        ("/v1/extract", {"text": marker, "schema": {"entities": [{"name": "person"}]}}, 200),
    ]
    request_ids = []
    for index, (path, body, status) in enumerate(calls):
        request_ids.append(f"secret-check-{time.time_ns()}-{index}")
        response = requests.post(stack.base_url + path, json=body, timeout=30,
                                 headers={**headers, "X-Request-Id": request_ids[-1]})
        assert response.status_code == status, (path, response.text)
    request_ids.append(f"secret-check-{time.time_ns()}-malformed")
    malformed = requests.post(stack.base_url + "/gliner-2", data=f'{{"text": "{marker}", '.encode(), timeout=30,
                              headers={**headers, "X-Request-Id": request_ids[-1]})
    assert malformed.status_code == 400
    # Every call is in the server's request log and in Envoy's access log (both in serve.log): they were logged.
    assert wait_for(lambda: all(stack.log_path.read_text().count(f"request_id={rid}") >= 2 for rid in request_ids),
                    10), stack.log()
    run_dir = work_dir / "stack"
    logs = [p for p in run_dir.rglob("*") if p.is_file() and "data" not in p.relative_to(run_dir).parts]
    assert any(p.name == "serve.log" for p in logs) and any("envoy" in p.parts for p in logs)
    for path in logs:
        content = path.read_bytes()
        assert marker.split()[0].encode() not in content, path
        assert API_KEY.encode() not in content, path


def _certificate(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gliner2-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_on_the_listener_for_rest_and_native_grpc(span_checkpoint, cache_dir, work_dir, tmp_path):
    from gliner_client import GlinerClient, build_schema

    cert, key = _certificate(tmp_path)
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "tls-stack", "--api-key", API_KEY,
                        "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        url = f"https://127.0.0.1:{stack.port}"
        response = requests.post(url + "/gliner-2", json={"text": SEED_TEXT, "labels": ["person"]},
                                 headers={"X-API-Key": API_KEY}, verify=str(cert), timeout=30)
        assert response.status_code == 200 and "entities" in response.json()
        assert requests.get(url + "/healthz", verify=str(cert), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/healthz", timeout=10)  # an unknown certificate is not trusted
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{stack.port}/healthz", timeout=10)  # no plain text on this port
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with GlinerClient(f"127.0.0.1:{stack.port}", api_key=API_KEY, credentials=credentials) as client:
            assert client.extract(SEED_TEXT, build_schema(entities=["person"])).model_id
    finally:
        assert stop_stack(stack) == 0, stack.log()
