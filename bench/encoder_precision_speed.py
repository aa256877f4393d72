"""Encoder-only latency of the precision modes, side by side (OpenVINO, no heads, no decoding).

Compiles the cached encoder IRs of a checkpoint (f32 / bf16 share the fp32 IR;
int8 = weight-only; int8-ptq = NNCF post-training quantization) and times
``infer`` in interleaved rounds on: batch 1 at 32 and 128 tokens, batch 16 at
64 and 128 tokens (fixed shapes, steady state), and batch 1 at a new length
every call (16-256 tokens: how requests arrive, and where per-shape preparation
shows). ``int8-ptq`` runs the ops NNCF leaves unquantised in bf16, as served;
``int8-ptq/f32-rest`` is the same IR with those ops in f32 (a variant, not a
served mode: the measurement that decided the served one).

Run ``bench/precision_agreement.py`` first (it builds the IRs under --cache).

    .venv/bin/python bench/encoder_precision_speed.py [--checkpoint DIR] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, cpu_busy_fraction, write_report

FIXED = [(1, 32), (1, 128), (16, 64), (16, 128)]
VARIANTS = {"f32": ("f32", "f32"), "bf16": ("f32", "bf16"), "int8": ("int8", "f32"),
            "int8-ptq": ("int8-ptq", "bf16"), "int8-ptq/f32-rest": ("int8-ptq", "f32")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "var" / "bench" / "deberta-v3-base-shape-agreement")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench" / "ov-cache")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import openvino as ov

    from gliner_server.runtime.checkpoint import content_digest
    from gliner_server.runtime.openvino_encoder import ir_weights

    digest = content_digest(args.checkpoint, args.cache)
    version = ov.get_version().split("-")[0]
    core = ov.Core()
    compiled = {}
    for name, (precision, hint) in VARIANTS.items():
        ir = args.cache / "ir" / f"{digest}-{ir_weights(precision)}-ov{version}" / "encoder.xml"
        if not ir.is_file():
            print(f"skipping {name}: no IR at {ir}")
            continue
        compiled[name] = core.compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                            "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    rng = np.random.default_rng(0)

    def inputs(batch, length):
        return {"input_ids": rng.integers(1000, 30000, size=(batch, length)).astype(np.int64),
                "attention_mask": np.ones((batch, length), np.int64)}

    fixed = {shape: inputs(*shape) for shape in FIXED}
    for request in compiled.values():
        for x in fixed.values():
            request.infer(x)
    busy_before = cpu_busy_fraction()
    times = {(n, s): [] for n in compiled for s in [*FIXED, "varying"]}
    for _ in range(args.rounds):
        for shape, x in fixed.items():
            for name, request in compiled.items():
                for _ in range(8 if shape[0] == 1 else 1):
                    t0 = time.perf_counter()
                    request.infer(x)
                    times[(name, shape)].append((time.perf_counter() - t0) * 1000)
        lengths = rng.integers(16, 257, size=12)  # new shapes this round; every mode sees the same ones
        for length in lengths:
            x = inputs(1, int(length))
            for name, request in compiled.items():
                t0 = time.perf_counter()
                request.infer(x)
                times[(name, "varying")].append((time.perf_counter() - t0) * 1000 / length * 100)
    report = {"checkpoint": str(args.checkpoint), "rounds": args.rounds,
              "machine_busy": {"before": busy_before, "after": cpu_busy_fraction()}, "median_ms": {}}
    columns = [*FIXED, "varying"]
    print(f"{'mode':19}" + "".join(f"{f'{s[0]}x{s[1]}' if s != 'varying' else '1xL per 100 tok':>17}"
                                   for s in columns))
    for name in compiled:
        row = {(f"{s[0]}x{s[1]}" if s != "varying" else "1xL_per_100_tokens"):
               round(statistics.median(times[(name, s)]), 2) for s in columns}
        report["median_ms"][name] = row
        print(f"{name:19}" + "".join(f"{v:>17}" for v in row.values()))
    base = report["median_ms"].get("bf16")
    if base:
        for name, row in report["median_ms"].items():
            print(f"{name:19}" + "".join(f"{base[k] / v:>16.2f}x" for k, v in row.items()) + "   (speed-up vs bf16)")
    busy = report["machine_busy"]
    print(f"machine busy before/after: {busy['before']:.0%} / {busy['after']:.0%}")
    write_report(report, args.out, "encoder-precision-speed")
    return report


if __name__ == "__main__":
    main()
