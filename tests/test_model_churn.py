"""Many models, a memory bound, concurrent callers, and a model that cannot load, against the real stack.

Slow (a minute or so: five ~150 MB checkpoints are converted once and loaded
over and over), because memory is the point: unloading must really free a
model, so that cycling through more models than ``max_loaded_bytes`` holds
keeps the server's resident memory within the bound, measured from /proc.
"""
from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import API_KEY, SEED_TEXT, start_stack, stop_stack
from helpers import rss_bytes
from test_backpressure import counter

from gliner_server.envoy import free_port

pytestmark = pytest.mark.timeout(600)
HEADERS = {"X-API-Key": API_KEY}
MB = 2**20


def server_pid(stack) -> int:
    """The gRPC server is the ``gliner2-serve`` process itself (Envoy is its child)."""
    return stack.process.pid


def write_config(path: Path, checkpoints, **extra) -> Path:
    models = [{"id": f"m{i}", "source": str(c)} for i, c in enumerate(checkpoints)]
    path.write_text(yaml.safe_dump({"default_model": "m0", "models": models, **extra}))
    return path


def infer(stack, model_id: str):
    return requests.post(stack.base_url + "/inference", headers=HEADERS, timeout=120,
                         json={"model_id": model_id, "text": SEED_TEXT, "schema": {"entities": ["person"]}})


def model_bytes(stack) -> dict[str, float]:
    text = requests.get(stack.metrics_url, timeout=10).text
    return {m: float(v) for m, v in re.findall(r'^gliner_model_bytes\{model="([^"]+)"\} ([0-9.e+]+)$', text, re.M)}


def test_cycling_through_more_models_than_the_memory_bound_stays_within_it(big_checkpoints, cache_dir, work_dir):
    run_dir = work_dir / "churn"
    run_dir.mkdir(exist_ok=True)
    metrics_port = free_port()
    # Once, unbounded: every model converted into the cache, and its size as the registry counts it.
    config = write_config(run_dir / "all.yaml", big_checkpoints, max_loaded_models=5)
    stack = start_stack(None, cache_dir, run_dir / "convert", "--config", str(config), "--api-key",
                        API_KEY, "--metrics-port", str(metrics_port), timeout=300)
    stack.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        for i in range(len(big_checkpoints)):
            assert infer(stack, f"m{i}").status_code == 200
        sizes = model_bytes(stack)
    finally:
        assert stop_stack(stack) == 0, stack.log()
    size = max(sizes.values())
    assert len(sizes) == 5 and size > 100 * MB, sizes

    bound = int(2.5 * size)   # room for two models, never three
    config = write_config(run_dir / "bounded.yaml", big_checkpoints, max_loaded_models=5, max_loaded_bytes=bound)
    metrics_port = free_port()
    stack = start_stack(None, cache_dir, run_dir / "bounded", "--config", str(config), "--api-key",
                        API_KEY, "--metrics-port", str(metrics_port), timeout=300)
    stack.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    samples: list[int] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_bytes(server_pid(stack)))
            time.sleep(0.05)

    try:
        assert infer(stack, "m0").status_code == 200
        baseline = rss_bytes(server_pid(stack))       # one model in memory, warm
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        order = [f"m{(1 + i) % 5}" for i in range(5)]   # m1 … m4, m0: each client on its own model at a time

        def client(offset):
            return [infer(stack, order[(offset + i) % len(order)]).status_code for i in range(8)]

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            statuses = [s for result in pool.map(client, range(3)) for s in result]
        done.set()
        sampler.join(5)
        loads = counter(stack, "gliner_model_load_seconds_count")
        unloads = counter(stack, "gliner_model_unloads_total")
    finally:
        done.set()
        assert stop_stack(stack) == 0, stack.log()
    peak = max(samples)
    runtime = baseline - sizes["m0"]   # the process without any model
    # The bound holds the models the registry keeps; a model it let go of that a request still uses is freed
    # when that request ends, so one more model may be in memory for a moment; plus allocator slack.
    margin = size + 200 * MB
    print(f"model ~{size / MB:.0f} MiB, bound {bound / MB:.0f} MiB: RSS {runtime / MB:.0f} MiB without models, "
          f"{baseline / MB:.0f} MiB with one, peak {peak / MB:.0f} MiB over {len(samples)} samples "
          f"(limit {(runtime + bound + margin) / MB:.0f}); {loads:.0f} loads, {unloads:.0f} unloads")
    assert statuses.count(200) == len(statuses), statuses
    assert loads >= 8 and unloads >= loads - 2                     # really cycled: loaded and freed again and again
    assert peak <= runtime + bound + margin, (peak - runtime - bound) / MB


BROKEN_CONFIG = """{"model_type": "extractor", "this is": "not a checkpoint"}"""


def test_a_broken_model_costs_one_load_attempt_per_backoff_not_per_request_or_replica(span_checkpoint, cache_dir,
                                                                                       work_dir):
    run_dir = work_dir / "broken-model"
    run_dir.mkdir(exist_ok=True)
    broken = run_dir / "broken-checkpoint"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text(BROKEN_CONFIG)
    config = run_dir / "config.yaml"
    config.write_text(yaml.safe_dump({"default_model": "good", "model_load_backoff_s": 60, "models": [
        {"id": "good", "source": str(span_checkpoint)}, {"id": "broken", "source": str(broken)}]}))
    stack = start_stack(None, cache_dir, run_dir / "stack", "--config", str(config), "--api-key", API_KEY,
                        "--replicas", "2", timeout=240)
    try:
        answers = [infer(stack, "broken") for _ in range(10)]
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers += list(pool.map(lambda _: infer(stack, "broken"), range(10)))
        good = infer(stack, "good")
    finally:
        assert stop_stack(stack) == 0, stack.log()
    log = stack.log_path.read_text()
    attempts = sum(line.endswith("loading model broken") for line in log.splitlines())
    print(f"20 requests for a broken model on 2 replicas: {attempts} load attempt(s); "
          f"answers {sorted({(a.status_code, a.json()['error']['code']) for a in answers})}")
    assert good.status_code == 200
    for answer in answers:
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "MODEL_UNAVAILABLE", answer.text
        assert int(answer.headers["retry-after"]) >= 1
    # At most one attempt per replica within the backoff, and Envoy never retried the answer elsewhere.
    assert 1 <= attempts <= 2, attempts
    envoy_lines = [line for line in log.splitlines() if "envoy access" in line and "POST /inference" in line]
    assert len(envoy_lines) >= 21 and all("attempts=1" in line for line in envoy_lines), envoy_lines[:3]
