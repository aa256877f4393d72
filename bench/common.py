"""Shared pieces of the benchmark scripts: inputs, checkpoints, statistics, machine load."""
from __future__ import annotations

import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # start_stack / stop_stack: the tests' way to run gliner2-serve
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEED = "Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday."
LABELS = ["company", "person", "product", "location"]
KEY = "bench-key"
PARAGRAPH = ("Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday "
             "to discuss a joint venture worth $2 billion. The deal, announced at VivaTech, covers cloud "
             "computing, chips built by TSMC in Taiwan, and a research lab in Zurich led by Dr. Anna Weber. ")


def bench_checkpoint(cache: Path, *, tiny: bool = False) -> Path:
    """Random weights: deberta-v3-base's exact shapes (or a tiny model for smoke runs). Cached."""
    from gliner_server.random_checkpoint import build_deberta_checkpoint, deberta_v3_base_shape

    path = cache / ("tiny-deberta" if tiny else "deberta-v3-base-shape")
    if not (path / "config.json").is_file():
        print(f"building a random {'tiny' if tiny else 'deberta-v3-base-shaped'} checkpoint in {path} ...", flush=True)
        (build_deberta_checkpoint(path, seed=1) if tiny else deberta_v3_base_shape(path))
    return path


def recording_engine(checkpoint: Path, cache: Path, data_dir: str):
    """The server's core in process: one model ("m", f32), the engine with its batcher, and the durable SQLite
    history in ``data_dir``. ``.engine`` is the engine alone, ``.engine.models`` the registry."""
    from gliner_server.core.engine import InferenceEngine
    from gliner_server.core.recording import RecordingEngine
    from gliner_server.history.store import HistoryStore
    from gliner_server.runtime.registry import ModelRegistry, ModelSpec

    registry = ModelRegistry([ModelSpec(id="m", source=str(checkpoint))], "m", precision="f32", cache_dir=cache)
    return RecordingEngine(InferenceEngine(registry), HistoryStore.open(f"sqlite:///{data_dir}/history.db"))


def text_of_tokens(tokenizer, tokens: int) -> str:
    """A prefix of repeated PARAGRAPH that the model's tokenizer splits into about ``tokens`` tokens."""
    words = (PARAGRAPH * (1 + tokens // 20)).split()
    low, high = 1, len(words)
    while low < high:  # the longest word prefix within the budget
        mid = (low + high + 1) // 2
        if len(tokenizer.tokenize(" ".join(words[:mid]))) <= tokens:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low])


def cpu_flags() -> str:
    """The CPU's model, how many CPUs this machine has, and the flags that decide OpenVINO's kernels."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    flags: set[str] = set()
    for line in info:
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    model = next((line.split(": ", 1)[1] for line in info if line.startswith("model name")), "unknown CPU")
    cpus = sum(1 for line in info if line.startswith("processor"))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
    return f"{model}; {cpus} CPUs; " + (" ".join(f for f in wanted if f in flags) or "none of " + ",".join(wanted))


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (from /proc/stat), i.e. load from other processes when idle."""
    def snapshot():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]
    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(latencies_ms: list[float]) -> dict:
    return {"n": len(latencies_ms), "p50_ms": round(statistics.median(latencies_ms), 2),
            "p95_ms": round(percentile(latencies_ms, 0.95), 2), "p99_ms": round(percentile(latencies_ms, 0.99), 2)}


_READY = re.compile(r"ready in ([0-9.]+)s \(([0-9.]+s|\?) since process start; model loaded in ([0-9.]+)s, "
                    r"(lean runtime|gliner2 library runtime, ([0-9.]+)s of it importing)")


def server_start_figures(log: str) -> dict:
    """The start-up figures of gliner2-serve's SERVING log line (the last one in ``log``).

    ``ready_in_s`` counts from the start of ``main()`` (model load, warm-up, Envoy),
    ``since_process_start_s`` from process creation (interpreter and imports too),
    ``model_load_s`` the model's load, ``runtime`` "lean" or "library", and on the
    library runtime ``library_import_s``, the part of ``ready_in_s`` spent importing
    gliner2 (torch, transformers); ``cached_ir_to_serving_s`` is the rest of it.
    """
    found = _READY.findall(log)
    if not found:
        return {}
    ready, since, load, runtime, library = found[-1]
    library_s = float(library) if library else 0.0
    return {"ready_in_s": float(ready), "since_process_start_s": None if since == "?" else float(since[:-1]),
            "model_load_s": float(load), "runtime": "lean" if runtime.startswith("lean") else "library",
            "library_import_s": library_s, "cached_ir_to_serving_s": round(float(ready) - library_s, 2)}


def write_report(report: dict, out: Path | None, name: str) -> Path:
    """The report as JSON: to ``out``, or ``bench/results/NAME-TIME.json``; says where."""
    import json

    out = out or ROOT / "bench" / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return out


def median_ms(call, runs: int, warmup: int = 2) -> float:
    """Median of ``runs`` calls after ``warmup`` warm-up calls, in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def paired_rounds(calls: dict, rounds: int, warmup: int = 10, pause_s: float = 0.0) -> dict[str, list[float]]:
    """Milliseconds of each call, run back to back in every round (so they share the machine's moods).

    ``pause_s`` before each timed call lets the previous call's thread pool go idle: runtimes whose worker
    threads spin-wait after a call (ONNX Runtime, OpenMP) would otherwise slow whichever call comes next.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            if pause_s:
                time.sleep(pause_s)
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def concurrent_rate(call, clients: int, seconds: float) -> tuple[float, list[float], int]:
    """Requests per second with ``clients`` threads calling for ``seconds``; latencies; errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker():
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                call()
            except Exception:  # noqa: BLE001 - counted, reported
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - began), latencies, errors[0]
