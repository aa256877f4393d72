"""The service benchmark: this stack against the gliner2 library in-process, in one interleaved run.

For every precision mode it starts `gliner2-serve` on a random checkpoint with
deberta-v3-base's exact shapes (built once, cached under --cache) and measures,
round by round and interleaved:

* reference: gliner2's PyTorch ``extract`` in this process, ``torch.set_num_threads(2)``;
* runtime: this project's OpenVINO runtime in this process (the core engine);
* runtime+history: the same plus the durable history write every served request makes;
* grpc: ``GlinerService/Gliner2`` through Envoy's port;
* rest: ``POST /gliner-2`` through Envoy;

over these inputs: the seed sentence with 4 labels; texts of about 64, 128, 256
and 512 tokens with 4 labels; 16 and 64 labels; a combined schema (entities,
classification, structure, relations). Then throughput with 1, 4 and 16
concurrent clients on the seed input (REST and gRPC), against the reference's
sequential rate. Then it restarts the stack once more and times start-up to
SERVING with the IR cached. It prints a table (p50/p95/p99, throughput, ratio
to the reference p50) and a summary against the targets of issue 4, and writes
the same as JSON, with how busy the machine was before and after (other load; a
run over 25 % should be discarded).

Random weights: timings only, never accuracy.

    .venv/bin/python bench/run.py                       # full run (tens of minutes)
    .venv/bin/python bench/run.py --smoke --out x.json  # seconds: tiny model, 2 rounds (CI)
    .venv/bin/python bench/run.py --precisions bf16 --serve-args="--batch-wait-ms 5"
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import (
    KEY,
    LABELS,
    PARAGRAPH,
    ROOT,
    SEED,
    bench_checkpoint,
    concurrent_rate,
    cpu_busy_fraction,
    paired_rounds,
    server_start_figures,
    summary,
    text_of_tokens,
    write_report,
)

from gliner_server.runtime.openvino_encoder import PRECISIONS

MANY_LABELS = [f"type_{i}" for i in range(64)]
COMBINED = {"entities": ["person", "company", "city"],
            "classifications": {"tone": ["formal", "casual"]},
            "structures": {"deal": ["value::str::Amount", "parties::list::Companies"]},
            "relations": ["works_for", "located_in"]}


def cases(tokenizer, smoke: bool) -> list[dict]:
    """Name, text and schema (as a /gliner-2 body) of every input case."""
    lengths = (64,) if smoke else (64, 128, 256, 512)
    out = [{"case": "seed, 4 labels", "body": {"text": SEED, "labels": LABELS}}]
    out += [{"case": f"{n} tokens, 4 labels", "body": {"text": text_of_tokens(tokenizer, n), "labels": LABELS}}
            for n in lengths]
    base = text_of_tokens(tokenizer, 64)
    out += [{"case": f"64 tokens, {k} labels", "body": {"text": base, "labels": MANY_LABELS[:k]}}
            for k in ((16,) if smoke else (16, 64))]
    out.append({"case": "combined schema", "body": {"task": "schema", "text": PARAGRAPH.strip(), "schema": COMBINED}})
    return out


def reference_call(model, body):
    """The library's own call for a /gliner-2 body, as a user of gliner2 would write it."""
    if body.get("task") == "schema":
        s = body["schema"]
        schema = model.create_schema().entities(s["entities"]).relations(s["relations"])
        for task, labels in s["classifications"].items():
            schema.classification(task, labels)
        for name, fields in s["structures"].items():
            builder = schema.structure(name)
            for spec in fields:
                field, dtype, _, description = model._parse_field_spec(spec)
                builder.field(field, dtype=dtype, description=description)
        return lambda: model.extract(body["text"], schema)
    return lambda: model.extract_entities(body["text"], body["labels"])


def measure_precision(precision, checkpoint, args, reference, tokenizer, report):
    import grpc
    import requests
    from conftest import start_stack, stop_stack
    from google.api import httpbody_pb2

    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
    from gliner_server.core.engine import InferenceEngine
    from gliner_server.core.recording import Provenance, RecordingEngine
    from gliner_server.dialects import gliner2_api
    from gliner_server.history import HistoryStore
    from gliner_server.runtime.loaded_model import load_model

    serve = [args.cache / "ov-cache", args.cache / f"run-{precision}", "--api-key", KEY, "--precision", precision,
             *args.serve_args.split()]
    started = time.perf_counter()
    stack = start_stack(checkpoint, *serve, timeout=900)
    report["startup_s"][precision] = round(time.perf_counter() - started, 2)
    history = HistoryStore.open(f"sqlite:///{args.cache / f'run-{precision}' / 'bench-history.db'}")
    try:
        runtime = InferenceEngine.of(load_model(str(checkpoint), precision=precision,
                                                cache_dir=args.cache / "ov-cache"))
        recording = RecordingEngine(runtime, history)
        session = requests.Session()
        session.headers["X-API-Key"] = KEY
        channel = grpc.insecure_channel(f"127.0.0.1:{stack.port}")
        stub = pb_grpc.GlinerServiceStub(channel)
        metadata = (("x-api-key", KEY),)

        def paths(body):
            data = json.dumps(body).encode()
            request = pb.Gliner2Request(body=httpbody_pb2.HttpBody(content_type="application/json", data=data))
            parsed = gliner2_api.parse(body).request
            provenance = Provenance(route="/gliner-2", task="bench")
            return {
                "runtime": lambda: runtime.run(parsed),
                "runtime+history": lambda: recording.run(parsed, provenance),
                "grpc": lambda: stub.Gliner2(request, metadata=metadata, timeout=120),
                "rest": lambda: session.post(f"{stack.base_url}/gliner-2", data=data, timeout=120).raise_for_status(),
            }

        for case in cases(tokenizer, args.smoke):
            calls = {"reference": reference_call(reference, case["body"]), **paths(case["body"])}
            for call in calls.values():  # warm-up
                call()
            times = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    t = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - t) * 1000)
            ref_p50 = statistics.median(times["reference"])
            print(f"  {precision} {case['case']}: " + ", ".join(
                f"{name} {statistics.median(v):.1f} ms" for name, v in times.items()), flush=True)
            for name, values in times.items():
                row = {"precision": precision, "case": case["case"], "path": name, "clients": 1, **summary(values)}
                row["throughput_rps"] = round(1000 / statistics.median(values), 2)
                row["speedup_vs_reference_p50"] = round(ref_p50 / row["p50_ms"], 2)
                report["rows"].append(row)

        seed = cases(tokenizer, True)[0]["body"]
        reference_seed = reference_call(reference, seed)
        for clients in args.clients:
            for name in ("grpc", "rest"):
                # The machine's speed drifts: the reference's sequential rate is measured
                # right before and right after each level, and the level is compared with their mean.
                before, _, _ = concurrent_rate(reference_seed, 1, args.seconds / 2)
                rate, latencies, errors = concurrent_rate(paths(seed)[name], clients, args.seconds)
                after, _, _ = concurrent_rate(reference_seed, 1, args.seconds / 2)
                ref_rate = (before + after) / 2
                row = {"precision": precision, "case": "seed, 4 labels", "path": name, "clients": clients,
                       **summary(latencies or [0.0]), "throughput_rps": round(rate, 2), "errors": errors,
                       "reference_sequential_rps": round(ref_rate, 2),
                       "throughput_vs_reference_sequential": round(rate / ref_rate, 2)}
                report["rows"].append(row)
                print(f"  {precision} {name} x{clients}: {rate:.2f} req/s, reference sequential {before:.2f} / "
                      f"{after:.2f} req/s before / after", flush=True)
        channel.close()
    finally:
        stop_stack(stack)
        history.close()
    started = time.perf_counter()  # again, now that the IR is surely cached
    restarted = start_stack(checkpoint, *serve, timeout=300)
    report["startup_cached_s"][precision] = round(time.perf_counter() - started, 2)
    stop_stack(restarted)
    report["startup_cached_server"][precision] = server_start_figures(restarted.log_path.read_text(errors="replace"))


def measure_overhead(args, report) -> None:
    """What the transport adds to a request: in-process runtime vs gRPC and REST through Envoy.

    On the tiny checkpoint, whose model time is a few ms, so per-call jitter of
    the model does not drown the transport's cost. Paths run back to back in
    each round; the figures are medians of each path and medians of the
    per-round differences to the in-process runtime.
    """
    import grpc
    import requests
    from conftest import start_stack, stop_stack
    from google.api import httpbody_pb2

    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
    from gliner_server.core.engine import InferenceEngine
    from gliner_server.core.recording import Provenance, RecordingEngine
    from gliner_server.dialects import gliner2_api
    from gliner_server.history import HistoryStore
    from gliner_server.runtime.loaded_model import load_model

    checkpoint = bench_checkpoint(args.cache, tiny=True)
    run_dir = args.cache / "run-overhead"
    stack = start_stack(checkpoint, args.cache / "ov-cache", run_dir, "--api-key", KEY, timeout=300)
    history = HistoryStore.open(f"sqlite:///{run_dir / 'bench-history.db'}")
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.port}")
    try:
        runtime = InferenceEngine.of(load_model(str(checkpoint), precision="f32", cache_dir=args.cache / "ov-cache"))
        recording = RecordingEngine(runtime, history)
        body = {"text": SEED, "labels": LABELS}
        data = json.dumps(body).encode()
        parsed = gliner2_api.parse(body).request
        provenance = Provenance(route="/gliner-2", task="bench")
        request = pb.Gliner2Request(body=httpbody_pb2.HttpBody(content_type="application/json", data=data))
        stub = pb_grpc.GlinerServiceStub(channel)
        session = requests.Session()
        session.headers["X-API-Key"] = KEY
        calls = {
            "runtime": lambda: runtime.run(parsed),
            "runtime+history": lambda: recording.run(parsed, provenance),
            "grpc": lambda: stub.Gliner2(request, metadata=(("x-api-key", KEY),), timeout=30),
            "rest": lambda: session.post(f"{stack.base_url}/gliner-2", data=data, timeout=30).raise_for_status(),
        }
        times = paired_rounds(calls, args.overhead_rounds)
        base = times["runtime"]
        report["overhead"] = {
            "checkpoint": str(checkpoint), "rounds": args.overhead_rounds,
            "p50_ms": {name: round(statistics.median(v), 3) for name, v in times.items()},
            "paired_median_over_runtime_ms": {
                name: round(statistics.median(a - b for a, b in zip(v, base)), 3)
                for name, v in times.items() if name != "runtime"},
        }
    finally:
        channel.close()
        stop_stack(stack)
        history.close()


def print_table(report) -> None:
    header = (f"{'precision':9} {'case':22} {'path':9} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'req/s':>8} {'vs ref':>7}")
    print(header)
    print("-" * len(header))
    for r in report["rows"]:
        ratio = r.get("speedup_vs_reference_p50", r.get("throughput_vs_reference_sequential"))
        print(f"{r['precision']:9} {r['case']:22} {r['path']:9} {r['clients']:>7} {r['p50_ms']:8.2f} "
              f"{r['p95_ms']:8.2f} {r['p99_ms']:8.2f} {r['throughput_rps']:8.2f} {ratio:6.2f}x")
    print(f"start-up to SERVING (s, first start, may include an IR conversion): {report['startup_s']}")
    print(f"start-up to SERVING (s, IR cached): {report['startup_cached_s']}; the server's own figures "
          f"(from loading the model / from process start): {report['startup_cached_server']}")
    if report.get("overhead"):
        o = report["overhead"]
        print(f"transport overhead on the tiny model, {o['rounds']} paired rounds: p50 {o['p50_ms']} ms; "
              f"median per-round difference to the in-process runtime: {o['paired_median_over_runtime_ms']} ms")
    print()
    for line in target_summary(report):
        print(line)
    busy = report["machine_busy"]
    print(f"machine busy from other load, before/after: {busy['before']:.0%} / {busy['after']:.0%}"
          + ("  <- noisy run, discard" if report["noisy"] else ""))


def target_summary(report) -> list[str]:
    """Issue 4's targets, per precision, from this run's rows."""
    def p50(precision, path, case="seed, 4 labels", clients=1):
        rows = [r for r in report["rows"] if (r["precision"], r["path"], r["case"], r["clients"])
                == (precision, path, case, clients)]
        return rows[0] if rows else None

    lines = ["targets (seed sentence, ratios from this run):"]
    overhead = report.get("overhead", {}).get("paired_median_over_runtime_ms")
    if overhead:
        lines.append(f"  transport (tiny model, paired rounds): gRPC+Envoy {overhead['grpc']:+.2f} ms, "
                     f"REST+Envoy {overhead['rest']:+.2f} ms over the in-process runtime, of which the durable "
                     f"history write is {overhead['runtime+history']:+.2f} ms (goal: at most 2 ms)")
    for precision in report["startup_s"]:
        rest, grpc_, runtime = (p50(precision, p) for p in ("rest", "grpc", "runtime"))
        busiest = max((r for r in report["rows"] if r["precision"] == precision and r["clients"] > 1
                       and r["path"] in ("rest", "grpc")), key=lambda r: r["clients"], default=None)
        best = max((r for r in report["rows"] if r["precision"] == precision and busiest is not None
                    and r["clients"] == busiest["clients"] and r["path"] in ("rest", "grpc")),
                   key=lambda r: r["throughput_rps"], default=None)
        server = report["startup_cached_server"].get(precision, {})
        lines.append(
            f"  {precision}: REST p50 {rest['speedup_vs_reference_p50']:.2f}x (goal 6x); "
            + (f"{best['clients']} clients {best['throughput_vs_reference_sequential']:.2f}x the reference's "
               f"sequential rate via {best['path']} (goal 10x); " if best else "")
            + f"gRPC p50 {grpc_['p50_ms'] - runtime['p50_ms']:+.2f} ms over the runtime on this model; "
            f"cached start {report['startup_cached_s'].get(precision, float('nan')):.1f} s spawn to SERVING, "
            f"{server.get('cached_ir_to_serving_s', float('nan')):.1f} s of it from the cached IR to SERVING, "
            f"{server.get('library_import_s', float('nan')):.1f} s importing gliner2 (goal 3 s)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 rounds, short concurrency (CI)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 20)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels")
    parser.add_argument("--seconds", type=float, default=None, help="duration of each concurrency level")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default bench/results/run-TIME.json)")
    parser.add_argument("--serve-args", default="", help="extra gliner2-serve flags, e.g. \"--batch-wait-ms 5\"")
    parser.add_argument("--overhead-rounds", type=int, default=None,
                        help="paired rounds of the transport-overhead measurement (default 300; 0 skips it)")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.smoke else 20)
    args.seconds = args.seconds or (1.0 if args.smoke else 10.0)
    if args.overhead_rounds is None:
        args.overhead_rounds = 20 if args.smoke else 300
    args.clients = [int(c) for c in args.clients.split(",")]
    precisions = [p for p in args.precisions.split(",") if p]
    if args.smoke:
        args.clients = args.clients[:2]

    import torch
    from transformers import AutoTokenizer

    from gliner_server.runtime.loaded_model import load_model

    torch.set_num_threads(2)
    checkpoint = bench_checkpoint(args.cache, tiny=args.smoke)
    reference = load_model(str(checkpoint), precision="torch", cache_dir=args.cache / "ov-cache").model
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    report = {"checkpoint": str(checkpoint), "smoke": args.smoke, "rounds": args.rounds, "rows": [],
              "startup_s": {}, "startup_cached_s": {}, "startup_cached_server": {}, "serve_args": args.serve_args,
              "machine_busy": {"before": cpu_busy_fraction()}}
    if args.overhead_rounds:
        measure_overhead(args, report)
    for precision in precisions:
        measure_precision(precision, checkpoint, args, reference, tokenizer, report)
    report["machine_busy"]["after"] = cpu_busy_fraction()
    report["noisy"] = max(report["machine_busy"].values()) > 0.25
    report["targets"] = target_summary(report)
    print_table(report)
    write_report(report, args.out, "run")


if __name__ == "__main__":
    main()
