"""``gliner2-serve``: the gRPC server plus a supervised Envoy, in the foreground.

REST (/gliner-2, /v1/extract) and native gRPC share Envoy's ``--port``; the
gRPC server itself listens on an internal loopback port. SIGTERM or Ctrl-C
marks the server NOT_SERVING, stops Envoy, drains in-flight calls, and exits.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import logs
from .api_keys import ENV_KEY_FILE, ENV_KEYS, collect_api_keys
from .config import DEFAULT_MODEL, ServiceConfig, anonymous_client_id, load_config
from .extras import installed
from .front import SupervisedEnvoy, parse_upstream, request_byte_limit
from .lean.openvino_compile import PRECISIONS
from .supervisor import REPLICA_ENV

logger = logging.getLogger("gliner2-serve")
OWN_LOGGERS = ("gliner2-serve", "gliner_server", "gliner2.access")

WARM_UP_TEXTS = ("Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday.",
                 " ".join(["The quarterly report from Contoso in Berlin lists revenue and staff."] * 8))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gliner2-serve", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=os.environ.get("GLINER2_CONFIG"),
                   help="YAML file with models, /run endpoints, API clients, storage and limits (see README)")
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
    p.add_argument("--runtime", choices=("auto", "library"), default=os.environ.get("GLINER2_RUNTIME", "auto"),
                   help="auto (default): serve bundles with the lean runtime (no PyTorch), converting a hub id or "
                        "checkpoint into a cached bundle on first use (needs the convert extra), and models it "
                        "cannot run (boundary architecture) with the gliner2 library; library: always the gliner2 "
                        "library with an OpenVINO encoder (needs the convert extra)")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("GLINER2_CACHE_DIR", Path.home() / ".cache" / "gliner2-service")),
                   help="OpenVINO IR and compiled-model cache")
    p.add_argument("--run-dir", type=Path, help="where Envoy's config and logs go (default: a temp dir)")
    p.add_argument("--workers", type=int, default=64,
                   help="gRPC worker threads (default 64); model calls take at most all but 8 of them, "
                        "further ones get 429 / RESOURCE_EXHAUSTED at once")
    p.add_argument("--batch-size", type=int, default=16,
                   help="most texts per model pass; concurrent requests share passes (default 16)")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="most padded tokens (texts x longest) per model pass (default 8192)")
    p.add_argument("--runtime-cache-entries", type=int, default=256, metavar="N",
                   help="input shapes whose kernels OpenVINO keeps per kind of layer (default 256); more take "
                        "memory that grows with traffic, 0 = none (slower)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="how long a pass waits for more requests when few are queued (default 0)")

    limits = p.add_argument_group("limits (also the configuration file's limits: section; flags win)")
    limits.add_argument("--max-queued-texts", type=int,
                        help="texts waiting for a model beyond which requests get 429 at once (default 1024)")
    limits.add_argument("--max-request-bytes", type=int,
                        help="largest REST body (Envoy, 413) and gRPC message (default 1 MiB)")
    limits.add_argument("--max-text-chars", type=int, help="characters per text (default 100000; more: 413)")
    limits.add_argument("--max-texts", type=int, help="texts per request (default 64; more: 400)")
    limits.add_argument("--long-text", choices=("chunk", "reject"),
                        help="texts over the model's window: process in overlapping chunks (default), or 413")
    limits.add_argument("--window-words", type=int, help="the model's window in words (default 384)")
    limits.add_argument("--window-overlap-words", type=int,
                        help="words repeated between neighbouring chunks (default 64, or a sixth of a smaller "
                             "--window-words)")

    scale = p.add_argument_group("replicas and the front")
    scale.add_argument("--replicas", type=int, default=1,
                       help="gRPC server processes on this machine behind the one Envoy (default 1)")
    scale.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT",
                       help="run only Envoy, in front of replicas started elsewhere with --no-envoy "
                            "(repeatable; a DNS name stands for every address it resolves to)")
    scale.add_argument("--no-envoy", action="store_true", help="run only the gRPC server (on --grpc-port)")
    scale.add_argument("--rate-limit", type=int, default=0, metavar="RPS",
                       help="requests per second per API key, enforced by Envoy (429); 0 = none (default)")
    scale.add_argument("--rate-limit-burst", type=int, help="requests a key may send at once (default: RPS)")
    scale.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): Envoy's listener speaks TLS")
    scale.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    scale.add_argument("--drain-seconds", type=float, default=3.0,
                       help="on SIGTERM, how long the server keeps answering while NOT_SERVING so that load "
                            "balancers stop sending it calls (default 3)")
    scale.add_argument("--grace", type=float, default=30.0,
                       help="then, how long calls in flight may take to finish (default 30)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on --metrics-host:PORT/metrics (default: off); with --replicas, "
                        "one endpoint for all of them (each series labelled with its replica)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics endpoint listens on (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--access-log", default="stdout", metavar="stdout|off|FILE",
                   help="Envoy's access log: one line per request (request id, route, status, timings) on "
                        "standard output (default), in FILE, or off")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=logs.LOG_FORMATS, default=os.environ.get("GLINER2_LOG_FORMAT", "plain"),
                   help="plain lines for a terminal (default), or one JSON object per line (every log line, the "
                        "per-request fields, Envoy's access log) for a log shipper; env GLINER2_LOG_FORMAT")

    training = p.add_argument_group("training jobs")
    training.add_argument("--training-dir", type=Path, default=os.environ.get("GLINER2_TRAINING_DIR"),
                          help="where training jobs write their models (default: the configuration's "
                               "training_dir, else DATA_DIR/training); servers and workers must share it")
    training.add_argument("--no-train-worker", action="store_true",
                          help="do not start gliner2-train-worker beside the server (run workers elsewhere)")
    training.add_argument("--train-threads", type=int, default=0, metavar="N",
                          help="PyTorch threads of the worker's training runs (default: half the CPUs)")

    faults = p.add_argument_group("when dependencies misbehave")
    faults.add_argument("--history-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="longest wait for the history database on any call (default 5); an inference not "
                             "recorded within it is refused with 503 UNAVAILABLE, never acknowledged")
    faults.add_argument("--stall-seconds", type=float, default=10.0, metavar="SECONDS",
                        help="health turns NOT_SERVING when history commits have been stuck or failing this long "
                             "(default 10), and SERVING again once they work")
    faults.add_argument("--pass-stall-seconds", type=float, default=120.0, metavar="SECONDS",
                        help="... or when one slice of a model pass has run this long (default 120)")
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    if args.upstream and args.replicas > 1:
        p.error("--upstream runs Envoy alone in front of replicas elsewhere; --replicas starts them here")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.runtime_cache_entries < 0:
        p.error("--runtime-cache-entries must not be negative")
    for name in ("history_timeout", "stall_seconds", "pass_stall_seconds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    try:
        args.upstream = [parse_upstream(u) for u in args.upstream]
    except ValueError as error:
        p.error(str(error))
    return args


def _warm_up(registry, model, stop: _Stop) -> None:
    """A few inferences at typical lengths before SERVING, outside the user's limits and the history.

    A lean model has already run one request when it loaded (``BundleModel.warm_up``: OpenVINO's one-time
    weight preparation); after that a length not seen yet costs 10-20 % more once (about 20 ms for 88 words
    on deberta-v3-base's shape), less than the 150 ms the longer text would add to every start. It gets the
    short text only, which still takes the engine's and batcher's path once.
    """
    from .core.engine import ExtractionRequest, InferenceEngine
    from .core.schema import EntitySpec, build_schema

    engine = InferenceEngine(registry)   # default limits: the user's (--max-text-chars 500...) are for callers
    schema = build_schema(entities=(EntitySpec(name="company"), EntitySpec(name="person")))
    for text in WARM_UP_TEXTS[:1] if model.runtime == "lean" else WARM_UP_TEXTS:
        if stop.event.is_set():
            return
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    replica = os.environ.get(REPLICA_ENV)
    tag = replica if replica is not None and args.no_envoy else None   # one of --replicas' servers
    logs.configure(args.log_level, args.log_format, tag)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration plugin otherwise
    # Our loggers get their level of their own: OpenVINO's model conversion sets the *root* logger to
    # ERROR while it runs (openvino.tools.ovc.logger.init_logger), which would silence every request
    # line and start-up message of the process meanwhile (a model loaded on first use converts, too).
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(args.log_level.upper())
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if args.no_envoy or (args.replicas == 1 and not args.upstream):
            run_server(args, stop, announce=not tag)
        from .supervisor import run_front, run_replicas

        code = run_front(args, stop) if args.upstream else run_replicas(args, argv, stop)
    except SystemExit as exit_:
        if not isinstance(exit_.code, str):
            raise
        logs.fatal(exit_.code)   # "gliner2-serve: why" on standard error, as a JSON line in JSON mode
        code = 1
    logging.shutdown()
    sys.exit(code)


def run_server(args, stop: _Stop, *, announce: bool = True) -> None:
    """The gRPC server in this process, with Envoy in front unless ``--no-envoy``; never returns.

    ``announce``: print the SERVING line (replicas started by ``--replicas`` say "ready" instead).
    SIGTERM or Ctrl-C during start-up (a long model load, the warm-up) stops it at once.
    """
    try:
        config = load_config(args.config).with_default_model(args.model or None)
        keys = api_keys(config, collect_api_keys(args.api_key, args.api_key_file))
        limits = config.limits.limits(max_text_chars=args.max_text_chars, max_texts=args.max_texts,
                                      long_text=args.long_text, window_words=args.window_words,
                                      window_overlap_words=args.window_overlap_words)
    except (OSError, ValueError) as error:
        sys.exit(f"gliner2-serve: {error}")
    max_request_bytes = request_byte_limit(args, config)
    max_queued_texts = args.max_queued_texts or config.limits.max_queued_texts or 1024

    from . import metrics
    from .core.engine import InferenceEngine
    from .core.recording import RecordingEngine
    from .errors import ServiceError
    from .grpc_api.admission import Admission
    from .grpc_api.server import GrpcServer
    from .history.datasets import DatasetLimits
    from .history.store import HistoryStore
    from .runtime.batcher import BatchPolicy
    from .runtime.loaded_model import load_model
    from .runtime.registry import ModelRegistry, ModelSpec
    from .training.artifacts import JobModels
    from .training.jobs import JobLimits, JobStore

    started = time.perf_counter()
    from .lean.openvino_compile import set_runtime_cache_entries

    set_runtime_cache_entries(args.runtime_cache_entries)
    model_slots = Admission.for_workers(args.workers).limit
    database_url, training_dir = storage(args, config)
    job_models = JobModels(training_dir)   # complete training jobs, served by their ids
    registry = ModelRegistry(
        [ModelSpec(id=m.id, source=m.source or m.id, adapter=m.adapter, description=m.description,
                   kind=m.resolved_kind) for m in config.models],
        config.default_model, precision=args.precision, cache_dir=args.cache_dir,
        max_loaded=config.max_loaded_models, max_loaded_bytes=config.max_loaded_bytes,
        batching=BatchPolicy(max_texts=args.batch_size, max_tokens=args.batch_tokens,
                             wait_ms=args.batch_wait_ms, max_queued_texts=max_queued_texts),
        load_backoff_s=config.model_load_backoff_s, load_wait_s=config.model_load_wait_s,
        max_load_waiters=max(1, model_slots // 4),
        events=metrics.REGISTRY_EVENTS, batch_events=metrics.BATCH_EVENTS, resolver=job_models,
        loader=functools.partial(load_model, runtime=args.runtime))
    try:
        history = HistoryStore.open(database_url, timeout_s=args.history_timeout, on_commit=metrics.on_commit)
    except Exception as error:  # noqa: BLE001 - any database failure at start-up: say so and stop
        sys.exit(f"gliner2-serve: cannot open the inference history at {_redacted(database_url)}: "
                 f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    engine = RecordingEngine(InferenceEngine(registry, limits=limits), history)
    jobs = job_models.jobs = JobStore(history, JobLimits(max_active_jobs=config.max_active_training_jobs),
                                      stale_after_s=config.training_stale_seconds)
    grpc_port = args.grpc_port if args.no_envoy or args.grpc_port else 0
    server = GrpcServer(engine, address=f"{args.grpc_host}:{grpc_port}", keys=keys,
                        endpoints={e.id: e for e in config.endpoints}, workers=args.workers,
                        max_run_inputs=config.max_batch_inputs, max_message_bytes=max_request_bytes,
                        dataset_limits=DatasetLimits(max_records=config.max_dataset_records,
                                                     max_bytes=config.max_dataset_bytes,
                                                     max_datasets=config.max_datasets_per_client),
                        jobs=jobs)
    server.start()  # NOT_SERVING until the model is loaded and warm
    metrics.SERVING.set_function(lambda: 1 if server.serving else 0)
    # Envoy starts while the model loads: it answers 503 UNAVAILABLE (and /healthz 503)
    # meanwhile, and its health check sees the server turn SERVING within a fraction of a second.
    envoy = None
    if not args.no_envoy:
        envoy = SupervisedEnvoy(args, [(args.grpc_host, server.port)], max_request_bytes)
        envoy.start(wait=False)
    if args.metrics_port:
        try:
            metrics.serve_metrics(args.metrics_port, registry, host=args.metrics_host,
                                  envoy_admin=(lambda path: envoy.process.admin(path)) if envoy else None)
        except OSError as error:
            _release(envoy, server, history)
            sys.exit(f"gliner2-serve: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {error}")
    watch = None
    phases = {"set-up": time.perf_counter() - started}   # history, gRPC server, Envoy's start (not its wait)
    try:
        mark = time.perf_counter()
        model = registry.preload(stop=stop.event)
        phases["model"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if model is not None and envoy is not None:
            envoy.process.wait_live()
        if model is not None:
            _warm_up(registry, model, stop)
        phases["warm-up"] = time.perf_counter() - mark
        if stop.event.is_set():
            logger.info("stopped during start-up (%s)", signal.Signals(stop.signal).name)
            _release(envoy, server, history)
            logging.shutdown()
            os._exit(0)  # a load may still run on the loader thread: do not wait for it
        watch = _progress_watch(registry, history, server, args).start()
        server.mark_serving()
        train_worker = start_train_worker(args, config)   # once this server serves (none if start-up fails)
    except BaseException as error:
        _release(envoy, server, history)
        if isinstance(error, ServiceError):  # the cause carries the operator's guidance (how to serve a local dir)
            logging.shutdown()
            logs.fatal(f"gliner2-serve: {error.__cause__ or error.message}")
            os._exit(1)
        raise
    mark = time.perf_counter()
    if envoy is not None and not envoy.process.wait_for_healthy_upstream(timeout_s=30):
        logger.warning("Envoy does not see the gRPC server as healthy yet\n%s", envoy.process.log_tail())
    phases["Envoy routing"] = time.perf_counter() - mark
    ready = time.perf_counter() - started
    where = f"port {envoy.process.port} (REST and gRPC)" if envoy else f"gRPC {args.grpc_host}:{server.port}"
    since_start = _seconds_since_process_start()
    runtime = ("lean runtime (no PyTorch)" if model.runtime == "lean"
               else f"gliner2 library runtime, {model.import_seconds:.1f}s of it importing the library")
    converted = f", {model.convert_seconds:.1f}s converting it into a bundle" if model.convert_seconds else ""
    if since_start is not None:
        phases = {"interpreter and imports": max(0.0, since_start - ready), **phases}
    logger.info("%s %s on %s; precision %s; %s; history in %s; ready in %.1fs (%s since process start; "
                "model loaded in %.1fs, %s%s); phases: %s", "SERVING" if announce else "ready:",
                model.model_id, where, args.precision, "API keys required" if keys.enabled else "no authentication",
                _redacted(database_url), ready, "?" if since_start is None else f"{since_start:.1f}s",
                model.load_seconds, runtime, converted,
                ", ".join(f"{name} {seconds:.2f}s" for name, seconds in phases.items()))
    if announce:
        logs.announce(f"gliner2-serve: SERVING {model.model_id} on {where}")

    healthy = True
    while not stop.event.wait(1.0):
        if envoy is not None and not envoy.keep_running():
            healthy = False
            break
        if train_worker is not None:
            train_worker.restart_if_exited()

    # Graceful: NOT_SERVING first, so Envoy (ours, or a load balancer in front of
    # replicas) stops sending new calls; keep answering the calls it still sends
    # while it notices; then refuse new calls and let the ones in flight finish;
    # then stop Envoy once it has written their responses.
    reason = signal.Signals(stop.signal).name if stop.signal else "Envoy failure"
    logger.info("shutting down (%s): NOT_SERVING, draining for %.1fs", reason, args.drain_seconds)
    server.mark_not_serving()
    if healthy:
        time.sleep(args.drain_seconds)
    server.stop(args.grace)
    if train_worker is not None:
        train_worker.stop()
    watch.stop()
    if envoy is not None:
        envoy.stop()
    history.close()
    logger.info("stopped")
    logging.shutdown()
    sys.stdout.flush()
    # Everything this process owns is released (Envoy stopped, calls drained, history
    # closed). Skip interpreter finalisation: OpenVINO's and PyTorch's native thread
    # pools can crash or hang in their destructors at exit, turning a clean stop into
    # a failure exit code for the supervisor (systemd, Kubernetes).
    os._exit(0 if healthy else 1)


def storage(args, config: ServiceConfig) -> tuple[str, Path]:
    """The history database's URL and the training directory: flags, then the configuration, then defaults."""
    from .history.cli import resolve_database_url
    from .training.artifacts import resolve_training_dir

    return (resolve_database_url(args.database_url or config.database_url, args.data_dir),
            resolve_training_dir(args.training_dir or config.training_dir, args.data_dir))


def start_train_worker(args, config: ServiceConfig | None = None):
    """``gliner2-train-worker`` beside this server, unless ``--no-train-worker`` or this is a replica (the
    supervisor of the replicas starts one); it dies with this process."""
    if args.no_train_worker or os.environ.get(REPLICA_ENV) is not None:
        return None
    if not installed("torch", "gliner2"):
        logging.getLogger(__name__).warning(
            "no training worker: training jobs need PyTorch and gliner2 (the convert extra), which this "
            "installation lacks; jobs wait until a worker with them runs (gliner2-train-worker)")
        return None
    from .training.worker import WorkerProcess

    config = config or load_config(args.config)
    database_url, training_dir = storage(args, config)
    return WorkerProcess(database_url, training_dir, threads=args.train_threads, log_level=args.log_level,
                         stale_seconds=config.training_stale_seconds).start()


def _progress_watch(registry, history, server, args):
    """Health follows the history's commits and the models' passes (see core.progress)."""
    from .core.progress import ProgressWatch

    def history_stalled():
        found = history.stalled_for()
        return found if found is not None and found[0] >= args.stall_seconds else None

    def pass_stalled(model):
        def check():
            scheduler = model._scheduler
            seconds = scheduler.stalled_for() if scheduler is not None else None
            if seconds is not None and seconds >= args.pass_stall_seconds:
                return seconds, f"a pass of model {model.model_id} has been running for {seconds:.0f}s"
            return None
        return check

    return ProgressWatch(lambda: [history_stalled, *(pass_stalled(m) for m in registry.loaded_models())],
                         on_change=server.set_stalled, probe=history.probe)


def _release(envoy, server, history) -> None:
    """Stop what start-up had started, when it fails before SERVING."""
    if envoy is not None and envoy.process is not None:
        envoy.process.stop()
    server.stop(0)
    history.close()


if __name__ == "__main__":
    main()
