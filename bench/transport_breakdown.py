"""Where a request's time goes outside the model: transport, handler, history, Envoy.

Starts the real ``gliner2-serve`` on the tiny checkpoint (model time a few ms)
and, from a client process that runs no model of its own (OpenVINO threads
spinning in the client would slow the server on 2 cores), measures in paired
rounds:

- ``ListModels`` direct to the gRPC server: the grpcio round trip alone;
- ``Extract`` direct to the gRPC server, with the server's own model time
  (``latency_ms``) and with ``privacy_mode`` (history row without text);
- ``Extract`` through Envoy (native gRPC passthrough);
- ``POST /v1/extract`` and ``POST /gliner-2`` through Envoy (transcoding, Lua);

and before the stack starts, in a child process of its own (so that no
OpenVINO threads stay in the client), the same request in process: the model's
``batch_extract`` alone, through the engine (batcher), and through the engine
with the durable history write. Each route's p50 is then also given over the
in-process runtime (``batch_extract``): the transport overhead the issue
tracker's targets speak of.

    .venv/bin/python bench/transport_breakdown.py [--rounds 300]
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KEY,
    LABELS,
    ROOT,
    SEED,
    bench_checkpoint,
    cpu_busy_fraction,
    paired_rounds,
    recording_engine,
    write_report,
)


def in_process_ms(checkpoint: Path, cache: Path, rounds: int) -> dict[str, float]:
    """p50 ms of the seed request in process: the model alone, the engine, the engine with the history."""
    import tempfile

    from gliner_server.core.engine import FULL_OUTPUT, ExtractionRequest
    from gliner_server.core.recording import Provenance
    from gliner_server.core.schema import build_schema, to_library_schema

    with tempfile.TemporaryDirectory() as data:
        recording = recording_engine(checkpoint, cache, data)
        engine = recording.engine
        schema = build_schema(entities=[{"name": label} for label in LABELS])
        request = ExtractionRequest(texts=(SEED,), schema=schema, threshold=0.5, output=FULL_OUTPUT)
        model = engine.models.get("m").model
        model_schema = to_library_schema(schema, model)
        provenance = Provenance(route="bench", task="schema")
        calls = {"in-process model (batch_extract)": lambda: model.batch_extract([SEED], [model_schema]),
                 "in-process engine (batcher)": lambda: engine.run(request),
                 "in-process engine + history": lambda: recording.run(request, provenance)}
        times = paired_rounds(calls, rounds)
        recording.history.close()
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import grpc
    import requests
    from conftest import start_stack, stop_stack

    from gliner_client import build_schema
    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
    from gliner_server.envoy import free_port

    checkpoint = bench_checkpoint(args.cache, tiny=True)
    busy_before = cpu_busy_fraction()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        in_process = pool.apply(in_process_ms, (checkpoint, args.cache / "ov-cache", args.rounds))
    grpc_port = free_port()
    stack = start_stack(checkpoint, args.cache / "ov-cache", args.cache / "run-transport", "--api-key", KEY,
                        "--grpc-port", str(grpc_port), timeout=300)
    direct_channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    envoy_channel = grpc.insecure_channel(f"127.0.0.1:{stack.port}")
    try:
        direct, envoy = pb_grpc.GlinerServiceStub(direct_channel), pb_grpc.GlinerServiceStub(envoy_channel)
        metadata = (("x-api-key", KEY),)
        schema = build_schema(entities=LABELS)
        extract = pb.ExtractRequest(text=SEED, schema=schema)
        private = pb.ExtractRequest(text=SEED, schema=schema, privacy_mode=True)
        session = requests.Session()
        session.headers["X-API-Key"] = KEY
        typed_body = {"text": SEED, "schema": {"entities": [{"name": label} for label in LABELS]}}
        model_ms: list[float] = []

        def timed_extract(stub, request):
            model_ms.append(stub.Extract(request, metadata=metadata, timeout=30).latency_ms)

        calls = {
            "grpc ListModels (direct)": lambda: direct.ListModels(pb.ListModelsRequest(), metadata=metadata,
                                                                  timeout=30),
            "grpc Extract (direct)": lambda: timed_extract(direct, extract),
            "grpc Extract privacy (direct)": lambda: timed_extract(direct, private),
            "grpc Extract (Envoy)": lambda: timed_extract(envoy, extract),
            "REST /v1/extract (Envoy)": lambda: session.post(f"{stack.base_url}/v1/extract", json=typed_body,
                                                             timeout=30).raise_for_status(),
            "REST /gliner-2 (Envoy)": lambda: session.post(f"{stack.base_url}/gliner-2",
                                                           json={"text": SEED, "labels": LABELS},
                                                           timeout=30).raise_for_status(),
        }
        times = paired_rounds(calls, args.rounds)
        del model_ms[:-3 * args.rounds]  # keep the timed rounds' (three Extract calls a round)
    finally:
        direct_channel.close()
        envoy_channel.close()
        stop_stack(stack)
    report = {
        "rounds": args.rounds,
        "in_process_p50_ms": in_process,
        "p50_ms": {name: round(statistics.median(v), 3) for name, v in times.items()},
        "server_model_ms_p50": round(statistics.median(model_ms), 3),
        "machine_busy": {"before": busy_before, "after": cpu_busy_fraction()},
    }
    base = times["grpc Extract (direct)"]
    report["paired_median_over_direct_extract_ms"] = {
        name: round(statistics.median(a - b for a, b in zip(v, base)), 3)
        for name, v in times.items() if name not in ("grpc Extract (direct)", "grpc ListModels (direct)")}
    alone = in_process["in-process model (batch_extract)"]
    report["p50_over_in_process_ms"] = {name: round(p50 - alone, 3) for name, p50 in report["p50_ms"].items()
                                        if name != "grpc ListModels (direct)"}
    print(f"tiny model, {args.rounds} paired rounds; the server's model time p50 {report['server_model_ms_p50']} ms")
    for name, p50 in in_process.items():
        print(f"  {name:32} p50 {p50:7.2f} ms   {p50 - alone:+.2f} ms over the model alone")
    for name, p50 in report["p50_ms"].items():
        extra = report["paired_median_over_direct_extract_ms"].get(name)
        over = report["p50_over_in_process_ms"].get(name)
        print(f"  {name:32} p50 {p50:7.2f} ms" + (f"   {extra:+.2f} ms vs direct Extract" if extra is not None else "")
              + (f"   {over:+.2f} ms over the in-process model" if over is not None else ""))
    busy = report["machine_busy"]
    print(f"machine busy from other load, before/after: {busy['before']:.0%} / {busy['after']:.0%}")
    write_report(report, args.out, "transport-breakdown")
    return report


if __name__ == "__main__":
    main()
