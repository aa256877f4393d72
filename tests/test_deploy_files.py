"""The compose file, the Kubernetes manifests and the Dockerfile agree with the command they run.

No container engine runs here, so these files cannot be started in the tests;
what can be checked is that every command line in them is one gliner2-serve
accepts, and that the names and ports that tie replicas to the front match.
"""
from __future__ import annotations

import re

from pathlib import Path

import yaml

from gliner_server.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _grace_needed(args: list[str]) -> float:
    parsed = parse_args(args)
    return parsed.drain_seconds + parsed.grace


def test_compose_replicas_and_front_fit_together():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replica, front = services["replica"]["command"], services["front"]["command"]
    replica_args, front_args = parse_args(replica), parse_args(front)
    assert replica_args.no_envoy and replica_args.grpc_host == "0.0.0.0"
    assert front_args.upstream == [("replica", replica_args.grpc_port)]  # the service name resolves to every replica
    assert services["front"]["ports"] == [f"{front_args.port}:{front_args.port}"]
    assert "ports" not in services["replica"]  # only the front is published
    assert replica_args.database_url.startswith("postgresql+psycopg://") and "@postgres/" in replica_args.database_url
    assert services["replica"]["deploy"]["replicas"] >= 2
    for name in ("replica", "front"):
        grace = float(services[name]["stop_grace_period"].rstrip("s"))
        assert grace > _grace_needed(services[name]["command"])
        args = parse_args(services[name]["command"])   # metrics reachable on the compose network
        assert args.metrics_host == "0.0.0.0" and services[name]["expose"] == [str(args.metrics_port)]


def _manifests() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_kubernetes_front_finds_the_replicas_through_the_headless_service():
    manifests = _manifests()
    replicas = manifests[("Deployment", "gliner2-replicas")]["spec"]["template"]["spec"]
    front = manifests[("Deployment", "gliner2-front")]["spec"]["template"]["spec"]
    replica_container, front_container = replicas["containers"][0], front["containers"][0]
    replica_args, front_args = parse_args(replica_container["args"]), parse_args(front_container["args"])
    assert replica_args.no_envoy and replica_args.grpc_host == "0.0.0.0"

    service = manifests[("Service", "gliner2-replicas")]["spec"]
    assert service["clusterIP"] == "None"  # headless: one DNS name, every pod's address
    (host, port), = front_args.upstream
    assert host.split(".")[0] == "gliner2-replicas" and host.endswith(".svc.cluster.local")
    assert port == service["ports"][0]["port"] == replica_args.grpc_port
    assert replica_container["ports"][0]["containerPort"] == replica_args.grpc_port
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert replica_container[probe]["grpc"]["port"] == replica_args.grpc_port  # grpc.health.v1, no key needed
    # a stalled dependency turns readiness off, never liveness (that would restart every pod)
    from gliner_server.grpc_api.server import LIVENESS_SERVICE

    assert replica_container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert "service" not in replica_container["readinessProbe"]["grpc"]
    for spec, container, args in ((replicas, replica_container, replica_args), (front, front_container, front_args)):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert args.metrics_host == "0.0.0.0" and ports["metrics"] == args.metrics_port
        annotations = manifests[("Deployment", "gliner2-replicas" if spec is replicas else "gliner2-front")][
            "spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(args.metrics_port)

    assert front_container["ports"][0]["containerPort"] == front_args.port
    assert front_container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert manifests[("Service", "gliner2")]["spec"]["selector"] == {"app": "gliner2", "role": "front"}
    for spec, container in ((replicas, replica_container), (front, front_container)):
        assert spec["terminationGracePeriodSeconds"] > _grace_needed(container["args"])

    secret = manifests[("Secret", "gliner2")]["stringData"]
    assert _flag(replica_container["args"], "--api-key-file").endswith("/api_keys") and "api_keys" in secret
    env = {e["name"]: e for e in replica_container["env"]}
    assert env["GLINER2_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] in secret


def test_dockerfile_serves_without_torch_and_converts_with_the_cpu_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))
    assert set(stages) == {"source", "convert", "serve"}
    assert dockerfile.rstrip().splitlines()[-1].startswith("CMD")    # serve is the last stage: the default target
    serve, convert = stages["serve"], stages["convert"]
    assert 'ENTRYPOINT ["gliner2-serve"]' in serve and "torch" not in serve and "[convert]" not in serve
    assert "EXPOSE 8080 50051 9464" in serve
    assert 'ENTRYPOINT ["gliner2-convert"]' in convert and ".[convert]" in convert
    assert '"torch==2.13.0"' in convert and "download.pytorch.org/whl/cpu" in convert


def test_the_core_and_the_dialects_import_no_transport():
    """Errors, the core, the dialects and the history are transport-agnostic: importing them loads no grpc."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import gliner_server.errors, gliner_server.core.engine, gliner_server.core.recording\n"
            "import gliner_server.core.progress, gliner_server.dialects.gliner2_api, gliner_server.dialects.run_api\n"
            "import gliner_server.dialects.inference_api, gliner_server.history.store\n"
            "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
