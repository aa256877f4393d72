"""Health that follows progress: a stuck model pass or history turns the server NOT_SERVING, and back."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import wait_for

from gliner_server.core.progress import ProgressWatch
from gliner_server.core.recording import RecordingEngine
from gliner_server.grpc_api.server import LIVENESS_SERVICE, GrpcServer
from gliner_server.runtime.batcher import BatchPolicy, BatchScheduler


def test_the_watch_reports_a_stall_once_and_the_recovery_once():
    state = {"stalled": None}
    changes, probes = [], []
    watch = ProgressWatch(lambda: [lambda: state["stalled"]], on_change=changes.append,
                          probe=lambda: probes.append(1) or True, probe_every_s=0.0)
    assert watch.check() is None and changes == []
    state["stalled"] = (12.0, "a history commit has been running for 12.0s")
    assert watch.check() and watch.check()
    state["stalled"] = (13.0, "a history commit has been running for 13.0s")   # still stalled: no new report
    watch.check()
    state["stalled"] = None
    watch.check()
    assert changes == ["a history commit has been running for 12.0s", None] and len(probes) == 5


def test_a_pass_that_does_not_move_is_seen_by_the_scheduler():
    gate, started = threading.Event(), threading.Event()

    def slow(texts, schemas, options, chunk):
        started.set()
        gate.wait(10)
        return list(texts)

    scheduler = BatchScheduler(slow, BatchPolicy(max_texts=2))
    assert scheduler.stalled_for() is None
    worker = threading.Thread(target=scheduler.submit, args=(["a", "b", "c"], "s", "o"))
    worker.start()
    assert started.wait(5)
    time.sleep(0.2)
    assert scheduler.stalled_for() >= 0.2      # the running slice's age
    gate.set()
    worker.join(5)
    assert scheduler.stalled_for() is None


def test_the_serve_command_watches_history_and_every_model_in_memory():
    from gliner_server.cli import _progress_watch

    stalled = {"history": None, "pass": None}
    history = SimpleNamespace(stalled_for=lambda: stalled["history"], probe=lambda: True)
    model = SimpleNamespace(model_id="m1", _scheduler=SimpleNamespace(stalled_for=lambda: stalled["pass"]))
    registry = SimpleNamespace(loaded_models=lambda: [model])
    reasons = []
    server = SimpleNamespace(set_stalled=reasons.append)
    args = SimpleNamespace(stall_seconds=10.0, pass_stall_seconds=120.0)
    watch = _progress_watch(registry, history, server, args)
    stalled["history"] = (9.0, "history commits have been failing for 9.0s")      # below the limit
    stalled["pass"] = 119.0
    assert watch.check() is None
    stalled["pass"] = 121.0
    assert "a pass of model m1 has been running for 121s" in watch.check()
    stalled["pass"], stalled["history"] = None, (10.5, "history commits have been failing for 10.5s")
    assert watch.check() == "history commits have been failing for 10.5s"
    stalled["history"] = None
    assert watch.check() is None
    assert reasons[0].startswith("a pass of model m1") and reasons[-1] is None


def _status(port: int, service: str = "") -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)


def test_health_is_serving_only_when_ready_and_progressing_and_liveness_only_until_shutdown():
    server = GrpcServer(RecordingEngine(None), address="127.0.0.1:0")
    server.start()
    try:
        assert _status(server.port) == "NOT_SERVING" and _status(server.port, LIVENESS_SERVICE) == "SERVING"
        server.mark_serving()
        assert _status(server.port) == "SERVING"
        server.set_stalled("a history commit has been running for 11.0s")
        assert _status(server.port) == "NOT_SERVING" and _status(server.port, "gliner.v1.GlinerService") == \
            "NOT_SERVING"
        assert _status(server.port, LIVENESS_SERVICE) == "SERVING"
        server.set_stalled(None)
        assert _status(server.port) == "SERVING"
        server.mark_not_serving()
        server.set_stalled(None)                 # shutting down: nothing turns it back on
        assert wait_for(lambda: _status(server.port) == "NOT_SERVING")
        assert _status(server.port, LIVENESS_SERVICE) == "NOT_SERVING"
    finally:
        server.stop(0)
