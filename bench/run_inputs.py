"""A 16-input ``/run``: how long it takes and how many model passes it costs.

Starts the real ``gliner2-serve`` (the deberta-v3-base-shaped random checkpoint,
or ``--tiny``) and sends the same ``/run`` body of 16 inputs (ordinary
sentences, one entity schema, one threshold) ``--rounds`` times, one at a time.
Prints the latency percentiles, the model passes and the history commits per
call (from the server's metrics, where it has them), CPU flags and load. Run it
on two builds to compare them (an older checkout: ``PYTHONPATH=checkout/server``).

    .venv/bin/python bench/run_inputs.py [--rounds 20] [--tiny] [--inputs 16]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KEY, PARAGRAPH, ROOT, bench_checkpoint, cpu_busy_fraction, cpu_flags, percentile, write_report

from gliner_server.envoy import free_port


def metric(url: str, name: str) -> float | None:
    import requests

    text = requests.get(url, timeout=10).text
    values = [float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values) if values else None


def main() -> None:
    import tempfile

    import requests
    from conftest import start_stack, stop_stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sentences = [s.strip() + "." for s in PARAGRAPH.split(". ") if s.strip()]
    body = {"input": [{"text": f"{sentences[i % len(sentences)]} ({i})",
                       "parameters": {"entity_types": ["person", "company", "location"], "threshold": 0.5}}
                      for i in range(args.inputs)]}
    busy = cpu_busy_fraction()
    metrics_port = free_port()
    with tempfile.TemporaryDirectory(prefix="run-inputs-") as tmp:
        stack = start_stack(bench_checkpoint(ROOT / "var" / "bench", tiny=args.tiny), ROOT / "var" / "bench" / "cache",
                            Path(tmp) / "run", "--api-key", KEY, "--metrics-port", str(metrics_port), timeout=300)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            session = requests.Session()
            session.headers["X-API-Key"] = KEY
            for _ in range(3):  # warm
                assert session.post(stack.base_url + "/run", json=body, timeout=300).status_code == 200
            passes0 = metric(url, "gliner_batch_passes_total")
            commits0 = metric(url, "gliner_history_commit_seconds_count")
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = session.post(stack.base_url + "/run", json=body, timeout=300)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and all(i["status"] == "success" for i in response.json())
            passes1 = metric(url, "gliner_batch_passes_total")
            commits1 = metric(url, "gliner_history_commit_seconds_count")
        finally:
            stop_stack(stack)
    report = {
        "cpu_flags": cpu_flags(), "busy_before": busy, "busy_after": cpu_busy_fraction(),
        "inputs": args.inputs, "rounds": args.rounds, "checkpoint": "tiny" if args.tiny else "deberta-v3-base-shape",
        "p50_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1),
        "passes_per_call": None if passes0 is None else round((passes1 - passes0) / args.rounds, 2),
        "commits_per_call": None if commits0 is None else round((commits1 - commits0) / args.rounds, 2),
    }
    print(f"CPU flags: {report['cpu_flags']}; machine busy {100 * busy:.0f} % before, "
          f"{100 * report['busy_after']:.0f} % after")
    print(f"/run with {args.inputs} inputs, {args.rounds} calls ({report['checkpoint']}): p50 {report['p50_ms']} ms, "
          f"p95 {report['p95_ms']} ms; model passes per call {report['passes_per_call']}, "
          f"history commits per call {report['commits_per_call']}")
    write_report(report, args.out, "run-inputs")


if __name__ == "__main__":
    main()
