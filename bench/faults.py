"""Faults around the service, injected for real, and what callers and health checks saw.

Each scenario starts the real ``gliner2-serve`` (tiny random checkpoint), puts
steady load on it, injects a fault for a while, ends it, and prints per phase
(before, during, after) the answers callers got (HTTP status and provider
code, median and slowest latency) and what the server's own gRPC health check
said (polled directly, every 0.1 s):

* ``pg-pause``: the PostgreSQL history database's processes are SIGSTOPped, then resumed;
* ``sqlite-readonly``: the SQLite history file and its WAL become immutable (``chattr +i``), then writable;
* ``sqlite-locked``: another process holds the SQLite file's write lock, then lets go;
* ``broken-model``: 20 requests for a model whose checkpoint cannot load, on two replicas (load attempts counted);
* ``cold-model``: 12 concurrent requests for a model that takes seconds to load, beside a client of a loaded
  model, with 16 server threads (what the loaded model's client gets meanwhile);
* ``replica-metrics``: ``--replicas 2 --metrics-port P`` (does it start, is each replica in the metrics).

``--legacy`` runs the scenario the way an older build is started (none of the
new flags), so that the same script measures the code before a change:

    .venv/bin/python bench/faults.py                          # every scenario, this tree
    PYTHONPATH=/tmp/old/server .venv/bin/python bench/faults.py --legacy   # a checkout of an older commit
"""
from __future__ import annotations

import argparse
import concurrent.futures
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KEY, ROOT, SEED, bench_checkpoint, cpu_busy_fraction, cpu_flags, write_report

from gliner_server.envoy import free_port

BODY = {"text": SEED, "schema": {"entities": ["company", "person"]}}
FAULT_S, BEFORE_S, AFTER_S = 8.0, 3.0, 8.0


def phase_summary(answers) -> dict:
    if not answers:
        return {"answers": 0}
    codes: dict[str, int] = {}
    for a in answers:
        key = f"{a.status} {a.code or ''}".strip()
        codes[key] = codes.get(key, 0) + 1
    seconds = [a.seconds for a in answers]
    return {"answers": len(answers), "codes": codes, "p50_ms": round(statistics.median(seconds) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1)}


def health_summary(statuses: list[str]) -> dict:
    found: dict[str, int] = {}
    for status in statuses:
        found[status] = found.get(status, 0) + 1
    return found


def serve(tmp: Path, name: str, *flags: str, legacy: bool, timeout: float = 180, default_model: bool = True):
    """The stack on the tiny checkpoint (``default_model``), or on its ``--config``'s default model."""
    from conftest import start_stack

    grpc_port = free_port()
    extra = [] if legacy else ["--history-timeout", "1", "--stall-seconds", "2"]
    model = bench_checkpoint(ROOT / "var" / "bench", tiny=True) if default_model else None
    stack = start_stack(model, tmp / "cache", tmp / name,
                        "--api-key", KEY, "--grpc-port", str(grpc_port), *extra, *flags, timeout=timeout)
    stack.grpc_address = f"127.0.0.1:{grpc_port}"
    return stack


def run_fault(stack, start, end) -> dict:
    from helpers import HealthPoller, Load, fault_window

    with HealthPoller(stack.grpc_address) as health, \
            Load(stack.base_url, "/inference", BODY, key=KEY, clients=8, timeout=30) as load:
        t0 = time.monotonic()
        time.sleep(BEFORE_S)
        t1, t2 = fault_window(start, end, FAULT_S)
        time.sleep(AFTER_S)
        t3 = time.monotonic()
    return {phase: {"callers": phase_summary(load.between(a, b)), "health": health_summary(health.statuses(a, b))}
            for phase, (a, b) in {"before": (t0, t1), "during": (t1, t2), "after": (t2, t3)}.items()}


def pg_pause(tmp: Path, legacy: bool) -> dict:
    from conftest import stop_stack
    from pg_cluster import PostgresCluster

    with PostgresCluster() as cluster:
        stack = serve(tmp, "pg-pause", "--database-url", cluster.create_database("faults"), legacy=legacy)
        paused: list[int] = []
        try:
            return run_fault(stack, lambda: paused.extend(cluster.pause()), lambda: cluster.resume(paused))
        finally:
            cluster.resume(paused)
            stop_stack(stack)


def _chattr(paths, flag: str) -> None:
    for path in paths:
        if path.exists():
            subprocess.run(["chattr", flag, str(path)], check=True)


def sqlite_readonly(tmp: Path, legacy: bool) -> dict:
    from conftest import stop_stack

    stack = serve(tmp, "sqlite-readonly", legacy=legacy)
    database = tmp / "sqlite-readonly" / "data" / "history.db"
    files = [database, database.with_name("history.db-wal")]
    try:
        return run_fault(stack, lambda: _chattr(files, "+i"), lambda: _chattr(files, "-i"))
    finally:
        _chattr(files, "-i")
        stop_stack(stack)


LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


def sqlite_locked(tmp: Path, legacy: bool) -> dict:
    from conftest import stop_stack

    stack = serve(tmp, "sqlite-locked", legacy=legacy)
    database = tmp / "sqlite-locked" / "data" / "history.db"
    holder: list = []

    def lock():
        holder.append(subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(database)], text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        holder[0].stdout.readline()

    def unlock():
        holder[0].communicate("\n", timeout=10)

    try:
        return run_fault(stack, lock, unlock)
    finally:
        if holder and holder[0].poll() is None:
            holder[0].kill()
        stop_stack(stack)


def _config(tmp: Path, models: dict, **extra) -> Path:
    import yaml

    path = tmp / f"config-{len(models)}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump({"default_model": next(iter(models)), **extra,
                                    "models": [{"id": k, "source": str(v)} for k, v in models.items()]}))
    return path


def _infer(stack, model_id: str):
    import requests

    started = time.monotonic()
    try:
        response = requests.post(stack.base_url + "/inference", json={**BODY, "model_id": model_id},
                                 headers={"X-API-Key": KEY}, timeout=120)
        code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
        return response.status_code, code, time.monotonic() - started
    except requests.RequestException as error:
        return type(error).__name__, None, time.monotonic() - started


def broken_model(tmp: Path, legacy: bool) -> dict:
    from conftest import stop_stack

    broken = tmp / "broken-checkpoint"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "config.json").write_text('{"model_type": "extractor", "not": "a checkpoint"}')
    config = _config(tmp, {"good": bench_checkpoint(ROOT / "var" / "bench", tiny=True), "broken": broken})
    stack = serve(tmp, "broken-model", "--config", str(config), "--replicas", "2", legacy=True, timeout=300,
                  default_model=False)
    try:
        answers = [_infer(stack, "broken") for _ in range(10)]
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers += list(pool.map(lambda _: _infer(stack, "broken"), range(10)))
    finally:
        stop_stack(stack)
    log = stack.log_path.read_text()
    codes: dict[str, int] = {}
    for status, code, _ in answers:
        codes[f"{status} {code or ''}".strip()] = codes.get(f"{status} {code or ''}".strip(), 0) + 1
    attempts = sum(line.endswith("loading model broken") for line in log.splitlines())
    return {"requests": len(answers), "codes": codes, "load_attempts": attempts,
            "max_ms": round(max(s for _, _, s in answers) * 1000, 1)}


def cold_model(tmp: Path, legacy: bool) -> dict:
    from conftest import stop_stack

    from gliner_server.random_checkpoint import build_deberta_checkpoint

    cold = tmp / "cold-checkpoint"
    if not (cold / "config.json").is_file():
        build_deberta_checkpoint(cold, hidden=1024, layers=3, heads=8, intermediate=4096, seed=5)
    warm = bench_checkpoint(ROOT / "var" / "bench", tiny=True)
    config = _config(tmp, {"warm": warm, "cold": cold})
    stack = serve(tmp, "cold-model", "--config", str(config), "--workers", "16", legacy=legacy, timeout=300,
                  default_model=False)   # "warm", the configuration's default, is loaded at start-up
    try:
        with concurrent.futures.ThreadPoolExecutor(13) as pool:
            colds = [pool.submit(_infer, stack, "cold") for _ in range(12)]
            time.sleep(0.5)
            warm_answers = []
            while not all(f.done() for f in colds):
                warm_answers.append(_infer(stack, "warm"))
            cold_answers = [f.result() for f in colds]
    finally:
        stop_stack(stack)

    def summary(answers):
        codes: dict[str, int] = {}
        for status, code, _ in answers:
            codes[f"{status} {code or ''}".strip()] = codes.get(f"{status} {code or ''}".strip(), 0) + 1
        return {"answers": len(answers), "codes": codes,
                "p50_ms": round(statistics.median(s for _, _, s in answers) * 1000, 1) if answers else None,
                "max_ms": round(max(s for _, _, s in answers) * 1000, 1) if answers else None}

    return {"cold model callers": summary(cold_answers), "loaded model caller meanwhile": summary(warm_answers),
            "load_attempts": sum(line.endswith("loading model cold")
                                 for line in stack.log_path.read_text().splitlines())}


def replica_metrics(tmp: Path, legacy: bool) -> dict:
    import requests
    from conftest import stop_stack

    metrics = free_port()
    try:
        stack = serve(tmp, "replica-metrics", "--replicas", "2", "--metrics-port", str(metrics), legacy=True,
                      timeout=240)
    except RuntimeError as error:
        return {"started": False, "log": str(error).splitlines()[-3:]}
    try:
        for _ in range(10):
            requests.post(stack.base_url + "/inference", json=BODY, headers={"X-API-Key": KEY}, timeout=30)
        text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    finally:
        stop_stack(stack)
    return {"started": True, "replica_labels": sorted({line.split('replica="')[1].split('"')[0]
                                                       for line in text.splitlines() if 'replica="' in line})}


SCENARIOS = {"pg-pause": pg_pause, "sqlite-readonly": sqlite_readonly, "sqlite-locked": sqlite_locked,
             "broken-model": broken_model, "cold-model": cold_model, "replica-metrics": replica_metrics}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only these (repeatable; default all)")
    parser.add_argument("--legacy", action="store_true", help="start the server without the newer flags")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "flags": cpu_flags(),
                          "busy_before": round(cpu_busy_fraction(), 3)},
              "legacy": args.legacy, "scenarios": {}}
    print(f"CPU flags: {report['machine']['flags']}; machine busy {100 * report['machine']['busy_before']:.0f} %")
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        for name in args.scenario or list(SCENARIOS):
            print(f"--- {name}", flush=True)
            result = SCENARIOS[name](Path(tmp), args.legacy)
            report["scenarios"][name] = result
            for key, value in result.items():
                print(f"  {key}: {value}")
    report["machine"]["busy_after"] = round(cpu_busy_fraction(), 3)
    write_report(report, args.out, "faults")


if __name__ == "__main__":
    main()
