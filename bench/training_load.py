"""Serving latency while a training job runs on the same machine.

Starts the real ``gliner2-serve`` (the MiniLM demo base: random heads on the
real MiniLM-L6 encoder, built here) with its worker, and measures the seed
request on ``/gliner-2`` from ``--clients`` sequential clients:

* ``idle``: no training;
* ``bounded``: during a LoRA training job run by the worker as gliner2-serve
  starts it (``--train-threads``, default half the CPUs, at niceness 10);
* ``unbounded`` (with ``--compare-unbounded``): the same job run by a worker
  started with every CPU's thread and niceness 0, to show what the bounds buy.

It prints p50/p95/p99 per phase and their ratios to idle, with the CPU flags
and the machine's load before the run.

    .venv/bin/python bench/training_load.py [--seconds 30] [--clients 2] [--compare-unbounded]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LABELS, SEED, cpu_busy_fraction, summary, write_report
from faults import cpu_flags

from gliner_server.envoy import free_port

PEOPLE = ["John Smith", "Maria Lopez", "Wei Chen", "Anna Berg", "Omar Haddad", "Lena Fischer"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Hooli", "Soylent"]
PLACES = ["Paris", "Denver", "Lagos", "Osaka", "Lima", "Oslo"]


def records(count: int) -> list[dict]:
    rng = random.Random(0)
    out = []
    for _ in range(count):
        p, c, place = rng.choice(PEOPLE), rng.choice(COMPANIES), rng.choice(PLACES)
        out.append({"input": f"{p} joined {c} in {place} this spring.",
                    "output": {"entities": {"person": [p], "company": [c], "location": [place]}}})
    return out


def measure(base: str, seconds: float, clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client():
        session = requests.Session()
        while time.monotonic() < end:
            started = time.perf_counter()
            response = session.post(base + "/gliner-2", json={"text": SEED, "labels": LABELS}, timeout=30)
            took = (time.perf_counter() - started) * 1000
            if response.status_code == 200:
                with lock:
                    latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def start_job(base: str, name: str) -> str:
    requests.post(base + "/v1/datasets", json={"name": name, "records": records(400)}, timeout=30).raise_for_status()
    response = requests.post(base + "/v1/training-jobs", json={
        "base_model": "demo-base", "datasets": [{"name": name}], "nr_epochs": 50, "batch_size": 8}, timeout=30)
    response.raise_for_status()
    job = response.json()["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = requests.get(f"{base}/v1/training-jobs/{job}", timeout=30).json()
        if state["status"] == "running" and state.get("progress", {}).get("stage") == "training":
            return job
        if state["status"] in ("failed", "stopped", "complete"):
            raise SystemExit(f"the job ended early: {state}")
        time.sleep(0.5)
    raise SystemExit("the job never started training")


def stop_job(base: str, job: str) -> None:
    requests.post(f"{base}/v1/training-jobs/{job}/stop", json={}, timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if requests.get(f"{base}/v1/training-jobs/{job}", timeout=30).json()["status"] != "running":
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--compare-unbounded", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = cpu_busy_fraction()
    print(f"CPU: {os.cpu_count()} cores, flags {cpu_flags()}; busy before the run: {load:.0%}")
    work = Path(tempfile.mkdtemp(prefix="train-load-"))
    from gliner_server.demo_model import build_untrained

    demo = build_untrained(work / "demo-base")
    config = work / "config.yaml"
    config.write_text(f"default_model: demo-base\nmodels:\n  - id: demo-base\n    source: {demo}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = work / "data"
    command = [sys.executable, "-m", "gliner_server.cli", "--config", str(config), "--port", str(port),
               "--host", "127.0.0.1", "--data-dir", str(data), "--cache-dir", str(work / "cache"),
               "--run-dir", str(work / "run"), "--access-log", "off"]
    if args.compare_unbounded:
        command.append("--no-train-worker")
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    extra_worker = None
    report: dict = {"cpu_flags": cpu_flags(), "cpus": os.cpu_count(), "busy_before": round(load, 3),
                    "seconds": args.seconds, "clients": args.clients}
    try:
        deadline = time.monotonic() + 300
        while b"gliner2-serve: SERVING" not in (work / "serve.log").read_bytes():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((work / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        measure(base, 3, args.clients)    # warm
        phases = {"idle": summary(measure(base, args.seconds, args.clients))}
        print("idle", phases["idle"])
        if args.compare_unbounded:
            extra_worker = subprocess.Popen([sys.executable, "-m", "gliner_server.training.worker", "--data-dir",
                                             str(data), "--threads", str(os.cpu_count()), "--nice", "0"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            job = start_job(base, "load-unbounded")
            phases["unbounded"] = summary(measure(base, args.seconds, args.clients))
            print("unbounded training (every CPU, nice 0)", phases["unbounded"])
            stop_job(base, job)
            extra_worker.terminate()
            extra_worker.wait(30)
            extra_worker = subprocess.Popen([sys.executable, "-m", "gliner_server.training.worker", "--data-dir",
                                             str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        job = start_job(base, "load-bounded")
        phases["bounded"] = summary(measure(base, args.seconds, args.clients))
        print("bounded training (gliner2-serve's worker defaults)", phases["bounded"])
        stop_job(base, job)
        for name, figures in phases.items():
            print(f"{name:>10}: p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms  "
                  f"({figures['p50_ms'] / phases['idle']['p50_ms']:.2f}x / "
                  f"{figures['p95_ms'] / phases['idle']['p95_ms']:.2f}x idle)")
        report["phases"] = phases
        write_report(report, args.out, "training-load")
    finally:
        if extra_worker is not None:
            extra_worker.terminate()
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
