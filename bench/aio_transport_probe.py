"""Would an asyncio gRPC server (``grpc.aio``) take the transport overhead under 2 ms? A bound, measured.

Serves the seed request's ``Extract`` over the same in-process stack (tiny
model, lean runtime, engine with batcher, durable SQLite history) with a
*minimal* handler: proto schema in, ``RecordingEngine.run``, proto result out,
none of the service's request id, auth, admission, metrics or access log. The
handler runs under

- grpcio's thread-pool server (``grpc.server``), as the service does, and
- ``grpc.aio``, with the model and history work on a thread (``asyncio.to_thread``)
  off the event loop, as the issue tracker suggests,

and the service's own ``GrpcServer`` over the same engine (its full handler:
interceptors, request id, admission, metrics, access log),

each in a spawned child (so that the client, this process, runs no model and
no server). Both are compared with the same call in process. Because the
handler does less than the service's, the two figures are lower bounds of what
each server kind could reach; their difference is what the rewrite could win.

    .venv/bin/python bench/aio_transport_probe.py [--rounds 300]
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KEY,
    LABELS,
    ROOT,
    SEED,
    bench_checkpoint,
    cpu_busy_fraction,
    cpu_flags,
    median_ms,
    recording_engine,
    write_report,
)


def _extract(recording, request):
    """The minimal handler's work: the proto request through the core and back."""
    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_server.core.engine import FULL_OUTPUT, ExtractionRequest
    from gliner_server.core.recording import Provenance
    from gliner_server.grpc_api import convert

    schema = convert.schema_from_proto(request.schema)
    recorded = recording.run(ExtractionRequest(texts=(request.text,), schema=schema, threshold=0.5,
                                               output=FULL_OUTPUT), Provenance(route="probe", task="schema"))
    outcome = recorded.outcome
    return pb.ExtractResponse(result=convert.result_to_proto(outcome.typed(schema)[0]), model_id=outcome.model_id,
                              latency_ms=outcome.latency_ms, inference_id=recorded.inference_id or "")


def serve(kind: str, checkpoint: Path, cache: Path, port_queue, stop_event) -> None:
    """In a child: the minimal Extract under ``kind`` ("threads" or "aio") until ``stop_event`` is set."""
    import grpc

    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc

    data = tempfile.mkdtemp()
    recording = recording_engine(checkpoint, cache, data)

    if kind == "service":   # the service's own server: interceptors, request ids, admission, metrics, access log
        import logging

        from gliner_server.cli import api_keys
        from gliner_server.config import ServiceConfig

        logging.basicConfig(level="INFO", filename=f"{data}/serve.log",
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from gliner_server.grpc_api.server import GrpcServer

        server = GrpcServer(recording, address="127.0.0.1:0", keys=api_keys(ServiceConfig(), [KEY]))
        server.start()
        server.mark_serving()
        port_queue.put(server.port)
        stop_event.wait()
        server.stop(0)
        return

    if kind == "threads":
        from concurrent import futures

        class Threads(pb_grpc.GlinerServiceServicer):
            def Extract(self, request, context):
                return _extract(recording, request)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb_grpc.add_GlinerServiceServicer_to_server(Threads(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        port_queue.put(port)
        stop_event.wait()
        server.stop(0)
        return

    import asyncio

    class Aio(pb_grpc.GlinerServiceServicer):
        async def Extract(self, request, context):
            return await asyncio.to_thread(_extract, recording, request)

    async def main():
        server = grpc.aio.server()
        pb_grpc.add_GlinerServiceServicer_to_server(Aio(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await asyncio.to_thread(stop_event.wait)
        await server.stop(0)

    asyncio.run(main())


def in_process(checkpoint: Path, cache: Path, rounds: int) -> float:
    """p50 ms of the same handler work called directly (in a spawned child, like the servers)."""
    from gliner_client import build_schema
    from gliner_client.v1 import gliner_service_pb2 as pb

    recording = recording_engine(checkpoint, cache, tempfile.mkdtemp())
    request = pb.ExtractRequest(text=SEED, schema=build_schema(entities=LABELS))
    return median_ms(lambda: _extract(recording, request), rounds, warmup=30)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each server kind")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import grpc

    from gliner_client import build_schema
    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc

    checkpoint = bench_checkpoint(args.cache, tiny=True)
    cache = args.cache / "ov-cache"
    report = {"cpu": cpu_flags(), "busy_before": cpu_busy_fraction(), "rounds": args.rounds}
    print(f"CPU: {report['cpu']}; machine busy {report['busy_before']:.0%} before", flush=True)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        report["in_process_ms"] = round(pool.apply(in_process, (checkpoint, cache, args.rounds)), 3)
    request = pb.ExtractRequest(text=SEED, schema=build_schema(entities=LABELS))
    figures: dict[str, list[float]] = {"threads": [], "aio": [], "service": []}
    for _ in range(args.repeats):
        for kind in figures:
            ports, stop = context.Queue(), context.Event()
            child = context.Process(target=serve, args=(kind, checkpoint, cache, ports, stop))
            child.start()
            try:
                port = ports.get(timeout=300)
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = pb_grpc.GlinerServiceStub(channel)
                    call = functools.partial(stub.Extract, request, timeout=30, metadata=(("x-api-key", KEY),))
                    figures[kind].append(median_ms(call, args.rounds, warmup=30))
            finally:
                stop.set()
                child.join(30)
                if child.is_alive():
                    child.kill()
    report["p50_ms"] = {kind: round(statistics.median(values), 3) for kind, values in figures.items()}
    report["runs_ms"] = {kind: [round(v, 3) for v in values] for kind, values in figures.items()}
    report["busy_after"] = cpu_busy_fraction()
    base = report["in_process_ms"]
    print(f"tiny model, minimal Extract handler (proto -> engine with durable history -> proto), p50 of "
          f"{args.rounds} calls, median of {args.repeats} alternating runs:")
    print(f"  in process                        {base:6.2f} ms")
    for kind, label in (("threads", "grpc.server (thread pool)"), ("aio", "grpc.aio (work on a thread)"),
                        ("service", "the service's GrpcServer")):
        p50 = report["p50_ms"][kind]
        print(f"  {label:33} {p50:6.2f} ms   +{p50 - base:.2f} ms over in process   runs {report['runs_ms'][kind]}")
    print(f"machine busy {report['busy_after']:.0%} after")
    write_report(report, args.out, "aio-transport-probe")
    return report


if __name__ == "__main__":
    main()
