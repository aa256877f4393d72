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
from .config import DEFAULT_MODEL, ServiceConfig, anonymous_client_id, load_config
from .runtime.openvino_encoder import PRECISIONS

logger = logging.getLogger("gliner2-serve")

WARM_UP_TEXTS = ("Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday.",
                 " ".join(["The quarterly report from Contoso in Berlin lists revenue and staff."] * 8))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gliner2-serve", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=os.environ.get("GLINER2_CONFIG"),
                   help="YAML file with models, /run endpoints, API clients and storage (see README)")
    p.add_argument("--model", default=os.environ.get("GLINER2_MODEL"),
                   help=f"the default model: hub id or checkpoint directory (default: the config's, "
                        f"else {DEFAULT_MODEL})")
    p.add_argument("--database-url",
                   help="inference history database (default sqlite in --data-dir; postgresql+psycopg://... "
                        "to share one history between replicas)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("GLINER2_DATA_DIR"),
                   help="where the default SQLite history lives (default ~/.local/share/gliner2-service)")
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
                   help="f32 (exact, default), bf16 (f32 on CPUs without bf16), int8 (int8 weights), "
                        "int8-ptq (int8 weights and activations); see the README's agreement figures")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("GLINER2_CACHE_DIR", Path.home() / ".cache" / "gliner2-service")),
                   help="OpenVINO IR and compiled-model cache")
    p.add_argument("--run-dir", type=Path, help="where Envoy's config and logs go (default: a temp dir)")
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--batch-size", type=int, default=16,
                   help="most texts per model pass; concurrent requests share passes (default 16)")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="most padded tokens (texts x longest) per model pass (default 8192)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="how long a pass waits for more requests when few are queued (default 0)")
    p.add_argument("--max-queued-texts", type=int, default=1024,
                   help="texts waiting for the model beyond which requests get 429 (default 1024)")
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


def api_keys(config: ServiceConfig, extra_keys: list[str]):
    """Named clients from the config, plus keys from flags/env under anonymous ids."""
    from .core.recording import Caller
    from .grpc_api.auth import ApiKeys

    clients = [(k.resolve(), Caller(k.name, k.privacy_mode)) for k in config.api_keys]
    clients += [(key, Caller(anonymous_client_id(key))) for key in extra_keys]
    return ApiKeys(clients)


def _seconds_since_process_start() -> float | None:
    """Wall time since this process was created (Linux /proc; None elsewhere): imports included."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration plugin otherwise
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    try:
        config = load_config(args.config).with_default_model(args.model or None)
        keys = api_keys(config, collect_api_keys(args.api_key, args.api_key_file))
    except (OSError, ValueError) as error:
        sys.exit(f"gliner2-serve: {error}")

    from .core.engine import InferenceEngine
    from .core.recording import RecordingEngine
    from .errors import ServiceError
    from .grpc_api.server import SERVICE_NAMES, GrpcServer
    from .history.cli import resolve_database_url
    from .history.store import HistoryStore
    from .runtime.batcher import BatchPolicy
    from .runtime.registry import ModelRegistry, ModelSpec

    started = time.perf_counter()
    registry = ModelRegistry(
        [ModelSpec(id=m.id, source=m.source or m.id, adapter=m.adapter, description=m.description,
                   kind=m.resolved_kind) for m in config.models],
        config.default_model, precision=args.precision, cache_dir=args.cache_dir,
        max_loaded=config.max_loaded_models, max_loaded_bytes=config.max_loaded_bytes,
        batching=BatchPolicy(max_texts=args.batch_size, max_tokens=args.batch_tokens,
                             wait_ms=args.batch_wait_ms, max_queued_texts=args.max_queued_texts))
    database_url = resolve_database_url(args.database_url or config.database_url, args.data_dir)
    history = HistoryStore.open(database_url)  # creates a SQLite file's directory

    engine = RecordingEngine(InferenceEngine(registry), history)
    grpc_port = args.grpc_port if args.no_envoy or args.grpc_port else 0
    server = GrpcServer(engine, address=f"{args.grpc_host}:{grpc_port}", keys=keys,
                        endpoints={e.id: e for e in config.endpoints}, workers=args.workers,
                        max_run_inputs=config.max_batch_inputs)
    server.start()  # NOT_SERVING until the model is loaded and warm
    # Envoy starts while the model loads: it answers 503 UNAVAILABLE (and /healthz 503)
    # meanwhile, and its health check sees the server turn SERVING within a fraction of a second.
    envoy = None if args.no_envoy else _start_envoy(args, server.port, list(SERVICE_NAMES), wait=False)
    try:
        model = registry.preload()
        if envoy is not None:
            envoy.wait_live()
    except BaseException as error:
        _release(envoy, server, history)
        if isinstance(error, ServiceError):  # the cause carries the operator's guidance (how to serve a local dir)
            sys.exit(f"gliner2-serve: {error.__cause__ or error.message}")
        raise
    _warm_up(engine.engine)
    server.mark_serving()
    if envoy is not None and not envoy.wait_for_healthy_upstream(timeout_s=30):
        logger.warning("Envoy does not see the gRPC server as healthy yet\n%s", envoy.log_tail())
    ready = time.perf_counter() - started
    where = f"port {envoy.port} (REST and gRPC)" if envoy else f"gRPC {args.grpc_host}:{server.port}"
    since_start = _seconds_since_process_start()
    logger.info("SERVING %s on %s; precision %s; %s; history in %s; ready in %.1fs (%s since process start; "
                "%.1fs of it importing the gliner2 library)",
                model.model_id, where, args.precision, "API keys required" if keys.enabled else "no authentication",
                _redacted(database_url), ready, "?" if since_start is None else f"{since_start:.1f}s",
                model.import_seconds)
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
    history.close()
    logger.info("stopped")
    logging.shutdown()
    sys.stdout.flush()
    # Everything this process owns is released (Envoy stopped, calls drained, history
    # closed). Skip interpreter finalisation: OpenVINO's and PyTorch's native thread
    # pools can crash or hang in their destructors at exit, turning a clean stop into
    # a failure exit code for the supervisor (systemd, Kubernetes).
    os._exit(0 if stop.signal is not None else 1)


def _release(envoy, server, history) -> None:
    """Stop what start-up had started, when it fails before SERVING."""
    if envoy is not None:
        envoy.stop()
    server.stop(0)
    history.close()


def _start_envoy(args, grpc_port: int, services: list[str], port: int | None = None, wait: bool = True):
    from .envoy import EnvoyProcess, EnvoySettings, descriptor_set_bytes
    from .grpc_api.server import PROTO_MODULES

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="gliner2-serve-"))
    args.run_dir = run_dir
    settings = EnvoySettings(listen_port=port or args.port, admin_port=args.admin_port, listen_host=args.host,
                             upstreams=[(args.grpc_host, grpc_port)], services=services,
                             max_request_bytes=args.max_request_bytes)
    return EnvoyProcess(settings, run_dir / "envoy", descriptor=descriptor_set_bytes(PROTO_MODULES)).start(wait=wait)


if __name__ == "__main__":
    main()
