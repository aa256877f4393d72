"""The lean runtime (a bundle: OpenVINO, tokenizers, numpy) against the library paths, side by side in one run.

On the random deberta-v3-base-shaped checkpoint (cached under ``--cache``) and its
bundle, this prints, with the CPU's flags and the machine's load:

1. **In-process latency**, median of ``--runs`` interleaved rounds after warm-up, for each case (the
   seed sentence with 4 labels, a 128-token text, 16 labels, 64 labels, 16 texts
   in one call): the gliner2 library in PyTorch (the reference), the library path
   with the OpenVINO encoder and heads (``--runtime library``), the lean
   runtime, and a peer users pick: ONNX Runtime on a monolithic ONNX export of
   the model (``bench/peer_onnx.py``; needs the ``bench`` extra), with ratios.
2. **Where the lean runtime's time goes**, per stage (preprocessing, encoder,
   heads, decoding) and the share outside the encoder call.
3. **A roofline line** per case: the encoder's floating-point operations (its
   matrix multiplications, counted from the shapes) divided by this machine's
   measured OpenVINO f32 matrix-multiply rate at that size, beside the measured
   encoder time. Two rates: one layer's feed-forward shape (``rows x 768 x
   3072``, whose 9 MB of weights stay in the CPU's caches), and the same rows
   against all twelve layers' weights at once (``rows x 768 x 110592``, 340 MB:
   streamed from memory on every pass, as the encoder's are), which is the
   limit that binds at small token counts.
4. **Start-up, memory and concurrency of a serving process** (``--serve``):
   spawn to SERVING and resident memory after 20 requests, ``gliner2-serve`` from
   ``.venv`` on the checkpoint with ``--runtime library`` (cached IR) and from
   ``.venv-lean`` on the bundle; then, on each, the seed sentence over native
   gRPC (direct to the server) from 1 and from 16 client threads for
   ``--seconds`` each: requests per second and the ratio of the two.

    .venv/bin/python bench/lean_runtime.py [--runs 20] [--serve | --serve-only] [--seconds 20]
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KEY,
    LABELS,
    ROOT,
    SEED,
    bench_checkpoint,
    concurrent_rate,
    cpu_busy_fraction,
    cpu_flags,
    median_ms,
    paired_rounds,
    server_start_figures,
    text_of_tokens,
    write_report,
)

LABELS_16 = LABELS + ["date", "event", "money", "organization", "city", "country", "title", "technology",
                      "brand", "model", "feature", "time"]
LABELS_64 = LABELS_16 + [f"type {i}" for i in range(48)]
# Texts of 2, 4 and 8 seed sentences (up to about 450 tokens), sent after the seed requests: resident memory
# is read again after them, since the runtime's buffers grow with the longest text seen.
LONG_TEXT_REPEATS = (2, 4, 8)
# Between a server's stop and the next start: the machine settles (the stopped server's memory freed, its Envoy
# gone). Without it, the first lean start after the library runtime's took 0.5-0.6 s longer in every run.
START_PAUSE_S = 3.0


def matmul_gflops(rows: int, inner: int, cols: int, runs: int = 20) -> float:
    """OpenVINO's f32 rate on one (rows x inner) @ (inner x cols) multiplication, GFLOP/s."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([rows, inner], ov.Type.f32)
    w = ops.constant(np.random.default_rng(0).standard_normal((inner, cols)).astype(np.float32))
    compiled = ov.Core().compile_model(ov.Model([ops.matmul(x, w, False, False)], [x]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    data = np.random.default_rng(1).standard_normal((rows, inner)).astype(np.float32)
    seconds = median_ms(lambda: request.infer([data]), runs) / 1000
    return 2 * rows * inner * cols / seconds / 1e9


# All twelve layers' projection and feed-forward weights as one (768 x N) matrix: 12 x (4 x 768 + 2 x 3072).
ENCODER_WEIGHT_COLUMNS = 12 * (4 * 768 + 2 * 3072)


def encoder_flops(tokens: int, hidden: int = 768, layers: int = 12, intermediate: int = 3072) -> float:
    """Matrix-multiply FLOPs of a DeBERTa-v3 encoder pass over ``tokens`` tokens (batch 1).

    Per layer: the Q, K, V and output projections (4 T H^2), the feed-forward
    (2 T H I), and attention: content-to-content, content-to-position and
    position-to-content scores (3 T^2 H, the relative positions windowed to T)
    plus the weighted sum (T^2 H); each multiply-add is 2 FLOPs.
    """
    per_layer = 4 * tokens * hidden ** 2 + 2 * tokens * hidden * intermediate + 4 * tokens ** 2 * hidden
    return 2.0 * per_layer * layers


def in_process(args, checkpoint: Path, cache: Path) -> dict:
    from gliner_server.core.schema import build_schema, to_library_schema
    from gliner_server.lean.model import StageTimes
    from gliner_server.runtime.loaded_model import load_model

    reference = load_model(str(checkpoint), precision="torch", cache_dir=cache)
    library = load_model(str(checkpoint), precision="f32", cache_dir=cache, runtime="library")
    lean = load_model(str(checkpoint), precision="f32", cache_dir=cache)
    assert lean.runtime == "lean" and library.runtime == "library"
    from peer_onnx import OnnxPeer

    peer = OnnxPeer.build(checkpoint, cache.parent)
    text_128 = _text_of_tokens(lean.model.preprocessor, 128)
    cases = {
        "seed sentence, 4 labels": ([SEED], LABELS),
        "128-token text, 4 labels": ([text_128], LABELS),
        "seed sentence, 16 labels": ([SEED], LABELS_16),
        "seed sentence, 64 labels": ([SEED], LABELS_64),
        "16 texts in one call, 4 labels": ([SEED] * 8 + [text_128] * 8, LABELS),
    }
    rate_cache: dict = {}
    results = {}
    for name, (texts, labels) in cases.items():
        schema = build_schema(entities=[{"name": label} for label in labels])
        calls = {}
        for runtime, loaded in (("lean", lean), ("library+openvino", library), ("pytorch", reference)):
            model_schema = to_library_schema(schema, loaded.model)
            calls[runtime] = functools.partial(loaded.model.batch_extract, list(texts),
                                               [model_schema] * len(texts), batch_size=16, threshold=0.5)
        calls["onnxruntime monolithic"] = functools.partial(peer.extract_entities, list(texts), labels)
        # Interleaved rounds, so that every runtime shares the machine's moods, with a pause before each call
        # so that none pays for the previous one's spinning threads (see common.paired_rounds).
        rounds = paired_rounds(calls, args.runs, warmup=3, pause_s=0.1)
        row = {runtime: statistics.median(times) for runtime, times in rounds.items()}
        lean_schema = to_library_schema(schema, lean.model)
        stage_runs = []
        for _ in range(max(3, args.runs // 2)):   # per-stage medians over calls of their own
            lean.model.batch_extract(list(texts), [lean_schema] * len(texts), batch_size=16, threshold=0.5)
            stage_runs.append(vars(lean.model.last_stage_times).copy())
        stages = StageTimes(**{k: statistics.median(run[k] for run in stage_runs) for k in stage_runs[0]})
        row["lean head calls ms"] = head_calls_ms(lean.model, list(texts), lean_schema, max(3, args.runs // 2))
        total = sum(vars(stages).values())
        tokens = max(lean.model.last_token_counts)
        key = (len(texts), tokens)
        if key not in rate_cache:
            rate_cache[key] = (matmul_gflops(len(texts) * tokens, 768, 3072),
                               matmul_gflops(len(texts) * tokens, 768, ENCODER_WEIGHT_COLUMNS, runs=5))
        cached_rate, streamed_rate = rate_cache[key]
        flops = encoder_flops(tokens) * len(texts)
        row.update({
            "tokens per text (max)": tokens,
            "lean stages ms": {k: round(v * 1000, 2) for k, v in vars(stages).items()},
            "lean outside encoder share": round(1 - stages.encoder / total, 3),
            "encoder GFLOP": round(flops / 1e9, 2),
            "f32 matmul GFLOP/s at this size": round(cached_rate, 1),
            "roofline encoder ms": round(flops / (cached_rate * 1e9) * 1000, 1),
            "f32 matmul GFLOP/s, weights streamed": round(streamed_rate, 1),
            "roofline encoder ms, weights streamed": round(flops / (streamed_rate * 1e9) * 1000, 1),
            "measured encoder ms": round(stages.encoder * 1000, 1),
        })
        row["lean vs pytorch"] = round(row["pytorch"] / row["lean"], 2)
        row["lean vs library+openvino"] = round(row["library+openvino"] / row["lean"], 2)
        row["lean vs onnxruntime"] = round(row["onnxruntime monolithic"] / row["lean"], 2)
        row["texts/s lean"] = round(len(texts) / row["lean"] * 1000, 1)
        row["texts/s onnxruntime"] = round(len(texts) / row["onnxruntime monolithic"] * 1000, 1)
        results[name] = row
        print(f"{name}: pytorch {row['pytorch']:.1f} ms, library+openvino {row['library+openvino']:.1f} ms, "
              f"onnxruntime {row['onnxruntime monolithic']:.1f} ms, lean {row['lean']:.1f} ms "
              f"({row['lean vs pytorch']}x the reference, {row['lean vs onnxruntime']}x onnxruntime, "
              f"{row['lean vs library+openvino']}x the library path; {row['texts/s lean']} vs "
              f"{row['texts/s onnxruntime']} texts/s); lean stages {row['lean stages ms']} "
              f"(outside the encoder {row['lean outside encoder share']:.1%}); encoder {row['measured encoder ms']} ms "
              f"vs roofline {row['roofline encoder ms']} ms ({row['encoder GFLOP']} GFLOP at "
              f"{row['f32 matmul GFLOP/s at this size']} GFLOP/s, weights in cache) and "
              f"{row['roofline encoder ms, weights streamed']} ms ({row['f32 matmul GFLOP/s, weights streamed']} "
              f"GFLOP/s, weights streamed from memory); lean head calls {row['lean head calls ms']}", flush=True)
    return results


def head_calls_ms(model, texts: list[str], schema, runs: int) -> dict:
    """Median milliseconds per OpenVINO call of the lean heads (each row function, the span-window graph)."""
    from gliner_server.lean.heads import RowFunction, SpanWindows

    times: dict[str, list[float]] = {}
    names = {id(f): name for name, f in model.heads.rows.items()}
    originals = {RowFunction: RowFunction.__call__, SpanWindows: SpanWindows.__call__}

    def timed(kind):
        def call(self, *args):
            started = time.perf_counter()
            try:
                return originals[kind](self, *args)
            finally:
                times.setdefault(names.get(id(self), "span windows"), []).append(
                    (time.perf_counter() - started) * 1000)
        return call

    try:
        for kind in originals:
            kind.__call__ = timed(kind)
        for _ in range(runs):
            model.batch_extract(texts, [schema] * len(texts), batch_size=16, threshold=0.5)
    finally:
        for kind, original in originals.items():
            kind.__call__ = original
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def _text_of_tokens(preprocessor, tokens: int) -> str:
    """``common.text_of_tokens`` with the lean preprocessor's token count."""
    class Counter:
        def tokenize(self, text):
            return [None] * preprocessor.count_tokens(text)
    return text_of_tokens(Counter(), tokens)


def concurrency(grpc_port: int, seconds: float) -> dict:
    """The seed sentence over native gRPC from 1 and from 16 client threads: requests/s and their ratio."""
    import grpc

    from gliner_client import build_schema
    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GlinerServiceStub(channel)
        request = pb.ExtractRequest(text=SEED, schema=build_schema(entities=LABELS))

        def call():
            stub.Extract(request, metadata=(("x-api-key", KEY),), timeout=60)

        out = {}
        for clients in (1, 16):
            rate, latencies, errors = concurrent_rate(call, clients, seconds)
            out[clients] = {"requests_per_s": round(rate, 2), "p50_ms": round(statistics.median(latencies), 1),
                            "errors": errors}
    out["16 vs 1"] = round(out[16]["requests_per_s"] / out[1]["requests_per_s"], 2)
    return out


def serving(checkpoint: Path, bundle: Path, cache: Path, run_dir: Path, seconds: float) -> dict:
    import requests
    from conftest import start_stack, stop_stack
    from helpers import rss_bytes

    from gliner_server.envoy import free_port

    out = {}
    for name, python, model, extra in (
            ("library runtime (.venv, cached IR)", sys.executable, checkpoint, ("--runtime", "library")),
            ("lean runtime (.venv-lean, bundle)", str(ROOT / ".venv-lean" / "bin" / "python"), bundle, ())):
        figures, rates = [], None
        for attempt in range(3):
            grpc_port = free_port()
            started = time.perf_counter()
            stack = start_stack(model, cache, run_dir / f"{name[:4]}-{attempt}", "--api-key", KEY,
                                "--no-train-worker", "--grpc-port", str(grpc_port), *extra, python=python,
                                timeout=300, poll_s=0.01)   # start_stack's default 0.2 s would add 0.1 s on average
            spawn = time.perf_counter() - started
            for _ in range(20):
                requests.post(stack.base_url + "/gliner-2", json={"text": SEED, "labels": LABELS},
                              headers={"X-API-Key": KEY}, timeout=60).raise_for_status()
            rss = rss_bytes(stack.process.pid)
            for repeat in LONG_TEXT_REPEATS:   # then longer texts: OpenVINO's buffers grow with the longest
                requests.post(stack.base_url + "/gliner-2", json={"text": SEED * repeat, "labels": LABELS},
                              headers={"X-API-Key": KEY}, timeout=120).raise_for_status()
            rss_long = rss_bytes(stack.process.pid)
            log = stack.log_path.read_text(errors="replace")
            if attempt == 0:
                rates = concurrency(grpc_port, seconds)
            stop_stack(stack)
            time.sleep(START_PAUSE_S)
            figures.append({"spawn_to_serving_s": round(spawn, 2), "rss_mb": round(rss / 2 ** 20),
                            "rss_after_long_texts_mb": round(rss_long / 2 ** 20),
                            **server_start_figures(log)})
        out[name] = {"runs": figures, "concurrency": rates,
                     "median spawn_to_serving_s": statistics.median(f["spawn_to_serving_s"] for f in figures),
                     "median rss_mb": statistics.median(f["rss_mb"] for f in figures),
                     "median rss_after_long_texts_mb": statistics.median(f["rss_after_long_texts_mb"]
                                                                         for f in figures)}
        print(f"{name}: spawn -> SERVING {out[name]['median spawn_to_serving_s']} s, resident "
              f"{out[name]['median rss_mb']} MB after 20 requests, {out[name]['median rss_after_long_texts_mb']} MB "
              f"after longer texts ({figures}); seed sentence over gRPC: "
              f"{rates[1]['requests_per_s']} requests/s from 1 client, {rates[16]['requests_per_s']} from 16 "
              f"({rates['16 vs 1']}x)", flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--serve", action="store_true",
                        help="also time serving processes (start-up, memory, 1 vs 16 clients)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level (--serve)")
    parser.add_argument("--serve-only", action="store_true", help="--serve without the in-process cases")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    checkpoint = bench_checkpoint(args.cache)
    cache = args.cache / "ov-cache"
    report = {"cpu": cpu_flags(), "busy_before": round(cpu_busy_fraction(), 3)}
    print(f"CPU: {report['cpu']}; machine busy {report['busy_before']:.0%} before", flush=True)
    if not args.serve_only:
        report["in_process"] = in_process(args, checkpoint, cache)
    if args.serve or args.serve_only:
        from gliner_server.runtime.bundles import find_bundle

        bundle, _ = find_bundle(str(checkpoint), "f32", cache)
        report["serving"] = serving(checkpoint, bundle.path, cache, args.cache / "lean-bench-runs", args.seconds)
        lib, lean = report["serving"].values()
        print(f"lean / library: start-up {lean['median spawn_to_serving_s'] / lib['median spawn_to_serving_s']:.2f}x, "
              f"resident memory {lean['median rss_mb'] / lib['median rss_mb']:.2f}x after seed requests, "
              f"{lean['median rss_after_long_texts_mb'] / lib['median rss_after_long_texts_mb']:.2f}x after "
              f"longer texts")
    report["busy_after"] = round(cpu_busy_fraction(), 3)
    print(f"machine busy {report['busy_after']:.0%} after")
    write_report(report, args.out, "lean_runtime")
    return report


if __name__ == "__main__":
    main()
