"""Seed-sentence latency: the gliner2 library in-process vs this service, side by side.

Builds (once, cached) a random checkpoint with deberta-v3-base's exact shapes,
starts `gliner2-serve` on it, and measures interleaved, in one run:

* reference: gliner2's PyTorch ``extract_entities`` in this process (2 threads);
* runtime: this project's OpenVINO runtime in this process (core engine);
* REST: ``POST /gliner-2`` through Envoy (keep-alive session);
* gRPC: ``GlinerService/Extract`` through Envoy's port.

Prints p50/p95 per path and each path's speed-up over the reference's p50.
Random weights: these are timings only, never accuracy.

    .venv/bin/python bench/seed_latency.py [--rounds 40] [--precision f32]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import KEY, LABELS, ROOT, SEED, bench_checkpoint, cpu_busy_fraction, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import requests
    import torch
    from conftest import start_stack, stop_stack
    from gliner_client import GlinerClient, build_schema

    from gliner_server.core.engine import InferenceEngine
    from gliner_server.dialects import gliner2_api
    from gliner_server.runtime.loaded_model import load_model

    torch.set_num_threads(2)
    checkpoint = bench_checkpoint(args.cache)
    busy_before = cpu_busy_fraction()
    started = time.perf_counter()
    stack = start_stack(checkpoint, args.cache / "ov-cache", args.cache / "run", "--api-key", KEY,
                        "--precision", args.precision, timeout=600)
    print(f"stack SERVING after {time.perf_counter() - started:.1f}s (includes IR conversion on first run)")
    try:
        reference = load_model(str(checkpoint), precision="torch", cache_dir=args.cache / "ov-cache").model
        runtime = load_model(str(checkpoint), precision=args.precision, cache_dir=args.cache / "ov-cache")
        engine = InferenceEngine.of(runtime)
        body = {"text": SEED, "labels": LABELS}
        session = requests.Session()
        session.headers.update({"X-API-Key": KEY})
        client = GlinerClient(f"127.0.0.1:{stack.port}", api_key=KEY)
        schema_pb = build_schema(entities=LABELS)

        paths = {
            "reference (gliner2, PyTorch, in-process)": lambda: reference.extract_entities(SEED, LABELS),
            "runtime (OpenVINO, in-process)": lambda: engine.run(gliner2_api.parse(body).request),
            "REST /gliner-2 via Envoy": lambda: session.post(f"{stack.base_url}/gliner-2", json=body).json(),
            "gRPC Extract via Envoy": lambda: client.extract(SEED, schema_pb),
        }
        for fn in paths.values():  # warm up every path
            for _ in range(3):
                fn()
        times = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1000)
    finally:
        stop_stack(stack)
    busy_after = cpu_busy_fraction()

    ref_p50 = statistics.median(times["reference (gliner2, PyTorch, in-process)"])
    rows = []
    print(f"\nseed sentence, 4 labels, {args.rounds} interleaved rounds, precision {args.precision}")
    print(f"{'path':44} {'p50 ms':>8} {'p95 ms':>8} {'speed-up vs reference p50':>27}")
    for name, values in times.items():
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        rows.append({"path": name, "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "speedup": round(ref_p50 / p50, 2)})
        print(f"{name:44} {p50:8.2f} {p95:8.2f} {ref_p50 / p50:26.2f}x")
    overhead = statistics.median(times["REST /gliner-2 via Envoy"]) - statistics.median(times["runtime (OpenVINO, in-process)"])
    print(f"Envoy + gRPC overhead over the in-process runtime (p50): {overhead:.2f} ms")
    print(f"machine busy (other load) before/after: {busy_before:.0%} / {busy_after:.0%}"
          + ("  <- noisy, discard" if max(busy_before, busy_after) > 0.25 else ""))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "overhead_ms": overhead,
                                         "busy": [busy_before, busy_after]}, indent=2))


if __name__ == "__main__":
    main()
