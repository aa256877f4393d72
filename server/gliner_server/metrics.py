"""Prometheus metrics (prometheus-client): requests by method and outcome, and each model's batching.

Served on ``127.0.0.1:--metrics-port/metrics`` when the flag is given. The
batching figures are read from the loaded models' schedulers when scraped, so
the batcher knows nothing of Prometheus.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REQUESTS = Counter("gliner_requests_total", "RPCs answered, by method and gRPC status", ["method", "code"])
LATENCY = Histogram("gliner_request_seconds", "RPC time in the server, by method", ["method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


@contextmanager
def observed(method: str):
    """Count and time one RPC; the block sets ``outcome["code"]`` (default OK)."""
    outcome = {"code": "OK"}
    started = time.perf_counter()
    try:
        yield outcome
    finally:
        LATENCY.labels(method).observe(time.perf_counter() - started)
        REQUESTS.labels(method, outcome["code"]).inc()


class BatchingCollector:
    """Per loaded model: queued texts, passes, texts run, and jobs refused or dropped."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        queued = GaugeMetricFamily("gliner_queued_texts", "Texts waiting for the model", labels=["model"])
        running = GaugeMetricFamily("gliner_running_texts", "Texts in the model pass running now", labels=["model"])
        counters = {name: CounterMetricFamily(f"gliner_batch_{name}", help_, labels=["model"]) for name, help_ in (
            ("passes", "Model passes run"), ("texts", "Texts run in model passes"),
            ("rejected", "Requests refused at once because the queue was full (429)"),
            ("dropped", "Queued requests dropped because their caller went away or timed out"))}
        for model in self.registry.loaded_models():
            scheduler = model.scheduler()
            queued.add_metric([model.model_id], scheduler.queued_texts())
            running.add_metric([model.model_id], scheduler.stats.running)
            for name, family in counters.items():
                family.add_metric([model.model_id], getattr(scheduler.stats, name))
        yield queued
        yield running
        yield from counters.values()


def serve_metrics(port: int, registry, host: str = "127.0.0.1") -> None:
    REGISTRY.register(BatchingCollector(registry))
    start_http_server(port, addr=host)
