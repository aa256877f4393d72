"""deploy/grafana and deploy/prometheus: well-formed, and every metric they use is exported by a live server."""
from __future__ import annotations

import json
import re
from pathlib import Path

import requests
import yaml

from conftest import API_KEY, SEED_TEXT, start_stack, stop_stack
from gliner_server.envoy import free_port

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "gliner2-serve.json"
ALERTS = ROOT / "deploy" / "prometheus" / "gliner-alerts.yaml"
METRIC = re.compile(r"\b(gliner_[a-z0-9_]+)\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_files_hold_the_panels_and_alerts_operators_need():
    titles = " / ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("requests by method and code", "errors", "latency percentiles", "queue depth", "queue wait",
                  "batch size", "refusals", "model loads"):
        assert topic in titles, topic
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"GlinerErrorRatioHigh", "GlinerRefusalRatioHigh", "GlinerLatencyP95High",
            "GlinerNoHealthyReplica"} <= set(rules)
    for rule in rules.values():
        assert rule["expr"].strip() and rule["for"] and rule["labels"]["severity"] in ("page", "warn")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    assert "RESOURCE_EXHAUSTED" in rules["GlinerRefusalRatioHigh"]["expr"]     # the 429s
    assert "0.95" in rules["GlinerLatencyP95High"]["expr"]


def test_every_metric_the_dashboard_and_alerts_use_is_exported(span_checkpoint, cache_dir, work_dir):
    used = {name for expr in dashboard_exprs() + [r["expr"] for r in alert_rules()] for name in METRIC.findall(expr)}
    assert len(used) >= 15
    metrics_port = free_port()
    # With replicas, the supervisor's endpoint has every replica's series and its own (gliner_replica_up).
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "observability-stack", "--api-key", API_KEY,
                        "--replicas", "2", "--metrics-port", str(metrics_port), "--no-train-worker")
    try:
        for _ in range(3):
            response = requests.post(stack.base_url + "/gliner-2", json={"text": SEED_TEXT, "labels": ["person"]},
                                     headers={"X-API-Key": API_KEY}, timeout=60)
            assert response.status_code == 200, response.text
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    finally:
        assert stop_stack(stack) == 0, stack.log()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))

    def exported(name: str) -> bool:
        return name in samples or name in families or any(
            name.endswith(suffix) and name[: -len(suffix)] in families for suffix in SUFFIXES)

    missing = sorted(name for name in used if not exported(name))
    assert not missing, f"used by deploy/grafana or deploy/prometheus but not exported: {missing}"
