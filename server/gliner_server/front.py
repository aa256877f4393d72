"""The Envoy front of ``gliner2-serve``: its settings from the flags, and keeping it running.

Every way of running the service has one Envoy in front (REST transcoding,
auth-agnostic per-key rate limits, TLS, health-checked load balancing): in
front of the in-process gRPC server, of ``--replicas`` child processes on this
machine, or of ``--upstream`` replicas elsewhere (static addresses or DNS names,
which Envoy resolves to every address they have).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("gliner2-serve")

DEFAULT_MAX_REQUEST_BYTES = 1 << 20


def request_byte_limit(args, config) -> int:
    """The largest REST body and gRPC message: the flag, else the configuration's ``limits:``, else 1 MiB."""
    return args.max_request_bytes or config.limits.max_request_bytes or DEFAULT_MAX_REQUEST_BYTES


class RestartBudget:
    """How often a supervised process may be restarted: at most ``limit`` times in any ``window_s``."""

    def __init__(self, limit: int = 5, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._restarts: list[float] = []

    def spend(self) -> bool:
        """Count one restart now; False when that is more than the budget allows."""
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < self.window_s] + [now]
        return len(self._restarts) <= self.limit


def parse_upstream(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (a name, IPv4, or ``[IPv6]``) as Envoy takes it."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--upstream {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def envoy_settings(args, upstreams: list[tuple[str, int]], max_request_bytes: int, port: int | None = None):
    from .envoy import EnvoySettings
    from .grpc_api.server import SERVICE_NAMES
    from .openapi import service_document

    return EnvoySettings(
        openapi_json=json.dumps(service_document(), separators=(",", ":")),
        listen_port=port or args.port, admin_port=args.admin_port, listen_host=args.host,
        upstreams=upstreams, services=list(SERVICE_NAMES), max_request_bytes=max_request_bytes,
        rate_limit_rps=args.rate_limit or None, rate_limit_burst=args.rate_limit_burst,
        tls_cert_path=str(args.tls_cert) if args.tls_cert else None,
        tls_key_path=str(args.tls_key) if args.tls_key else None,
        access_log=None if args.access_log == "off" else args.access_log,
        access_log_json=getattr(args, "log_format", "plain") == "json",
    )


class SupervisedEnvoy:
    """Envoy, restarted on the same port if it exits (at most 5 times a minute)."""

    def __init__(self, args, upstreams: list[tuple[str, int]], max_request_bytes: int):
        self.args, self.upstreams, self.max_request_bytes = args, upstreams, max_request_bytes
        self.run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="gliner2-serve-"))
        self.process = None
        self._restarts = RestartBudget()

    def start(self, wait: bool = True):
        from .envoy import EnvoyProcess, descriptor_set_bytes
        from .grpc_api.server import PROTO_MODULES

        port = self.process.port if self.process is not None else None
        settings = envoy_settings(self.args, self.upstreams, self.max_request_bytes, port)
        self.process = EnvoyProcess(settings, self.run_dir / "envoy",
                                    descriptor=descriptor_set_bytes(PROTO_MODULES)).start(wait=wait)
        return self.process

    def keep_running(self) -> bool:
        """Restart Envoy if it exited; False once it keeps exiting."""
        if self.process.is_running():
            return True
        if not self._restarts.spend():
            logger.error("Envoy keeps exiting; giving up\n%s", self.process.log_tail())
            return False
        logger.warning("Envoy exited; restarting it\n%s", self.process.log_tail())
        self.start()
        return True

    def stop(self, idle_timeout_s: float = 5.0) -> None:
        """Stop once the responses in flight have been written (or after ``idle_timeout_s``)."""
        if self.process is None:
            return
        self.process.wait_idle(idle_timeout_s)
        self.process.stop()
