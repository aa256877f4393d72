"""Prometheus metrics (prometheus-client): calls, queueing, passes, the history, model loads and refusals.

Served on ``--metrics-host:--metrics-port/metrics`` when the port is given.
The batcher, the registry and the history know nothing of Prometheus: they
report through small event interfaces (``BatchEvents``, ``RegistryEvents``,
the history's ``on_commit``) that this module implements. Series are keyed by
model id (a configured, bounded set) and survive a model's unloading.

With ``--replicas N`` each replica serves its own metrics on a loopback port
and the supervisor serves them all on the one metrics port, each series
labelled ``replica`` (see :class:`ReplicaMetrics`), plus Envoy's per-key rate
limit refusals.
"""
from __future__ import annotations

import logging
import time
import urllib.request

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("gliner_requests_total", "RPCs answered, by method and gRPC status", ["method", "code"])
LATENCY = Histogram("gliner_request_seconds", "RPC time in the server, by method", ["method"], buckets=_SECONDS)
REFUSALS = Counter("gliner_refusals_total", "Calls refused before any work, by reason (admission: model-call "
                   "threads; history_admission; queue_full: the model's queue; history_unavailable; "
                   "model_loading; model_unavailable: a failed load in its backoff)", ["reason"])
QUEUE_WAIT = Histogram("gliner_queue_wait_seconds", "Time a request waited for its model pass", ["model"],
                       buckets=_SECONDS)
PASS_TIME = Histogram("gliner_pass_seconds", "Time of a model pass (all its slices)", ["model"], buckets=_SECONDS)
BATCH_SIZE = Histogram("gliner_pass_texts", "Texts per model pass (the batch size)", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
PASSES = Counter("gliner_batch_passes_total", "Model passes run", ["model"])
PASS_TEXTS = Counter("gliner_batch_texts_total", "Texts run in model passes", ["model"])
REJECTED = Counter("gliner_batch_rejected_total", "Requests refused at once because the model's queue was full",
                   ["model"])
DROPPED = Counter("gliner_batch_dropped_total", "Queued requests dropped because their caller went away or "
                  "timed out", ["model"])
COMMIT_TIME = Histogram("gliner_history_commit_seconds", "Time of a history commit (a group of requests' records)",
                        buckets=_SECONDS)
COMMIT_ROWS = Counter("gliner_history_rows_total", "Inference records committed, by outcome", ["outcome"])
COMMIT_FAILURES = Counter("gliner_history_commit_failures_total", "History commits that failed")
LOAD_TIME = Histogram("gliner_model_load_seconds", "Time to load a model, by outcome", ["model", "outcome"],
                      buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
UNLOADS = Counter("gliner_model_unloads_total", "Models unloaded (memory freed)", ["model"])
SERVING = Gauge("gliner_serving", "1 while health says SERVING (ready and progressing), else 0")


def observe_rpc(method: str, code: str, seconds: float, refusal: str | None = None) -> None:
    LATENCY.labels(method).observe(seconds)
    REQUESTS.labels(method, code).inc()
    if refusal:
        REFUSALS.labels(refusal).inc()


class _BatchEvents:
    def job_started(self, model: str, queue_seconds: float) -> None:
        QUEUE_WAIT.labels(model).observe(queue_seconds)

    def pass_run(self, model: str, texts: int, seconds: float) -> None:
        PASS_TIME.labels(model).observe(seconds)
        BATCH_SIZE.labels(model).observe(texts)
        PASSES.labels(model).inc()
        PASS_TEXTS.labels(model).inc(texts)

    def refused(self, model: str) -> None:
        REJECTED.labels(model).inc()

    def dropped(self, model: str) -> None:
        DROPPED.labels(model).inc()


class _RegistryEvents:
    def loaded(self, model_id: str, seconds: float, ok: bool) -> None:
        LOAD_TIME.labels(model_id, "ok" if ok else "failed").observe(seconds)

    def unloaded(self, model_id: str) -> None:
        UNLOADS.labels(model_id).inc()


BATCH_EVENTS = _BatchEvents()
REGISTRY_EVENTS = _RegistryEvents()


def on_commit(seconds: float, rows: int, ok: bool) -> None:
    COMMIT_TIME.observe(seconds)
    COMMIT_ROWS.labels("stored" if ok else "failed").inc(rows)
    if not ok:
        COMMIT_FAILURES.inc()


class ModelCollector:
    """Per configured model, at scrape time: loaded or not, queued and running texts, resident bytes."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        loaded = GaugeMetricFamily("gliner_model_loaded", "1 while the model is in memory", labels=["model"])
        queued = GaugeMetricFamily("gliner_queued_texts", "Texts waiting for the model", labels=["model"])
        running = GaugeMetricFamily("gliner_running_texts", "Texts in the model pass running now", labels=["model"])
        memory = GaugeMetricFamily("gliner_model_bytes", "Estimated memory of the model in memory", labels=["model"])
        in_memory = {m.model_id: m for m in self.registry.loaded_models()}
        for spec in self.registry.specs():
            model = in_memory.get(spec.id)
            scheduler = model._scheduler if model is not None else None
            loaded.add_metric([spec.id], 1 if model is not None else 0)
            queued.add_metric([spec.id], scheduler.queued_texts() if scheduler else 0)
            running.add_metric([spec.id], scheduler.stats.running if scheduler else 0)
            memory.add_metric([spec.id], model.memory_bytes if model is not None else 0)
        yield from (loaded, queued, running, memory)


class EnvoyCollector:
    """Envoy's own refusals, read from its admin API at scrape time (per-key rate limit, no healthy upstream)."""

    def __init__(self, admin):
        self.admin = admin    # callable: path -> text or None

    def describe(self):
        return [CounterMetricFamily("gliner_envoy_refusals", "", labels=["reason"])]

    def collect(self):
        family = CounterMetricFamily("gliner_envoy_refusals", "Requests Envoy refused itself, by reason "
                                     "(rate_limit: the per-API-key limit; no_healthy_upstream)", labels=["reason"])
        text = self.admin("/stats?filter=(http_local_rate_limit\\.rate_limited|upstream_cx_none_healthy)$") or ""
        values = {"rate_limit": 0, "no_healthy_upstream": 0}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if not value.strip().isdigit():
                continue
            if name.endswith("http_local_rate_limit.rate_limited"):
                values["rate_limit"] += int(value)
            elif name.endswith("upstream_cx_none_healthy"):
                values["no_healthy_upstream"] += int(value)
        for reason, value in values.items():
            family.add_metric([reason], value)
        yield family


def serve_metrics(port: int, registry, host: str = "127.0.0.1", envoy_admin=None) -> None:
    REGISTRY.register(ModelCollector(registry))
    if envoy_admin is not None:
        REGISTRY.register(EnvoyCollector(envoy_admin))
    start_http_server(port, addr=host)


class ReplicaMetrics:
    """The supervisor's view: every replica's metrics, each series labelled with its replica, at scrape time."""

    def __init__(self, replicas, timeout_s: float = 2.0):
        self.replicas = replicas   # callable: -> [(index, metrics_url)]
        self.timeout_s = timeout_s

    def collect(self):
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily("gliner_replica_up", "1 when the replica's metrics could be read", labels=["replica"])
        for index, url in self.replicas():
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    text = response.read().decode()
            except OSError:
                up.add_metric([str(index)], 0)
                continue
            up.add_metric([str(index)], 1)
            for family in text_string_to_metric_families(text):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "replica": str(index)}, sample.value,
                                    sample.timestamp, sample.exemplar)
        yield up
        yield from merged.values()


def serve_replica_metrics(port: int, host: str, replicas, envoy_admin=None) -> None:
    """The supervisor's metrics endpoint (its own registry: the replicas' process metrics are theirs)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaMetrics(replicas))
    if envoy_admin is not None:
        registry.register(EnvoyCollector(envoy_admin))
    start_http_server(port, addr=host, registry=registry)


def wait_for_metrics(url: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False
