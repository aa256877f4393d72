"""``gliner2-serve --replicas N`` and ``gliner2-serve --upstream HOST:PORT``: one Envoy, many gRPC servers.

``--replicas N`` starts N child processes of this command (``--no-envoy`` on
their own loopback ports, the same model, configuration and history database)
and one Envoy that load-balances them: least-request, active gRPC health
checks, outlier detection, retries of requests a replica could not serve. A
child that exits is started again. SERVING is printed once Envoy sees every
replica healthy.

``--upstream HOST:PORT`` (repeatable) runs Envoy alone, in front of replicas
started elsewhere (``gliner2-serve --no-envoy --grpc-host 0.0.0.0 --grpc-port
PORT`` on each machine); a DNS name stands for every address it resolves to
(Envoy's ``STRICT_DNS``), which is how a Kubernetes headless Service or a
compose service with several replicas is reached.

SIGTERM: replicas go NOT_SERVING (Envoy stops routing to them), finish what
they hold and exit; then Envoy stops once its last response is written.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from . import logs
from .front import RestartBudget, SupervisedEnvoy, request_byte_limit

logger = logging.getLogger("gliner2-serve")

REPLICA_ENV = "GLINER2_REPLICA"  # set in a child: its index (it then announces "ready", not SERVING)


def _max_request_bytes(args) -> int:
    from .config import load_config

    return request_byte_limit(args, load_config(args.config))


class Replica:
    """One child ``gliner2-serve --no-envoy`` on a fixed loopback port, restarted when it exits."""

    def __init__(self, index: int, argv: list[str], port: int, metrics_port: int | None = None):
        self.index, self.port, self.metrics_port = index, port, metrics_port
        self.command = [sys.executable, "-m", "gliner_server.cli", *argv,
                        "--no-envoy", "--grpc-host", "127.0.0.1", "--grpc-port", str(port)]
        if metrics_port:  # its own loopback endpoint; the supervisor serves them all on --metrics-port
            self.command += ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
        self.process: subprocess.Popen | None = None
        self.restarts = RestartBudget()
        self.given_up = False

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        from .envoy.process import die_with_parent

        env = {**os.environ, REPLICA_ENV: str(self.index)}
        # A replica whose supervisor is killed shuts down (gracefully) instead of lingering.
        self.process = subprocess.Popen(die_with_parent(self.command), env=env, stdin=subprocess.DEVNULL)

    def exited(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def restart_if_exited(self) -> None:
        code = self.exited()
        if code is None:
            return
        if self.given_up:
            return
        if not self.restarts.spend():  # keeps failing: leave it down (Envoy routes around it)
            self.given_up = True
            logger.error("replica %d (port %d) keeps exiting (last with %s); leaving it down",
                         self.index, self.port, code)
            return
        logger.warning("replica %d (port %d) exited with %s; starting it again", self.index, self.port, code)
        self.start()

    def terminate(self) -> None:
        if self.process is not None and self.exited() is None:   # None: never started (an earlier one failed)
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("replica %d did not stop within %.0fs; killing it", self.index, timeout_s)
            self.process.kill()
            return self.process.wait()


def run_replicas(args, argv: list[str], stop) -> int:
    from .envoy import free_port

    replicas = [Replica(i, argv, free_port(args.grpc_host), free_port() if args.metrics_port else None)
                for i in range(args.replicas)]
    # The first replica fills the IR and compiled-model caches; the others start once it serves and
    # read them (OpenVINO's compiled-model cache is not safe for processes writing it at once).
    replicas[0].start()
    envoy = SupervisedEnvoy(args, [("127.0.0.1", r.port) for r in replicas], _max_request_bytes(args))
    try:
        envoy.start()
        if args.metrics_port:
            _serve_metrics(args, lambda: [(r.index, r.metrics_url) for r in replicas], envoy)
        while not stop.event.wait(0.2):
            failed = [r for r in replicas if r.process is not None and r.exited() is not None]
            if failed:
                raise SystemExit(f"gliner2-serve: replica {failed[0].index} exited with {failed[0].exited()} "
                                 "during start-up (its log is above)")
            healthy = envoy.process.healthy_upstreams() or 0
            if healthy and replicas[-1].process is None:
                for replica in replicas[1:]:
                    replica.start()
            if healthy == len(replicas):
                break
        else:
            raise SystemExit(0)  # stopped while starting
    except BaseException:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(10)
        envoy.stop(idle_timeout_s=0)
        raise
    from .cli import start_train_worker

    train_worker = start_train_worker(args)
    logs.announce(f"gliner2-serve: SERVING {len(replicas)} replicas on port {envoy.process.port} (REST and gRPC)")
    logger.info("SERVING %d replicas on port %d; replica gRPC ports %s", len(replicas), envoy.process.port,
                [r.port for r in replicas])
    healthy = True
    while not stop.event.wait(0.5):
        if not envoy.keep_running():
            healthy = False
            break
        for replica in replicas:
            replica.restart_if_exited()
        if train_worker is not None:
            train_worker.restart_if_exited()
    logger.info("shutting down %d replicas", len(replicas))
    if train_worker is not None:
        train_worker.stop()
    for replica in replicas:
        replica.terminate()
    for replica in replicas:
        replica.wait(args.drain_seconds + args.grace + 15)
    envoy.stop()
    logger.info("stopped")
    return 0 if healthy else 1


def _serve_metrics(args, replicas, envoy) -> None:
    from .metrics import serve_replica_metrics

    try:
        serve_replica_metrics(args.metrics_port, args.metrics_host, replicas,
                              envoy_admin=lambda path: envoy.process.admin(path))
    except OSError as error:
        raise SystemExit(f"gliner2-serve: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: "
                         f"{error}") from None


def run_front(args, stop) -> int:
    """Envoy alone in front of ``--upstream`` replicas."""
    envoy = SupervisedEnvoy(args, args.upstream, _max_request_bytes(args))
    envoy.start()
    if args.metrics_port:  # the front has no replicas of its own to read: Envoy's refusals only
        try:
            _serve_metrics(args, lambda: [], envoy)
        except SystemExit:
            envoy.stop(idle_timeout_s=0)
            raise
    waited = time.monotonic()
    while not stop.event.wait(0.2):
        if (envoy.process.healthy_upstreams() or 0) > 0:
            break
        if time.monotonic() - waited > 30:
            logger.warning("no healthy upstream yet among %s", args.upstream)
            waited = time.monotonic()
    else:
        envoy.stop(idle_timeout_s=0)
        return 0
    where = ", ".join(f"{h}:{p}" for h, p in args.upstream)
    logs.announce(f"gliner2-serve: SERVING front for {where} on port {envoy.process.port} (REST and gRPC)")
    healthy = True
    while not stop.event.wait(0.5):
        if not envoy.keep_running():
            healthy = False
            break
    logger.info("shutting down: failing /healthz, draining for %.1fs", args.drain_seconds)
    envoy.process.admin_post("/healthcheck/fail")
    time.sleep(args.drain_seconds)
    envoy.stop(idle_timeout_s=args.grace)
    logger.info("stopped")
    return 0 if healthy else 1
