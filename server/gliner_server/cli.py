"""``gliner2-serve``: the gRPC server plus a supervised Envoy, in the foreground.

REST (/gliner-2, /v1/extract) and native gRPC share Envoy's ``--port``; the
gRPC server itself listens on an internal loopback port. SIGTERM or Ctrl-C
marks the server NOT_SERVING, stops Envoy, drains in-flight calls, and exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from .api_keys import ENV_KEY_FILE, ENV_KEYS, collect_api_keys
from .runtime.openvino_encoder import PRECISIONS

logger = logging.getLogger("gliner2-serve")

DEFAULT_MODEL = "fastino/gliner2-base-v1"
WARM_UP_TEXTS = ("Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday.",
                 " ".join(["The quarterly report from Contoso in Berlin lists revenue and staff."] * 8))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gliner2-serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.environ.get("GLINER2_MODEL", DEFAULT_MODEL),
                   help=f"hub id or checkpoint directory (default {DEFAULT_MODEL})")
    p.add_argument("--port", type=int, default=int(os.environ.get("GLINER2_PORT", 8080)),
                   help="Envoy port for REST and native gRPC (default 8080)")
    p.add_argument("--host", default="0.0.0.0", help="address Envoy listens on (default 0.0.0.0)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help=f"accepted API key (repeatable; also ${ENV_KEYS}); none = no authentication")
    p.add_argument("--api-key-file", metavar="FILE",
                   help=f"file with one API key per line (also ${ENV_KEY_FILE})")
    p.add_argument("--grpc-host", default="127.0.0.1", help="internal gRPC server address")
    p.add_argument("--grpc-port", type=int, default=0, help="internal gRPC server port (default: any free)")
    p.add_argument("--admin-port", type=int, default=0, help="Envoy admin port on 127.0.0.1 (default: any free)")
    p.add_argument("--precision", choices=PRECISIONS, default=os.environ.get("GLINER2_PRECISION", "f32"),
                   help="encoder precision: f32 (exact), bf16, int8 weights (default f32)")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("GLINER2_CACHE_DIR", Path.home() / ".cache" / "gliner2-service")),
                   help="OpenVINO IR and compiled-model cache")
    p.add_argument("--run-dir", type=Path, help="where Envoy's config and logs go (default: a temp dir)")
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--batch-size", type=int, default=8, help="texts per encoder pass within a request")
    p.add_argument("--max-request-bytes", type=int, default=1 << 20, help="largest REST body Envoy accepts")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain in-flight calls on shutdown")
    p.add_argument("--no-envoy", action="store_true", help="run only the gRPC server (on --grpc-port)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _warm_up(engine) -> None:
    from .core.engine import ExtractionRequest
    from .core.schema import EntitySpec, build_schema

    schema = build_schema(entities=(EntitySpec(name="company"), EntitySpec(name="person")))
    for text in WARM_UP_TEXTS:
        engine.run(ExtractionRequest(texts=(text,), schema=schema))


class _Stop:
    def __init__(self):
        self.event = threading.Event()
        self.signal = None

    def __call__(self, signum, _frame):
        self.signal = signum
        self.event.set()


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    from .runtime.checkpoint import CheckpointUnavailable
    from .runtime.loaded_model import load_model

    try:
        keys = collect_api_keys(args.api_key, args.api_key_file)
    except OSError as error:
        sys.exit(f"gliner2-serve: cannot read API keys: {error}")
    started = time.perf_counter()
    try:
        model = load_model(args.model, precision=args.precision, cache_dir=args.cache_dir)
    except CheckpointUnavailable as error:
        sys.exit(f"gliner2-serve: {error}")

    from .core.engine import InferenceEngine
    from .grpc_api.server import SERVICE_NAMES, GrpcServer

    engine = InferenceEngine({model.model_id: model}, model.model_id, batch_size=args.batch_size)
    grpc_port = args.grpc_port if args.no_envoy or args.grpc_port else 0
    server = GrpcServer(engine, address=f"{args.grpc_host}:{grpc_port}", api_keys=keys, workers=args.workers)
    server.start()
    _warm_up(engine)
    server.mark_serving()

    envoy = None
    if not args.no_envoy:
        envoy = _start_envoy(args, server.port, list(SERVICE_NAMES))
    ready = time.perf_counter() - started
    where = f"port {envoy.port} (REST and gRPC)" if envoy else f"gRPC {args.grpc_host}:{server.port}"
    logger.info("SERVING %s on %s; precision %s; %s; ready in %.1fs", model.model_id, where, args.precision,
                f"{len(keys)} API key(s)" if keys else "no authentication", ready)
    print(f"gliner2-serve: SERVING {model.model_id} on {where}", flush=True)

    restarts: list[float] = []
    while not stop.event.wait(1.0):
        if envoy is not None and not envoy.is_running():
            restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
            if len(restarts) > 5:
                logger.error("Envoy keeps exiting; giving up\n%s", envoy.log_tail())
                break
            logger.warning("Envoy exited; restarting it\n%s", envoy.log_tail())
            envoy = _start_envoy(args, server.port, list(SERVICE_NAMES), port=envoy.port)

    logger.info("shutting down (%s)", signal.Signals(stop.signal).name if stop.signal else "Envoy failure")
    server.health.enter_graceful_shutdown()
    if envoy is not None:
        envoy.stop()
    server.stop(args.grace)
    if stop.signal is None:
        sys.exit(1)


def _start_envoy(args, grpc_port: int, services: list[str], port: int | None = None):
    from gliner_client.v1 import gliner_service_pb2

    from .envoy import EnvoyProcess, EnvoySettings, descriptor_set_bytes

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="gliner2-serve-"))
    args.run_dir = run_dir
    settings = EnvoySettings(listen_port=port or args.port, admin_port=args.admin_port, listen_host=args.host,
                             upstreams=[(args.grpc_host, grpc_port)], services=services,
                             max_request_bytes=args.max_request_bytes)
    return EnvoyProcess(settings, run_dir / "envoy", descriptor=descriptor_set_bytes([gliner_service_pb2])).start()


if __name__ == "__main__":
    main()
